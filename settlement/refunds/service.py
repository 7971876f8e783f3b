"""The flows of refunds and disputes over the ledger of record.

Theory of operation. A refund is a two-phase transfer, like a tab:

1. **decide and reserve** — one transaction: the refund id's lock; the tab's and its lines'
   row locks (:func:`~settlement.refunds.store.lock_lines`); the policy's decision
   (:func:`~settlement.refunds.policy.decide`) on the counters now held; the refund recorded
   with its decision; if allowed, the amount reserved on the lines (``pending``). Refused and
   awaiting-consent refunds reserve nothing.
2. **the processor** — the refund goes to the processor that captured the tab, with the
   idempotency key ``refund:<refund id>``, so a retry (after a timeout, a crash, a repeated
   request) can never refund twice.
3. **post or release** — one transaction: ``succeeded`` with the journal entry ``refund``
   (the model's and the platform's parts taken back), or ``failed`` with the reservation
   released. Then the webhook ``refund.succeeded`` or ``refund.failed`` (idempotent by event
   id).

A request that finds its refund ``pending`` (the processor did not answer) runs phase 2 again
with the same key. A dispute notice is one transaction (idempotent by the processor's dispute
id): the disputed amount reserved on the lines, the entry ``dispute_opened`` (the amount and
the fee taken by the processor, the model's share of the disputed lines taken back), the
customer flagged; its outcome is another (``dispute_won`` gives the amount and the model's
share back and releases the lines; ``dispute_lost`` makes the loss final).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from metering.clock import Clock
from metering.outcomes import Line, TabRef
from settlement.gateway import Gateway, GatewayRequestError, GatewayUnavailable, RefundResult
from settlement.ledger import invoices, journal, settlements
from settlement.ledger.db import Connection, Database
from settlement.ledger.journal import Account, AccountKind, Entry, EntryCode, Posting
from settlement.ledger.times import at, ms
from settlement.processors import holds
from settlement.refunds import store
from settlement.refunds.attachments import Attachment
from settlement.refunds.errors import NotRefundable, RefundIdReused, RefundNotFound
from settlement.refunds.policy import (
    Decision,
    ModelShare,
    Reason,
    RefundAsk,
    RefundPolicy,
    Verdict,
    decide,
    policy_max,
)
from settlement.refunds.split import Room, spread
from settlement.refunds.store import Part, RefundStatus
from settlement.statements import build_statement, statement_data

log = logging.getLogger("tipmeter.refunds")

#: Longest a processor's refund call may take before the refund stays ``pending`` (retry).
GATEWAY_TIMEOUT_S_DEFAULT: Final = 15.0

REFUND_SUCCEEDED: Final = "refund.succeeded"
REFUND_FAILED: Final = "refund.failed"
DISPUTE_OPENED: Final = "dispute.opened"
DISPUTE_CLOSED: Final = "dispute.closed"

#: Queues a webhook event: (type, subject id unique per event, data).
Announce = Callable[[str, str, Mapping[str, Any]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """A refund as asked: its client-minted id, the tab, what to refund and why."""

    refund_id: str
    ref: TabRef
    reason: Reason
    lines: Mapping[str, int | None] = field(default_factory=dict)
    amount_minor: int | None = None
    #: Support's override of the policy: who, and the written reason (empty: no override).
    override_by: str = ""
    override_reason: str = ""
    #: Who asked: ``merchant`` (the cam site's backend) or ``customer`` (from her statement).
    origin: str = "merchant"
    #: The customer's own words (a customer's request).
    note: str = ""
    #: Digests of the attachments (a customer's request): a repeat must bring the same.
    attachments: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The request as recorded: a repeat with the same id must be equal to it."""
        recorded: dict[str, Any] = {
            "customer": self.ref.customer,
            "tab_id": self.ref.tab_id,
            "reason": str(self.reason),
            "lines": dict(sorted(self.lines.items())),
            "amount_minor": self.amount_minor,
            "override_by": self.override_by,
            "override_reason": self.override_reason,
        }
        # Only a customer's request has these (a merchant's recorded before them is equal).
        if self.origin != "merchant":
            recorded["origin"] = self.origin
            recorded["note"] = self.note
            recorded["attachments"] = list(self.attachments)
        return recorded


@dataclass(frozen=True, slots=True)
class DisputeNotice:
    """A processor's dispute notice, read into one shape (:mod:`settlement.refunds.notices`)."""

    processor: str
    dispute_id: str
    capture_id: str
    currency: str
    amount_minor: int
    fee_minor: int
    reason: str
    #: ``open``, ``won`` or ``lost``.
    status: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Answer:
    """A refund or dispute as the API shows it, and whether this call created it."""

    body: dict[str, Any]
    created: bool


def capture_split(
    lines: Sequence[Line],
    captures: Sequence[tuple[str, int]],
    taken: Mapping[str, int],
    parts: Sequence[tuple[str, int]],
) -> list[tuple[str, int, int]]:
    """Which captures of a tab settled once per hold give a refund back: ``(auth_ref, capture
    number, amount)`` each.

    The captures (``(auth_ref, captured)`` in capture order) took the tab's lines in order
    (the first hold's capture the first lines, :func:`settlement.processors.holds.parts`), so
    each line lies within one capture or across two. Each refunded line's part is taken from
    the captures its line lies in, latest first, then (a capture already given back by other
    refunds) from any capture, latest first — never more from a capture than it has left
    (``taken``: what earlier refunds take from each). Raises ValueError if they cannot hold it
    (the tab's own bound makes that impossible)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for _ref, amount in captures:
        spans.append((start, start + amount))
        start += amount
    left = {ref: amount - taken.get(ref, 0) for ref, amount in captures}
    line_spans: dict[str, tuple[int, int]] = {}
    position = 0
    for line in sorted(lines, key=lambda line: line.seq):
        line_spans[line.line_id] = (position, position + line.amount_minor)
        position += line.amount_minor
    order = list(range(len(captures)))[::-1]
    out: dict[int, int] = {}
    for line_id, amount in parts:
        lo, hi = line_spans[line_id]
        own = [n for n in order if spans[n][0] < hi and lo < spans[n][1]]
        rest = amount
        for n in own + [n for n in order if n not in own]:
            take = min(rest, left[captures[n][0]])
            if take > 0:
                left[captures[n][0]] -= take
                out[n] = out.get(n, 0) + take
                rest -= take
        if rest:
            raise ValueError(f"the captures cannot give back {amount} of {line_id}")
    return [(captures[n][0], n, amount) for n, amount in sorted(out.items())]


def _sum_by_room(parts: Sequence[Part]) -> dict[str, int]:
    rooms: dict[str, int] = {}
    for part in parts:
        rooms[part.room] = rooms.get(part.room, 0) + part.model_minor
    return rooms


def refund_entry(
    refund_id: str,
    settlement_id: str,
    processor: str,
    currency: str,
    parts: Sequence[Part],
    posted_at: datetime,
) -> Entry:
    """``refund``: + each model room's part (she is owed less), + ``refunds`` the platform's
    part, − the processor's clearing account the whole (it gave the money back)."""
    postings = [
        Posting(journal.model_payable(room, currency), amount)
        for room, amount in sorted(_sum_by_room(parts).items())
    ]
    postings.append(
        Posting(Account(AccountKind.REFUNDS, currency), sum(p.platform_minor for p in parts))
    )
    postings.append(
        Posting(
            journal.processor_clearing(processor, currency), -sum(p.amount_minor for p in parts)
        )
    )
    return Entry(
        f"refund:{refund_id}",
        EntryCode.REFUND,
        currency,
        tuple(postings),
        posted_at,
        settlement_id,
    )


def dispute_entries(
    dispute: Mapping[str, Any], parts: Sequence[Part], outcome: str, posted_at: datetime
) -> Entry | None:
    """The entry of a dispute's step ``outcome`` (``open``, ``won``, ``lost``); None when it
    would move nothing (a lost dispute of lines all the model's, without a fee).

    - ``dispute_opened``: − processor clearing (amount + fee); + each room its model part;
      + ``disputes_open`` the rest;
    - ``dispute_won``: + processor clearing (amount); + ``chargebacks`` the fee; − each room
      its part back; − ``disputes_open`` what the opening put there;
    - ``dispute_lost``: + ``chargebacks``; − ``disputes_open``: the loss is final.
    """
    currency = dispute["currency"]
    amount, fee = dispute["amount_minor"], dispute["fee_minor"]
    rooms = _sum_by_room(parts)
    model = sum(rooms.values())
    clearing = journal.processor_clearing(dispute["processor"], currency)
    held = Account(AccountKind.DISPUTES_OPEN, currency)
    losses = Account(AccountKind.CHARGEBACKS, currency)
    rest = amount + fee - model
    room_postings = [
        Posting(journal.model_payable(room, currency), part) for room, part in sorted(rooms.items())
    ]
    if dispute.get("model_share", ModelShare.TAKE_BACK) == ModelShare.HOLD:
        return _held_dispute_entry(dispute, rooms, outcome, posted_at)
    if outcome == "open":
        code, postings = (
            EntryCode.DISPUTE_OPENED,
            [Posting(clearing, -(amount + fee)), *room_postings, Posting(held, rest)],
        )
    elif outcome == "won":
        code, postings = (
            EntryCode.DISPUTE_WON,
            [
                Posting(clearing, amount),
                Posting(losses, fee),
                *(Posting(p.account, -p.amount_minor) for p in room_postings),
                Posting(held, -rest),
            ],
        )
    else:
        if rest == 0:
            return None
        code, postings = EntryCode.DISPUTE_LOST, [Posting(losses, rest), Posting(held, -rest)]
    return _dispute_entry_of(dispute, outcome, code, postings, posted_at)


def _dispute_entry_of(
    dispute: Mapping[str, Any],
    outcome: str,
    code: EntryCode,
    postings: list[Posting],
    posted_at: datetime,
) -> Entry:
    """The ledger entry of a dispute's ``outcome``, keyed by the dispute so it posts once."""
    name = {"open": "dispute_opened", "won": "dispute_won", "lost": "dispute_lost"}[outcome]
    return Entry(
        f"{name}:{dispute['dispute_id']}",
        code,
        dispute["currency"],
        tuple(postings),
        posted_at,
        dispute["settlement_id"],
    )


def _held_dispute_entry(
    dispute: Mapping[str, Any], rooms: Mapping[str, int], outcome: str, posted_at: datetime
) -> Entry | None:
    """The entries of a dispute that *holds* the model's share (``model_share`` ``hold``):
    her part moves from ``model_payable`` to ``model_held`` (still hers, not payable) while the
    dispute is open, and the platform carries the whole amount and fee in ``disputes_open``:

    - ``dispute_opened``: − processor clearing (amount + fee); + ``disputes_open`` the same;
      per room + ``model_payable`` m, − ``model_held`` m;
    - ``dispute_won``: + processor clearing (amount); + ``chargebacks`` the fee;
      − ``disputes_open`` (amount + fee); per room + ``model_held`` m, − ``model_payable`` m;
    - ``dispute_lost``: + ``chargebacks`` (amount + fee − m); per room + ``model_held`` m;
      − ``disputes_open`` (amount + fee): the held share is forfeited.

    After the outcome every account stands exactly where the take-back entries leave it."""
    currency = dispute["currency"]
    amount, fee = dispute["amount_minor"], dispute["fee_minor"]
    model = sum(rooms.values())
    clearing = journal.processor_clearing(dispute["processor"], currency)
    open_ = Account(AccountKind.DISPUTES_OPEN, currency)
    losses = Account(AccountKind.CHARGEBACKS, currency)
    payable = [
        (journal.model_payable(room, currency), Account(AccountKind.MODEL_HELD, currency, room), m)
        for room, m in sorted(rooms.items())
        if m
    ]
    postings: list[Posting]
    if outcome == "open":
        code = EntryCode.DISPUTE_OPENED
        postings = [Posting(clearing, -(amount + fee)), Posting(open_, amount + fee)]
        for pay, hold, m in payable:
            postings += [Posting(pay, m), Posting(hold, -m)]
    elif outcome == "won":
        code = EntryCode.DISPUTE_WON
        postings = [Posting(clearing, amount), Posting(open_, -(amount + fee))]
        if fee:
            postings.append(Posting(losses, fee))
        for pay, hold, m in payable:
            postings += [Posting(hold, m), Posting(pay, -m)]
    else:
        code = EntryCode.DISPUTE_LOST
        postings = [Posting(open_, -(amount + fee))]
        if amount + fee - model:
            postings.append(Posting(losses, amount + fee - model))
        postings += [Posting(hold, m) for _pay, hold, m in payable]
    return _dispute_entry_of(dispute, outcome, code, postings, posted_at)


class Refunds:
    """Refunds and disputes of one deployment (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        gateway_for: Callable[[str], Gateway],
        clock: Clock,
        policy: RefundPolicy | None = None,
        *,
        announce: Announce | None = None,
        gateway_timeout_s: float = GATEWAY_TIMEOUT_S_DEFAULT,
        flag_on_dispute: bool = True,
        dispute_model_share: ModelShare = ModelShare.TAKE_BACK,
    ) -> None:
        self.database = database
        self.gateway_for = gateway_for
        self.clock = clock
        self.policy = policy or RefundPolicy()
        self.announce = announce
        self.gateway_timeout_s = gateway_timeout_s
        self.flag_on_dispute = flag_on_dispute
        self.dispute_model_share = dispute_model_share

    def _now(self) -> datetime:
        return at(self.clock.now_ms())

    # -- refunds -------------------------------------------------------------------------------

    async def request(self, req: RefundRequest, attachments: Sequence[Attachment] = ()) -> Answer:
        """Decide, reserve and carry out a refund (idempotent by its id; see the module
        docstring); a customer's ``attachments`` are recorded with it, in the same
        transaction. Raises RefundIdReused, RefundNotFound, NotRefundable."""
        sid = settlements.settlement_id_of(req.ref)
        async with self.database.connection() as conn, conn.transaction():
            await store.lock_id(conn, "refund", req.refund_id)
            row = await store.refund_row(conn, req.refund_id)
            created = row is None
            if row is not None:
                if row["request"] != req.as_json():
                    raise RefundIdReused(
                        f"refund {req.refund_id} was asked before with other parameters"
                    )
            else:
                await self._decide(conn, req, sid)
                await store.insert_attachments(conn, req.refund_id, attachments)
        body = await self._advance(req.refund_id)
        return Answer(body, created)

    async def customer_view(self, customer: str, tab_id: str) -> dict[str, Any]:
        """What the customer sees of a settled tab's refunds on her statement: each line with
        what may still be asked back of it, and every refund and request with its state (the
        ledger's words: ``awaiting_consent``, ``succeeded`` …). RefundNotFound if the ledger has
        no settlement of it; NotRefundable if it was not captured."""
        sid = settlements.settlement_id_of(TabRef(customer, tab_id))
        async with self.database.connection() as conn:
            found = await store.captured(conn, sid)
            if found is None:
                raise RefundNotFound(f"no settled tab {tab_id} of {customer}")
            if found.outcome != "captured":
                raise NotRefundable(f"tab {tab_id} was {found.outcome}: nothing to refund")
            lines = await store.refundable(conn, sid)
            refunds = await store.refunds_of(conn, sid)
        return _object(
            {
                "customer": customer,
                "tab_id": tab_id,
                "currency": found.currency,
                "captured_minor": found.captured_minor,
                "lines": lines,
                "refunds": [
                    {
                        "refund_id": r["refund_id"],
                        "origin": r["origin"],
                        "status": r["status"],
                        "escalated": r["escalated_at"] is not None,
                        "reason": r["reason"],
                        "note": r["note"],
                        "amount_minor": r["amount_minor"],
                        "refusal": r["decision"]["reason"] if r["status"] == "refused" else None,
                        "requested_at": r["requested_at"],
                        "decided_at": r["decided_at"],
                        "lines": r["decision"]["lines"],
                        "attachments": r["attachments"],
                    }
                    for r in refunds
                ],
            }
        )

    async def attachment(self, refund_id: str, n: int) -> dict[str, Any]:
        """Attachment ``n`` of a refund request, with its bytes (RefundNotFound if none)."""
        async with self.database.connection() as conn:
            found = await store.attachment(conn, refund_id, n)
        if found is None:
            raise RefundNotFound(f"refund {refund_id} has no attachment {n}")
        return found

    async def _decide(self, conn: Connection, req: RefundRequest, sid: str) -> None:
        found = await store.captured(conn, sid)
        if found is None:
            raise RefundNotFound(f"no settled tab {req.ref.tab_id} of {req.ref.customer}")
        if found.outcome != "captured" or not found.capture_id:
            raise NotRefundable(f"tab {req.ref.tab_id} was {found.outcome}: nothing to refund")
        states = await store.lock_lines(conn, sid)
        decision = decide(
            self.policy,
            RefundAsk(
                captured_at_ms=ms(found.outcome_at),
                now_ms=self.clock.now_ms(),
                lines=req.lines,
                amount_minor=req.amount_minor,
                override=bool(req.override_by and req.override_reason),
            ),
            [s.facts for s in states],
        )
        status = {
            Verdict.ALLOWED: RefundStatus.PENDING,
            Verdict.NEEDS_CONSENT: RefundStatus.AWAITING_CONSENT,
            Verdict.REFUSED: RefundStatus.REFUSED,
        }[decision.verdict]
        now = self._now()
        await conn.execute(
            """
            INSERT INTO refunds (refund_id, settlement_id, customer, tab_id, processor,
                capture_id, currency, amount_minor, reason, status, request, decision,
                decided_by, decided_at, requested_at, finished_at, origin, note)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                req.refund_id,
                sid,
                found.customer,
                found.tab_id,
                found.processor,
                found.capture_id,
                found.currency,
                decision.amount_minor,
                str(req.reason),
                str(status),
                Jsonb(req.as_json()),
                Jsonb(decision.as_json()),
                req.override_by
                or ("policy" if status is not RefundStatus.AWAITING_CONSENT else ""),
                now if status is not RefundStatus.AWAITING_CONSENT else None,
                now,
                now if status is RefundStatus.REFUSED else None,
                req.origin,
                req.note,
            ),
        )
        if status is RefundStatus.PENDING:
            await self._reserve(conn, req.refund_id, sid, states, decision)
        elif status is RefundStatus.AWAITING_CONSENT:
            # Asked of the rooms whose lines go beyond the policy (a show's first minutes
            # need no one's consent), each model on her console.
            facts = {state.facts.line_id: state.facts for state in states}
            rooms = sorted(
                {
                    facts[line_id].room
                    for line_id, amount in decision.lines
                    if amount > policy_max(self.policy, facts[line_id])
                }
                or {facts[line_id].room for line_id, _ in decision.lines}
            )
            await store.ask_consent(conn, req.refund_id, rooms)
            await store.notify_rooms(conn, rooms)

    async def _reserve(
        self,
        conn: Connection,
        refund_id: str,
        sid: str,
        states: Sequence[store.LineState],
        decision: Decision,
    ) -> None:
        parts = await store.take(conn, sid, states, dict(decision.lines), "refunded_minor")
        await store.insert_lines(conn, "refund_lines", refund_id, parts)
        await self._assign_captures(conn, refund_id, sid, parts)

    async def _assign_captures(
        self, conn: Connection, refund_id: str, sid: str, parts: Sequence[Part]
    ) -> None:
        """For a tab settled by one capture per hold: decide which capture(s) give the refund
        back (:func:`capture_split`) and record it (``refund_captures``). Under the tab's row
        lock, so what each capture has left is exact however many refunds race."""
        found = await store.captured(conn, sid)
        assert found is not None
        tab_record = await settlements.read_tab(conn, TabRef(found.customer, found.tab_id))
        assert tab_record is not None
        tab, record = tab_record
        if not tab.second_holds:
            return  # one capture: the refund row names it already
        captures = holds.parts(tab, tab.auth_ref, record.captured_minor)
        taken = await store.refunded_per_capture(conn, sid)
        split = capture_split(
            tab.lines,
            [(c.auth_ref, c.capture_minor) for c in captures],
            taken,
            [(p.line_id, p.amount_minor) for p in parts],
        )
        await store.insert_captures(
            conn,
            refund_id,
            [
                (auth_ref, number, amount, found.capture_id if number == 0 else "")
                for auth_ref, number, amount in split
            ],
        )

    async def consent(
        self,
        refund_id: str,
        *,
        accept: bool,
        by: str,
        room: str | None = None,
        support: bool = False,
    ) -> Answer:
        """A model's answer to a refund awaiting consent. ``room``: the answer of that room's
        model (her console); the refund goes on once every room asked accepted, and ends
        ``declined`` at the first decline. No ``room`` (the cam site's backend relaying it):
        the answer stands for every room asked. Accepted, the refund is reserved (on what is
        left now) and carried out. Who answered and when is recorded, per room and on the
        refund (the answer's ``created`` says whether this call recorded one). An answer to a
        refund no longer waiting (decided, declined for want of an answer, escalated to
        support) changes nothing; one from a room not asked raises RefundNotFound. ``support``:
        support staff answer for every room asked, also once the request was escalated to
        them or its time is up."""
        async with self.database.connection() as conn, conn.transaction():
            await store.lock_id(conn, "refund", refund_id)
            row = await store.refund_row(conn, refund_id)
            if row is None:
                raise RefundNotFound(f"no refund {refund_id}")
            asked = await store.consents(conn, refund_id)
            if room is not None and room not in asked:
                raise RefundNotFound(f"refund {refund_id} does not wait for room {room}")
            waiting = row["status"] == RefundStatus.AWAITING_CONSENT and (
                support or (row["escalated_at"] is None and not self._overdue(row))
            )
            rooms: list[str] = []
            now = self._now()
            if waiting:
                rooms = [r for r, answer in asked.items() if answer is None]
                if room is not None:
                    rooms = [room] if asked[room] is None else []
            if rooms:
                await store.record_consent(conn, refund_id, rooms, accept=accept, by=by, now=now)
                answers = await store.consents(conn, refund_id)
                if not accept or all(a == "accepted" for a in answers.values()):
                    await self._answer(conn, row, accept=accept, by=by)
                await store.notify_rooms(conn, asked)
        # ``created``: this answer was recorded (False: answered before, or no longer waiting).
        return Answer(await self._advance(refund_id), bool(rooms))

    async def waiting_for(self, room: str, limit: int) -> list[dict[str, Any]]:
        """The refunds waiting for ``room``'s model to answer, oldest first, at most
        ``limit``: what her console lists (no customer id: she sees what and why)."""
        async with self.database.connection() as conn:
            rows = await store.waiting_for(conn, room, limit)
        timeout_ms = self.policy.consent_timeout_s * 1000
        return [
            _object(
                {
                    "refund_id": row["refund_id"],
                    "currency": row["currency"],
                    "amount_minor": row["amount_minor"],
                    "reason": row["reason"],
                    "note": row["note"],
                    "origin": row["origin"],
                    "requested_at_ms": ms(row["requested_at"]),
                    "answer_by_ms": ms(row["requested_at"]) + timeout_ms,
                    "lines": [
                        line
                        for line in row["decision"]["lines"]
                        if line["line_id"] in row["room_lines"]
                    ],
                }
            )
            for row in rows
        ]

    async def expire_consents(self, limit: int) -> int:
        """Answer for the models who did not in time: each refund waiting longer than the
        policy's ``consent_timeout_s`` is declined (``decided_by`` ``timeout``) or, with
        ``unanswered`` ``escalate``, escalated to support (``escalated_at``; it leaves the
        models' lists and waits for support's override). At most ``limit`` per call; the
        number handled. Safe to run from every process at once."""
        cutoff = at(self.clock.now_ms() - self.policy.consent_timeout_s * 1000)
        async with self.database.connection() as conn:
            due = await store.overdue_consents(conn, cutoff, limit)
        for refund_id in due:
            await self._expire(refund_id)
        return len(due)

    async def _expire(self, refund_id: str) -> None:
        async with self.database.connection() as conn, conn.transaction():
            await store.lock_id(conn, "refund", refund_id)
            row = await store.refund_row(conn, refund_id)
            if row is None or row["status"] != RefundStatus.AWAITING_CONSENT:
                return
            if row["escalated_at"] is not None or not self._overdue(row):
                return
            now = self._now()
            if self.policy.unanswered == "escalate":
                await conn.execute(
                    "UPDATE refunds SET escalated_at = %s WHERE refund_id = %s", (now, refund_id)
                )
            else:
                await store.set_refund_status(
                    conn,
                    refund_id,
                    RefundStatus.DECLINED,
                    now=now,
                    decided_by="timeout",
                    decided_at=now,
                )
            await store.notify_rooms(conn, await store.consents(conn, refund_id))

    async def _answer(
        self, conn: Connection, row: Mapping[str, Any], *, accept: bool, by: str
    ) -> None:
        now = self._now()
        refund_id = row["refund_id"]
        if not accept:
            await store.set_refund_status(
                conn, refund_id, RefundStatus.DECLINED, now=now, decided_by=by, decided_at=now
            )
            return
        states = await store.lock_lines(conn, row["settlement_id"])
        remaining = {s.facts.line_id: s.facts.remaining_minor for s in states}
        wanted = {line["line_id"]: line["amount_minor"] for line in row["decision"]["lines"]}
        if any(amount > remaining.get(line_id, 0) for line_id, amount in wanted.items()):
            # Refunded or disputed meanwhile: what was consented to is no longer there.
            await store.set_refund_status(
                conn,
                refund_id,
                RefundStatus.DECLINED,
                now=now,
                decided_by=by,
                decided_at=now,
                failure="exceeds_refundable",
            )
            return
        decision = Decision(
            Verdict.ALLOWED,
            sum(wanted.values()),
            tuple(sorted(wanted.items())),
            reason="model_consent",
        )
        await store.set_refund_status(
            conn, refund_id, RefundStatus.PENDING, now=now, decided_by=by, decided_at=now
        )
        await self._reserve(conn, refund_id, row["settlement_id"], states, decision)

    async def read(self, refund_id: str) -> dict[str, Any]:
        """The refund ``refund_id``; one awaiting consent past the policy's time is declined
        (by ``timeout``) first, unless the policy escalates it to support."""
        return await self._advance(refund_id, run_gateway=False)

    async def _advance(self, refund_id: str, *, run_gateway: bool = True) -> dict[str, Any]:
        async with self.database.connection() as conn:
            row = await store.refund_row(conn, refund_id)
            if row is None:
                raise RefundNotFound(f"no refund {refund_id}")
            if (
                row["status"] == RefundStatus.AWAITING_CONSENT
                and row["escalated_at"] is None
                and self._overdue(row)
            ):
                await self._expire(refund_id)
                row = await store.refund_row(conn, refund_id)
                assert row is not None
        if row["status"] == RefundStatus.PENDING and run_gateway:
            await self._carry_out(row)
            async with self.database.connection() as conn:
                row = await store.refund_row(conn, refund_id)
                assert row is not None
        body = refund_json(row)
        if row["status"] in (RefundStatus.SUCCEEDED, RefundStatus.FAILED) and self.announce:
            # Idempotent by event id: announcing again after a crash queues nothing twice.
            event = REFUND_SUCCEEDED if row["status"] == RefundStatus.SUCCEEDED else REFUND_FAILED
            await self.announce(event, refund_id, body)
        return body

    def _overdue(self, row: Mapping[str, Any]) -> bool:
        """Whether a refund has waited for consent longer than the policy allows."""
        waited_ms = self.clock.now_ms() - ms(row["requested_at"])
        return waited_ms > self.policy.consent_timeout_s * 1000

    async def _carry_out(self, row: Mapping[str, Any]) -> None:
        refund_id = row["refund_id"]
        gateway = self.gateway_for(row["processor"])
        async with self.database.connection() as conn:
            parts = await store.refund_captures(conn, refund_id)
        if parts:
            await self._carry_out_parts(row, gateway, parts)
            return
        try:
            result = await asyncio.wait_for(
                gateway.refund(
                    idempotency_key=f"refund:{refund_id}",
                    capture_id=row["capture_id"],
                    amount_minor=row["amount_minor"],
                ),
                self.gateway_timeout_s,
            )
        except (GatewayUnavailable, TimeoutError):
            log.warning(
                "refund pending: the processor did not answer",
                extra={"fields": {"refund_id": refund_id}},
            )
            return
        except GatewayRequestError as exc:
            await self._finish(row, None, str(exc))
            return
        await self._finish(row, result, "")

    async def _carry_out_parts(
        self, row: Mapping[str, Any], gateway: Gateway, parts: Sequence[Mapping[str, Any]]
    ) -> None:
        """Refund each capture its part, in capture order. Keys: ``refund:<id>`` for the first
        hold's capture, ``refund:<id>#<auth_ref>`` for a further hold's (like the captures'
        own keys), so a retry repeats exactly the same requests. A capture id the ledger does
        not hold (a further hold's) is read from the processor and recorded."""
        refund_id = row["refund_id"]
        results: list[RefundResult] = []
        for part in parts:
            key = f"refund:{refund_id}"
            if part["capture_no"]:
                key += f"#{part['auth_ref']}"
            try:
                capture_id = part["capture_id"]
                if not capture_id:
                    auth = await asyncio.wait_for(
                        gateway.lookup_authorization(part["auth_ref"]), self.gateway_timeout_s
                    )
                    capture = auth.capture_result() if auth is not None else None
                    if capture is None:
                        raise GatewayRequestError(f"hold {part['auth_ref']} shows no capture")
                    capture_id = capture.capture_id
                result = await asyncio.wait_for(
                    gateway.refund(
                        idempotency_key=key,
                        capture_id=capture_id,
                        amount_minor=part["amount_minor"],
                    ),
                    self.gateway_timeout_s,
                )
            except (GatewayUnavailable, TimeoutError):
                log.warning(
                    "refund pending: the processor did not answer",
                    extra={"fields": {"refund_id": refund_id, "auth_ref": part["auth_ref"]}},
                )
                return
            except GatewayRequestError as exc:
                if not results:
                    await self._finish(row, None, str(exc))
                    return
                # An earlier capture gave its part back: the refund cannot be called failed
                # (money moved) nor succeeded. It stays pending, for an operator.
                log.error(
                    "refund partly carried out: a later capture refused its part",
                    extra={"fields": {"refund_id": refund_id, "error": str(exc)}},
                )
                return
            async with self.database.connection() as conn:
                await store.record_capture_refund(
                    conn, refund_id, part["auth_ref"], capture_id, result.refund_id
                )
            results.append(result)
        combined = RefundResult(
            refund_id=results[0].refund_id,
            capture_id=results[0].capture_id,
            amount_minor=sum(r.amount_minor for r in results),
            refunded_total_minor=sum(r.refunded_total_minor for r in results),
            processor_ref=",".join(r.processor_ref for r in results),
        )
        await self._finish(row, combined, "")

    async def _finish(
        self, row: Mapping[str, Any], result: RefundResult | None, failure: str
    ) -> None:
        refund_id, sid = row["refund_id"], row["settlement_id"]
        now = self._now()
        async with self.database.connection() as conn, conn.transaction():
            await store.lock_id(conn, "refund", refund_id)
            parts = store.parts_of(row["lines"])
            if result is None:
                if await store.set_refund_status(
                    conn, refund_id, RefundStatus.FAILED, now=now, failure=failure
                ):
                    await store.give_back(conn, sid, parts, "refunded_minor")
                return
            if await store.set_refund_status(
                conn,
                refund_id,
                RefundStatus.SUCCEEDED,
                now=now,
                processor_refund_id=result.refund_id,
                processor_ref=result.processor_ref,
            ):
                entry = refund_entry(refund_id, sid, row["processor"], row["currency"], parts, now)
                await journal.post(conn, [entry])
                # The credit note documents the money given back, in the same transaction as
                # its entry (docs/refunds.md, "Credit notes").
                await invoices.credit_refund(
                    conn,
                    refund_id=refund_id,
                    settlement_id=sid,
                    entry_id=entry.entry_id,
                    parts=[invoices.Credited(p.line_id, p.amount_minor) for p in parts],
                    posted_at=now,
                )

    # -- disputes ------------------------------------------------------------------------------

    async def dispute(self, notice: DisputeNotice) -> Answer:
        """Record a dispute notice (idempotent by the processor's dispute id): the first opens
        the dispute (claw-back, entry, flag); one saying ``won`` or ``lost`` closes it once."""
        now = at(notice.at_ms) if notice.at_ms else self._now()
        created = False
        async with self.database.connection() as conn, conn.transaction():
            await store.lock_id(conn, "dispute", notice.dispute_id)
            row = await store.dispute_row(conn, notice.dispute_id)
            if row is None:
                row = await self._open(conn, notice, now)
                created = True
            elif row["processor"] != notice.processor:
                raise RefundIdReused(f"dispute {notice.dispute_id} is another processor's")
            if notice.status in ("won", "lost") and row["status"] == "open":
                await self._close(conn, row, notice.status, now)
            await conn.execute(
                "UPDATE disputes SET notices = notices || %s WHERE dispute_id = %s",
                (Jsonb([{"status": notice.status, "at": now.isoformat()}]), notice.dispute_id),
            )
            row = await store.dispute_row(conn, notice.dispute_id)
            assert row is not None
        body = dispute_json(row)
        if self.announce is not None:
            await self.announce(DISPUTE_OPENED, notice.dispute_id, body)
            if row["status"] != "open":
                await self.announce(DISPUTE_CLOSED, notice.dispute_id, body)
        return Answer(body, created)

    async def _open(self, conn: Connection, notice: DisputeNotice, now: datetime) -> dict[str, Any]:
        cursor = await conn.execute(
            "SELECT settlement_id FROM settlements WHERE capture_id = %s AND processor = %s",
            (notice.capture_id, notice.processor),
        )
        found_row = await cursor.fetchone()
        if found_row is None:
            raise RefundNotFound(f"no capture {notice.capture_id} at {notice.processor}")
        sid = found_row["settlement_id"]
        found = await store.captured(conn, sid)
        assert found is not None
        if notice.currency != found.currency:
            raise NotRefundable(
                f"the dispute is in {notice.currency}, the capture {found.currency}"
            )
        states = await store.lock_lines(conn, sid)
        latest_first = sorted(states, key=lambda s: -s.facts.seq)
        try:
            amounts = spread(
                notice.amount_minor,
                [Room(s.facts.line_id, s.facts.remaining_minor) for s in latest_first],
            )
        except ValueError:
            raise NotRefundable(
                f"dispute {notice.dispute_id}: {notice.amount_minor} is more than is left of "
                f"capture {notice.capture_id}"
            ) from None
        parts = await store.take(conn, sid, states, amounts, "disputed_minor")
        await conn.execute(
            """
            INSERT INTO disputes (processor, dispute_id, settlement_id, customer, capture_id,
                currency, amount_minor, fee_minor, reason, status, opened_at, model_share)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'open', %s, %s)
            """,
            (
                notice.processor,
                notice.dispute_id,
                sid,
                found.customer,
                notice.capture_id,
                notice.currency,
                notice.amount_minor,
                notice.fee_minor,
                notice.reason,
                now,
                str(self.dispute_model_share),
            ),
        )
        await store.insert_lines(conn, "dispute_lines", notice.dispute_id, parts)
        row = await store.dispute_row(conn, notice.dispute_id)
        assert row is not None
        entry = dispute_entries(row, parts, "open", now)
        assert entry is not None
        await journal.post(conn, [entry])
        if self.flag_on_dispute:
            await store.flag_customer(conn, found.customer, "dispute", notice.dispute_id, now)
        return row

    async def _close(
        self, conn: Connection, row: Mapping[str, Any], outcome: str, now: datetime
    ) -> None:
        await conn.execute(
            "UPDATE disputes SET status = %s, closed_at = %s WHERE dispute_id = %s",
            (outcome, now, row["dispute_id"]),
        )
        parts = store.parts_of(row["lines"])
        if outcome == "won":
            await store.give_back(conn, row["settlement_id"], parts, "disputed_minor")
        entry = dispute_entries(row, parts, outcome, now)
        if entry is not None:
            await journal.post(conn, [entry])

    async def read_dispute(self, dispute_id: str) -> dict[str, Any]:
        """The dispute ``dispute_id`` (RefundNotFound if none)."""
        async with self.database.connection() as conn:
            row = await store.dispute_row(conn, dispute_id)
        if row is None:
            raise RefundNotFound(f"no dispute {dispute_id}")
        return dispute_json(row)

    async def evidence(self, dispute_id: str) -> dict[str, Any]:
        """The evidence package of a dispute, from the ledger: the hold(s) and the capture,
        every line with its time, each show's start, end and billed seconds, the tips, and the
        statement the customer was shown."""
        async with self.database.connection() as conn:
            row = await store.dispute_row(conn, dispute_id)
            if row is None:
                raise RefundNotFound(f"no dispute {dispute_id}")
            found = await store.captured(conn, row["settlement_id"])
            assert found is not None
            ref = TabRef(found.customer, found.tab_id)
            tab_record = await settlements.read_tab(conn, ref)
            assert tab_record is not None
            history = await store.history(conn, row["settlement_id"])
        tab, record = tab_record
        statement = statement_data(build_statement(tab, record))
        return _object(
            {
                "dispute": dispute_json(row),
                "customer": found.customer,
                "tab_id": found.tab_id,
                "processor": found.processor,
                "holds": history["holds"],
                "capture": {
                    "capture_id": found.capture_id,
                    "amount_minor": found.captured_minor,
                    "currency": found.currency,
                    "captured_at": found.outcome_at,
                    "opened_at_ms": tab.opened_at_ms,
                },
                "lines": [{**_line_json(line), "seconds": line.seconds} for line in tab.lines],
                "shows": [
                    {
                        "session_id": s["session_id"],
                        "room": s["room"],
                        "kind": s["kind"],
                        "started_at": s["started_at"],
                        "ended_at": s["ended_at"],
                        "billed_s": s["billed_s"],
                        "amount_minor": s["amount_minor"],
                        "rate_per_minute_minor": s["rate_per_minute_minor"],
                        "end_reason": s["end_reason"],
                    }
                    for s in history["shows"]
                ],
                "tips": [
                    {
                        "tip_id": line.line_id.removeprefix("tip:"),
                        "room": line.room,
                        "at_ms": line.at_ms,
                        "amount_minor": line.amount_minor,
                        "message": line.message,
                    }
                    for line in tab.lines
                    if line.kind == "tip"
                ],
                "statement": statement,
                "refunds": history["refunds"],
            }
        )

    async def find_payment(self, number: str) -> dict[str, Any]:
        """The tab a number names and its whole history (RefundNotFound if none)."""
        async with self.database.connection() as conn:
            matches = await store.find_payment(conn, number)
            if not matches:
                raise RefundNotFound(f"no payment known by {number}")
            sid, kind = matches[0]
            found = await store.captured(conn, sid)
            assert found is not None
            tab_record = await settlements.read_tab(conn, TabRef(found.customer, found.tab_id))
            assert tab_record is not None
            history = await store.history(conn, sid)
        tab, record = tab_record
        return _object(
            {
                "matched": kind,
                "also": [{"settlement_id": s, "matched": k} for s, k in matches[1:]],
                "settlement_id": sid,
                "customer": found.customer,
                "tab_id": found.tab_id,
                "processor": found.processor,
                "outcome": found.outcome,
                "capture_id": found.capture_id or None,
                "captured_minor": found.captured_minor,
                "currency": found.currency,
                "lines": [_line_json(line) for line in tab.lines],
                "statement": statement_data(build_statement(tab, record)),
                **history,
            }
        )

    async def clear_flag(self, customer: str, by: str) -> bool:
        """Support clears the customer's flag (False: none was standing)."""
        async with self.database.connection() as conn:
            return await store.clear_flag(conn, customer, by, self._now())

    async def flagged(self, customer: str) -> dict[str, Any] | None:
        """The customer's standing flag, or None."""
        async with self.database.connection() as conn:
            return await store.flag_of(conn, customer)

    async def dispute_ratios(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per processor: disputes opened and captured settlements in ``[since, until)``."""
        async with self.database.connection() as conn:
            return await store.dispute_ratios(conn, since, until)


async def customer_flagged(database: Database, customer: str) -> bool:
    """Whether a dispute's flag (not cleared by support) stops ``customer`` opening a tab."""
    async with database.connection() as conn:
        return await store.flag_of(conn, customer) is not None


def jsonable(value: Any) -> Any:
    """``value`` with times as ISO 8601 strings (rows from the database carry datetimes)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _object(value: dict[str, Any]) -> dict[str, Any]:
    result = jsonable(value)
    assert isinstance(result, dict)
    return result


def _line_json(line: Line) -> dict[str, Any]:
    """One itemized line of a tab, as evidence shows it."""
    return {
        "line_id": line.line_id,
        "kind": line.kind,
        "room": line.room,
        "at_ms": line.at_ms,
        "amount_minor": line.amount_minor,
    }


#: What the API shows of each line of a refund or a dispute: its amount and how it splits.
_SPLIT_LINE_FIELDS: Final = ("line_id", "room", "amount_minor", "model_minor", "platform_minor")


def _split_lines(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{name: line[name] for name in _SPLIT_LINE_FIELDS} for line in lines]


def refund_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A refund as the API shows it."""
    return _object(
        {
            "refund_id": row["refund_id"],
            "customer": row["customer"],
            "tab_id": row["tab_id"],
            "processor": row["processor"],
            "capture_id": row["capture_id"],
            "currency": row["currency"],
            "amount_minor": row["amount_minor"],
            "reason": row["reason"],
            "status": row["status"],
            "decision": row["decision"],
            "decided_by": row["decided_by"],
            "decided_at": row["decided_at"],
            "processor_refund_id": row["processor_refund_id"],
            "failure": row["failure"] or None,
            "requested_at": row["requested_at"],
            "finished_at": row["finished_at"],
            "lines": _split_lines(row["lines"]),
            "origin": row.get("origin", "merchant"),
            "note": row.get("note", ""),
            "escalated_at": row.get("escalated_at"),
            # Each model asked for her consent: her answer, who gave it and when.
            "consents": [
                {
                    "room": c["room"],
                    "answer": c["answer"],
                    "answered_by": c["answered_by"] or None,
                    "answered_at": c["answered_at"],
                }
                for c in row.get("consents", [])
            ],
            # A tab settled by one capture per hold: what each capture gives back.
            "captures": [
                {
                    "auth_ref": c["auth_ref"],
                    "capture_id": c["capture_id"] or None,
                    "amount_minor": c["amount_minor"],
                    "processor_refund_id": c["processor_refund_id"] or None,
                }
                for c in row.get("captures", [])
            ],
        }
    )


def dispute_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dispute as the API shows it."""
    return _object(
        {
            "dispute_id": row["dispute_id"],
            "processor": row["processor"],
            "customer": row["customer"],
            "tab_id": row["settlement_id"].partition("/")[2],
            "capture_id": row["capture_id"],
            "currency": row["currency"],
            "amount_minor": row["amount_minor"],
            "fee_minor": row["fee_minor"],
            "reason": row["reason"],
            "status": row["status"],
            "opened_at": row["opened_at"],
            "closed_at": row["closed_at"],
            "lines": _split_lines(row["lines"]),
        }
    )
