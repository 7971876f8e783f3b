"""Allowance reservations in the ledger (migration ``0013_allowances.sql``): what a settled tab
used of the free seconds its member's subscriptions reserved for it.

A tab's Redis reserve is one pool per show kind, filled by one or more reservations
(:mod:`metering.allowances`); its session lines say how many seconds of each kind the pool
covered. :func:`settle_tab` runs in the settlement's own ledger transaction (so it is written
exactly once, with the settlement id) and hands the covered seconds to the tab's reservations in
the order they were made, each up to what it reserved; what a reservation did not use is
free again for the member's next tab.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from metering.outcomes import Line
from settlement.ledger.db import Connection
from settlement.ledger.times import at

log = logging.getLogger(__name__)


def covered_by_kind(lines: Sequence[Line]) -> dict[str, int]:
    """The seconds an allowance covered on ``lines``, per show kind."""
    covered: dict[str, int] = {}
    for line in lines:
        if line.kind == "session" and line.covered_s:
            covered[line.session_kind] = covered.get(line.session_kind, 0) + line.covered_s
    return covered


async def settle_tab(
    conn: Connection,
    *,
    customer: str,
    tab_id: str,
    settlement_id: str,
    lines: Sequence[Line],
    settled_at_ms: int,
) -> None:
    """Record what the tab's lines used of each of its open reservations (in the caller's
    transaction; the caller writes it once per settlement id).

    Lines that covered more seconds of a kind than the tab's reservations held (the Redis
    reserve can never give more than was put in it, so only a reserve filled without the ledger
    — by hand, or by a test — does) are logged, not refused: the capture is right either way,
    and a settlement must never be held up by the allowance's bookkeeping.
    """
    cursor = await conn.execute(
        """
        SELECT subscription_id, period_no, kind, reserved_s FROM allowance_reservations
        WHERE customer = %s AND tab_id = %s AND settlement_id IS NULL
        ORDER BY reserved_at, subscription_id, period_no, kind
        FOR UPDATE
        """,
        (customer, tab_id),
    )
    rows = await cursor.fetchall()
    left = covered_by_kind(lines)
    for row in rows:
        used = min(row["reserved_s"], left.get(row["kind"], 0))
        left[row["kind"]] = left.get(row["kind"], 0) - used
        await conn.execute(
            """
            UPDATE allowance_reservations SET used_s = %s, settlement_id = %s, settled_at = %s
            WHERE subscription_id = %s AND period_no = %s AND kind = %s AND tab_id = %s
            """,
            (
                used,
                settlement_id,
                at(settled_at_ms),
                row["subscription_id"],
                row["period_no"],
                row["kind"],
                tab_id,
            ),
        )
    over = {kind: seconds for kind, seconds in left.items() if seconds > 0}
    if over:
        log.error(
            "lines covered more free seconds than the tab's reservations held",
            extra={"fields": {"settlement": settlement_id, "over": over}},
        )
