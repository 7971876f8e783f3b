"""Checking connection tickets: signature, issuer, audience, expiry, and single use.

The format is :mod:`clients.tickets` (pure, shared with integrators). Single use needs shared
state: a ticket's id is claimed with ``SET NX`` on a key that lives until the ticket expires,
so a second connection with the same ticket is refused on any server process.
"""

from __future__ import annotations

import secrets
from typing import Final

from clients.tickets import Claims, Role, TicketProblem, mint, verify
from metering import keys
from metering.clock import Clock
from metering.store import Store, translated

#: Grace added to the single-use record's life, so a ticket cannot outlive its record.
USED_RECORD_EXTRA_MS: Final = 60_000


class TicketGate:
    """Verifies and consumes tickets; mints them for the HTTP API."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        secrets_: tuple[str, ...],
        issuers: tuple[str, ...],
        ttl_ms_max: int,
    ) -> None:
        if not secrets_ or not issuers:
            raise ValueError("a TicketGate needs at least one secret and one issuer")
        self._store = store
        self._clock = clock
        self._secrets = tuple(s.encode() for s in secrets_)
        self._issuers = issuers
        self.ttl_ms_max = ttl_ms_max

    async def admit(self, ticket: str | None) -> Claims | TicketProblem:
        """Verify ``ticket`` and claim its single use; the claims, or why it is refused."""
        now_ms = self._clock.now_ms()
        result = verify(
            ticket,
            self._secrets,
            issuers=self._issuers,
            now_ms=now_ms,
            lifetime_ms_max=self.ttl_ms_max,
        )
        if isinstance(result, TicketProblem):
            return result
        life_ms = result.expires_at_ms - now_ms + USED_RECORD_EXTRA_MS
        with translated():
            first = await self._store.client.set(
                keys.used_ticket(result.ticket_id), b"1", nx=True, px=life_ms
            )
        return result if first else TicketProblem.REUSED

    def mint(
        self, *, role: Role, subject: str, ttl_ms: int, name: str = "", currency: str = ""
    ) -> tuple[str, int]:
        """Mint a ticket (signed with the first secret); return it and its expiry in ms."""
        now_ms = self._clock.now_ms()
        ttl_ms = min(ttl_ms, self.ttl_ms_max)
        ticket = mint(
            self._secrets[0],
            issuer=self._issuers[0],
            role=role,
            subject=subject,
            now_ms=now_ms,
            ttl_ms=ttl_ms,
            name=name,
            currency=currency,
            ticket_id=secrets.token_urlsafe(16),
        )
        return ticket, now_ms + ttl_ms
