"""A byte-for-byte picture of a whole Redis database, to prove that nothing changed."""

from __future__ import annotations

from metering.store import Store


async def snapshot(store: Store) -> dict[bytes, tuple[bytes, int]]:
    """Every key with its DUMP serialization and its remaining time to live."""
    client = store.client
    picture: dict[bytes, tuple[bytes, int]] = {}
    async for key in client.scan_iter(count=1_000):
        dumped = await client.dump(key)
        ttl = await client.pttl(key)
        assert isinstance(dumped, bytes)
        # A TTL keeps counting down between the two pictures; only its presence must match.
        picture[key] = (dumped, -1 if ttl < 0 else 1)
    return picture
