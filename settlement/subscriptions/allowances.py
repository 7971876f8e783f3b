"""A member's allowances: reserved into a tab when it opens, shown with what is left.

Theory of operation. A plan's free seconds (per show kind, per period) must be consumed in the
meter's Lua step, which on Redis Cluster sees only the tab's own slot; a member may have several
tabs (one per currency, one after another, on several devices). So the ledger hands the
allowance out in **reservations**: :func:`reserve_for_tab` locks each of the member's entitled
subscriptions (``FOR UPDATE``: reservations of one member never race), computes what is left of
its current period's allowance — granted, less what settled tabs used, less what open
reservations hold — and reserves all of it for this tab (a row per kind, unique per
subscription, period, kind and tab, so a retry finds the same reservation); once that commits,
:func:`metering.allowances.reserve` copies it into the tab's hash, at most once per reservation
id (``<subscription>/<period>``). The tab spends it there. Its settlement records, in the same
ledger transaction, what its lines used (:mod:`settlement.ledger.allowances`); the rest is free
for the next tab. A reservation whose tab never settles (the tab vanished) stops counting at its
``expires_at``, the tab's hold expiry.

Discounts (basis points on a kind's rate, or on tips) are not consumed: every reservation
carries the plan's discounts, and the tab keeps the largest.

Failure: a crash between the commit and the Redis write leaves the seconds reserved for a tab
that does not have them yet; the next call for the same tab (the API calls it on every open and
on a sign-up) writes them, and otherwise its settlement returns them (used 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metering.allowances import AllowanceKind, Grant, read_reserve, reserve
from metering.outcomes import Code, TabRef
from metering.store import Store
from settlement.ledger.db import Connection, Database
from settlement.ledger.times import at
from settlement.subscriptions import store
from settlement.subscriptions.lifecycle import ENTITLED
from settlement.subscriptions.plans import AllowanceUnit, Plan
from settlement.subscriptions.store import Subscription


@dataclass(frozen=True, slots=True)
class AllowanceLeft:
    """One allowance of a subscription's current period, as the API shows it."""

    kind: AllowanceKind
    unit: AllowanceUnit
    granted: int
    used: int

    @property
    def left(self) -> int:
        """What is left (a discount is not consumed: all of it)."""
        return max(self.granted - self.used, 0)

    def to_json(self) -> dict[str, Any]:
        """``{"kind", "unit", "granted", "used", "left"}`` (server/api_contract.py
        ALLOWANCE_ENTRY declares it)."""
        return {
            "kind": str(self.kind),
            "unit": str(self.unit),
            "granted": self.granted,
            "used": self.used,
            "left": self.left,
        }


def reservation_id(subscription_id: str, period_no: int) -> str:
    """The id a reservation is recorded under in a tab's hash."""
    return f"{subscription_id}/{period_no}"


async def _held(
    conn: Connection, sub: Subscription, kind: AllowanceKind, tab_id: str, now_ms: int
) -> tuple[int, int | None]:
    """Seconds of ``kind`` of ``sub``'s current period used or held by other tabs, and what is
    reserved for ``tab_id`` already (None: nothing yet)."""
    cursor = await conn.execute(
        """
        SELECT
            coalesce(sum(CASE WHEN settlement_id IS NOT NULL THEN used_s
                              WHEN tab_id <> %(tab)s AND expires_at > %(now)s THEN reserved_s
                              ELSE 0 END), 0) AS held,
            max(CASE WHEN tab_id = %(tab)s AND settlement_id IS NULL THEN reserved_s END)
                AS mine
        FROM allowance_reservations
        WHERE subscription_id = %(sub)s AND period_no = %(period)s AND kind = %(kind)s
        """,
        {
            "tab": tab_id,
            "now": at(now_ms),
            "sub": sub.subscription_id,
            "period": sub.period_no,
            "kind": kind.value,
        },
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - an aggregate always answers
        return 0, None
    return int(row["held"]), (int(row["mine"]) if row["mine"] is not None else None)


async def _reserve_in_ledger(
    conn: Connection, sub: Subscription, plan: Plan, ref: TabRef, expires_ms: int, now_ms: int
) -> list[Grant]:
    """Reserve what is left of ``sub``'s allowances for ``ref`` (the caller holds the row's
    lock, in a transaction); the grants to put into the tab."""
    discounts = {a.kind: a.granted for a in plan.allowances if a.unit is AllowanceUnit.BP}
    free: dict[AllowanceKind, int] = {}
    for allowance in plan.allowances:
        if allowance.unit is not AllowanceUnit.SECONDS:
            continue
        held, mine = await _held(conn, sub, allowance.kind, ref.tab_id, now_ms)
        if mine is None:
            mine = max(allowance.granted - held, 0)
            if mine == 0:
                continue
            await conn.execute(
                """
                INSERT INTO allowance_reservations (subscription_id, period_no, kind, customer,
                    tab_id, reserved_s, reserved_at, expires_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                """,
                (
                    sub.subscription_id,
                    sub.period_no,
                    allowance.kind.value,
                    ref.customer,
                    ref.tab_id,
                    mine,
                    at(now_ms),
                    at(expires_ms),
                ),
            )
        free[allowance.kind] = mine
    return [
        Grant(kind, free_s=free.get(kind, 0), discount_bp=discounts.get(kind, 0))
        for kind in AllowanceKind
        if free.get(kind, 0) or discounts.get(kind, 0)
    ]


async def reserve_for_tab(
    database: Database, meter_store: Store, ref: TabRef, *, expires_ms: int, now_ms: int
) -> list[str]:
    """Reserve the allowances of ``ref.customer``'s entitled subscriptions for the open tab
    ``ref`` (its hold expires at ``expires_ms``), and put them into the tab. Safe to repeat.

    Returns the reservation ids the tab holds now (applied now or before).
    """
    pending: list[tuple[Subscription, list[Grant]]] = []
    async with database.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            """
                SELECT subscription_id FROM subscriptions
                WHERE customer = %s AND state = ANY(%s)
                ORDER BY started_at, subscription_id
                """,
            (ref.customer, [state.value for state in ENTITLED]),
        )
        ids = [row["subscription_id"] for row in await cursor.fetchall()]
        for subscription_id in ids:
            sub = await store.read(conn, subscription_id, lock=True)
            if sub is None or sub.state not in ENTITLED:
                continue
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is None or not plan.allowances:
                continue
            grants = await _reserve_in_ledger(conn, sub, plan, ref, expires_ms, now_ms)
            if grants:
                pending.append((sub, grants))
    held = []
    for sub, grants in pending:
        rid = reservation_id(sub.subscription_id, sub.period_no)
        code = await reserve(meter_store, ref, rid, grants)
        if code.ok:
            held.append(rid)
        elif code in (Code.TAB_NOT_FOUND, Code.TAB_NOT_OPEN):
            await _release(database, sub, ref)
    return held


async def _release(database: Database, sub: Subscription, ref: TabRef) -> None:
    """Give back what was reserved for a tab that can no longer take it."""
    async with database.connection() as conn:
        await conn.execute(
            """
            DELETE FROM allowance_reservations
            WHERE subscription_id = %s AND period_no = %s AND customer = %s AND tab_id = %s
              AND settlement_id IS NULL
            """,
            (sub.subscription_id, sub.period_no, ref.customer, ref.tab_id),
        )


async def _live_used(
    conn: Connection, meter_store: Store | None, customer: str, tab_id: str
) -> dict[tuple[str, int, str], int]:
    """What an unsettled tab's sessions have used so far of each of its reservations
    ((subscription, period, kind) → seconds), from its Redis reserve, handed to the
    reservations in the order they were made (as the settlement will)."""
    if meter_store is None:
        return {}
    reserves = await read_reserve(meter_store, TabRef(customer, tab_id))
    if not reserves:
        return {}
    left = {str(kind): r.used_s for kind, r in reserves.items()}
    cursor = await conn.execute(
        """
        SELECT subscription_id, period_no, kind, reserved_s FROM allowance_reservations
        WHERE customer = %s AND tab_id = %s AND settlement_id IS NULL
        ORDER BY reserved_at, subscription_id, period_no, kind
        """,
        (customer, tab_id),
    )
    used = {}
    for row in await cursor.fetchall():
        take = min(row["reserved_s"], left.get(row["kind"], 0))
        left[row["kind"]] = left.get(row["kind"], 0) - take
        used[(row["subscription_id"], row["period_no"], row["kind"])] = take
    return used


async def allowance_left(
    conn: Connection, meter_store: Store | None, sub: Subscription, plan: Plan
) -> list[AllowanceLeft]:
    """Each allowance of ``sub``'s plan in its current period: granted, used (by settled tabs,
    and so far by open ones, read from their reserves when ``meter_store`` is given) and left."""
    cursor = await conn.execute(
        """
        SELECT kind, customer, tab_id, used_s, settlement_id FROM allowance_reservations
        WHERE subscription_id = %s AND period_no = %s
        """,
        (sub.subscription_id, sub.period_no),
    )
    rows = await cursor.fetchall()
    used: dict[str, int] = {}
    live: dict[tuple[str, str], dict[tuple[str, int, str], int]] = {}
    for row in rows:
        if row["settlement_id"] is not None:
            used[row["kind"]] = used.get(row["kind"], 0) + row["used_s"]
            continue
        tab = (row["customer"], row["tab_id"])
        if tab not in live:
            live[tab] = await _live_used(conn, meter_store, *tab)
        key = (sub.subscription_id, sub.period_no, row["kind"])
        used[row["kind"]] = used.get(row["kind"], 0) + live[tab].get(key, 0)
    return [
        AllowanceLeft(
            a.kind,
            a.unit,
            a.granted,
            used.get(a.kind.value, 0) if a.unit is AllowanceUnit.SECONDS else 0,
        )
        for a in plan.allowances
    ]


def allowance_json(entries: Sequence[AllowanceLeft]) -> list[dict[str, Any]]:
    """The ``allowance`` array of a subscription's answer."""
    return [entry.to_json() for entry in entries]
