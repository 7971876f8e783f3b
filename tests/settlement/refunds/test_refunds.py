"""Refunds through the service: the policy decides, the sandbox refunds, the ledger posts a
balanced entry taking back the model's and the platform's parts, and the bounds hold.

Real Redis (the meter and the worker that settles), the sandbox processor, a real PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.sessions import SessionKind
from settlement.gateway import GatewayRequestError
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.refunds.errors import NotRefundable, RefundIdReused, RefundNotFound
from settlement.refunds.policy import Reason, RefundPolicy, Unanswered
from settlement.refunds.service import RefundRequest, Refunds
from settlement.refunds.split import model_part
from settlement.sandbox import Fault, SandboxGateway
from tests.settlement.helpers import make_worker, open_backed_tab
from tests.settlement.refunds.helpers import refund_by_support, settled_tab


def _refunds(ledger: Ledger, gateway: SandboxGateway, clock: FakeClock, **kw: Any) -> Refunds:
    events: list[tuple[str, str, Any]] = []

    async def announce(kind: str, subject: str, data: Any) -> None:
        events.append((kind, subject, data))

    service = Refunds(ledger.database, lambda _name: gateway, clock, announce=announce, **kw)
    service.events = events  # type: ignore[attr-defined]
    return service


async def _lines(ledger: Ledger, ref: TabRef) -> dict[str, Any]:
    found = await ledger.read_tab(ref)
    assert found is not None
    return {line.line_id: line for line in found[0].lines}


async def _entry(ledger: Ledger, entry_id: str) -> dict[str, int]:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT a.code, p.amount_minor FROM postings p JOIN accounts a USING (account_id)
            WHERE p.entry_id = %s ORDER BY p.posting_no
            """,
            (entry_id,),
        )
        return {row["code"]: row["amount_minor"] for row in await cursor.fetchall()}


async def _unbalanced(ledger: Ledger) -> list[str]:
    async with ledger.database.connection() as conn:
        return await journal.unbalanced_entries(conn)


async def test_a_show_within_the_policy_is_refunded_posted_and_announced(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, capture_id = await settled_tab(meter, gateway, ledger, clock, show_s=120)
    refunds = _refunds(ledger, gateway, clock)
    show = (await _lines(ledger, ref))["sess:s1"]
    request = RefundRequest("rf-1", ref, Reason.SHOW_NOT_DELIVERED, lines={"sess:s1": None})

    answer = await refunds.request(request)

    body = answer.body
    assert answer.created
    assert body["status"] == "succeeded", body
    assert body["decision"]["verdict"] == "allowed"
    assert body["decision"]["reason"] == "within_policy"
    assert body["amount_minor"] == show.amount_minor
    # The processor refunded it, under the key derived from the refund id.
    recorded = await gateway.lookup("refund:rf-1")
    assert recorded is not None
    assert body["processor_refund_id"] == recorded.refund_id  # type: ignore[union-attr]
    # The entry takes back the model's part by the one rounding rule, the platform the rest.
    model = model_part(show.amount_minor, show.amount_minor, show.share_minor)
    assert model == show.share_minor
    assert await _entry(ledger, "refund:rf-1") == {
        "model_payable:roomA:USD": model,
        "refunds:USD": show.amount_minor - model,
        "processor_clearing:sandbox:USD": -show.amount_minor,
    }
    assert await _unbalanced(ledger) == []
    assert [e[0] for e in refunds.events] == ["refund.succeeded"]  # type: ignore[attr-defined]

    # The same request again: the same refund, nothing refunded twice.
    again = await refunds.request(request)
    assert not again.created
    assert again.body == body
    assert gateway._captures[capture_id].refunded_minor == show.amount_minor
    with pytest.raises(RefundIdReused):
        await refunds.request(RefundRequest("rf-1", ref, Reason.OTHER, amount_minor=1))


async def test_partial_refunds_take_back_exactly_the_shares_once_the_tab_is_whole(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock, show_s=90)
    refunds = _refunds(ledger, gateway, clock)
    lines = await _lines(ledger, ref)
    total = sum(line.amount_minor for line in lines.values())
    before = {
        room: await ledger.account_balance(journal.model_payable(room, "USD"))
        for room in ("roomA", "roomB")
    }
    # Odd steps, by support (beyond the policy for tips), until nothing is left.
    steps, asked = [7, 33, 101, 1], 0
    for number, amount in enumerate(steps):
        await refund_by_support(refunds, f"rf-{number}", ref, amount)
        asked += amount
    rest = await refunds.request(
        RefundRequest("rf-rest", ref, Reason.GOODWILL, override_by="s", override_reason="all")
    )
    assert rest.body["amount_minor"] == total - asked
    # Every model is owed exactly nothing of this tab any more; the platform kept nothing.
    for room in ("roomA", "roomB"):
        assert await ledger.account_balance(journal.model_payable(room, "USD")) == 0, before
    assert await ledger.account_balance(journal.processor_clearing("sandbox", "USD")) == 0
    assert await _unbalanced(ledger) == []
    # Nothing left: one more cent is refused, exactly.
    refused = await refunds.request(
        RefundRequest(
            "rf-more", ref, Reason.GOODWILL, amount_minor=1, override_by="s", override_reason="x"
        )
    )
    assert refused.body["status"] == "refused"
    assert refused.body["decision"]["reason"] == "exceeds_refundable"


async def test_a_tip_waits_for_the_models_consent_and_who_decided_is_recorded(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock)
    refunds = _refunds(ledger, gateway, clock)

    asked = await refunds.request(RefundRequest("rf-t1", ref, Reason.OTHER, lines={"tip:t1": None}))
    assert asked.body["status"] == "awaiting_consent"
    assert asked.body["decision"]["reason"] == "tip_needs_consent"
    assert await gateway.lookup("refund:rf-t1") is None

    accepted = await refunds.consent("rf-t1", accept=True, by="model:roomA")
    assert accepted.body["status"] == "succeeded"
    assert accepted.body["decided_by"] == "model:roomA"
    assert accepted.body["amount_minor"] == 301

    declined = await refunds.request(
        RefundRequest("rf-t2", ref, Reason.OTHER, lines={"tip:t2": None})
    )
    await refunds.consent("rf-t2", accept=False, by="model:roomB")
    assert (await refunds.read("rf-t2"))["status"] == "declined"

    unanswered = await refunds.request(
        RefundRequest("rf-t3", ref, Reason.OTHER, lines={"tip:t2": 10})
    )
    assert unanswered.body["status"] == "awaiting_consent"
    clock.advance(RefundPolicy().consent_timeout_s * 1000 + 1)
    # An answer after the time is up changes nothing: the request was declined by the timeout.
    late = await refunds.consent("rf-t3", accept=True, by="model:roomB")
    assert (late.body["status"], late.body["decided_by"]) == ("declined", "timeout")
    timed_out = await refunds.read("rf-t3")
    assert (timed_out["status"], timed_out["decided_by"]) == ("declined", "timeout")
    assert declined.body["status"] == "awaiting_consent"


async def test_the_policy_refuses_late_spy_and_too_much_and_support_may_override(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock, show_s=30, show_kind=SessionKind.SPY)
    refunds = _refunds(ledger, gateway, clock)
    spy = await refunds.request(RefundRequest("rf-s", ref, Reason.OTHER, lines={"sess:s1": None}))
    assert (spy.body["status"], spy.body["decision"]["reason"]) == ("refused", "not_refundable")
    too_much = await refunds.request(
        RefundRequest("rf-x", ref, Reason.OTHER, lines={"tip:t1": 302})
    )
    assert too_much.body["decision"]["reason"] == "exceeds_refundable"
    clock.advance(RefundPolicy().window_s * 1000 + 1)
    late = await refunds.request(RefundRequest("rf-l", ref, Reason.OTHER, amount_minor=10))
    assert (late.body["status"], late.body["decision"]["reason"]) == (
        "refused",
        "refund_window_closed",
    )
    override = await refunds.request(
        RefundRequest(
            "rf-o",
            ref,
            Reason.OTHER,
            amount_minor=10,
            override_by="support-7",
            override_reason="the stream froze, ticket 881",
        )
    )
    assert override.body["status"] == "succeeded"
    assert override.body["decided_by"] == "support-7"
    assert override.body["decision"]["reason"] == "support_override"


async def test_a_long_private_show_is_refunded_by_its_first_minutes_beyond_with_consent(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock, tips=(), show_s=600)
    refunds = _refunds(ledger, gateway, clock)
    show = (await _lines(ledger, ref))["sess:s1"]
    full = await refunds.request(RefundRequest("rf-f", ref, Reason.OTHER, lines={"sess:s1": None}))
    assert full.body["status"] == "awaiting_consent"
    assert full.body["decision"]["reason"] == "beyond_show_policy"
    assert full.body["decision"]["policy_max_minor"] == show.amount_minor * 300 // show.seconds
    within = await refunds.request(
        RefundRequest(
            "rf-w", ref, Reason.OTHER, amount_minor=full.body["decision"]["policy_max_minor"]
        )
    )
    assert within.body["status"] == "succeeded"


async def test_the_processor_not_answering_leaves_the_refund_pending_and_a_retry_finishes_it(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, capture_id = await settled_tab(meter, gateway, ledger, clock, show_s=60)
    refunds = _refunds(ledger, gateway, clock)
    request = RefundRequest("rf-p", ref, Reason.OTHER, lines={"sess:s1": None})
    gateway.inject("refund", Fault.TIMEOUT_AFTER_COMMIT)
    first = await refunds.request(request)
    assert first.body["status"] == "pending"
    second = await refunds.request(request)
    assert second.body["status"] == "succeeded"
    # Committed once at the processor, though asked twice.
    assert gateway._captures[capture_id].refunded_minor == second.body["amount_minor"]


async def test_a_refund_the_processor_refuses_fails_and_releases_what_it_reserved(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, capture_id = await settled_tab(meter, gateway, ledger, clock, show_s=60)
    refunds = _refunds(ledger, gateway, clock)
    capture = gateway._captures[capture_id]
    # Someone refunded the whole capture in the processor's dashboard, behind our back.
    await gateway.refund(
        idempotency_key="dashboard", capture_id=capture_id, amount_minor=capture.amount_minor
    )
    failed = await refunds.request(
        RefundRequest("rf-d", ref, Reason.OTHER, lines={"sess:s1": None})
    )
    assert failed.body["status"] == "failed"
    assert "exceed" in failed.body["failure"]
    assert [e[0] for e in refunds.events] == ["refund.failed"]  # type: ignore[attr-defined]
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT refunded_minor, model_taken_minor FROM refundable_lines WHERE line_id = %s",
            ("sess:s1",),
        )
        assert await cursor.fetchone() == {"refunded_minor": 0, "model_taken_minor": 0}
    with pytest.raises(GatewayRequestError):
        await gateway.refund(idempotency_key="again", capture_id=capture_id, amount_minor=1)


async def test_only_a_captured_tab_is_refunded(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    refunds = _refunds(ledger, gateway, clock)
    with pytest.raises(RefundNotFound):
        await refunds.request(RefundRequest("rf-n", TabRef("c9", "nope"), Reason.OTHER))
    ref = await open_backed_tab(meter, gateway, customer="c-void")
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    await make_worker(meter, gateway, ledger).run_burst()
    with pytest.raises(NotRefundable):
        await refunds.request(RefundRequest("rf-v", ref, Reason.OTHER))


async def test_each_room_asked_answers_for_its_lines_and_the_list_follows(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock)
    refunds = _refunds(ledger, gateway, clock)
    both = await refunds.request(
        RefundRequest("rf-both", ref, Reason.OTHER, lines={"tip:t1": None, "tip:t2": None})
    )
    assert both.body["status"] == "awaiting_consent"
    assert [(c["room"], c["answer"]) for c in both.body["consents"]] == [
        ("roomA", None),
        ("roomB", None),
    ]
    # Each model's list shows the refund with her own lines only.
    (for_a,) = await refunds.waiting_for("roomA", 10)
    assert (for_a["refund_id"], [x["line_id"] for x in for_a["lines"]]) == ("rf-both", ["tip:t1"])
    (for_b,) = await refunds.waiting_for("roomB", 10)
    assert [x["line_id"] for x in for_b["lines"]] == ["tip:t2"]
    with pytest.raises(RefundNotFound):
        await refunds.consent("rf-both", accept=True, by="model:roomC", room="roomC")

    half = await refunds.consent("rf-both", accept=True, by="model:roomA", room="roomA")
    assert half.body["status"] == "awaiting_consent"
    assert await refunds.waiting_for("roomA", 10) == []
    clock.advance(1_000)
    done = await refunds.consent("rf-both", accept=True, by="model:roomB", room="roomB")
    assert (done.body["status"], done.body["decided_by"]) == ("succeeded", "model:roomB")
    answers = {c["room"]: (c["answer"], c["answered_by"]) for c in done.body["consents"]}
    assert answers == {"roomA": ("accepted", "model:roomA"), "roomB": ("accepted", "model:roomB")}
    assert all(c["answered_at"] for c in done.body["consents"])
    assert await refunds.waiting_for("roomB", 10) == []


@pytest.mark.parametrize("unanswered", [Unanswered.DECLINE, Unanswered.ESCALATE])
async def test_an_unanswered_request_is_declined_or_escalated_by_the_sweep(
    meter: Meter,
    gateway: SandboxGateway,
    ledger: Ledger,
    clock: FakeClock,
    unanswered: Unanswered,
) -> None:
    ref, _ = await settled_tab(meter, gateway, ledger, clock)
    policy = RefundPolicy(consent_timeout_s=60, unanswered=unanswered)
    refunds = Refunds(ledger.database, lambda _n: gateway, clock, policy)
    await refunds.request(RefundRequest("rf-late", ref, Reason.OTHER, lines={"tip:t1": 10}))
    assert await refunds.expire_consents(10) == 0  # not yet overdue
    assert len(await refunds.waiting_for("roomA", 10)) == 1
    clock.advance(60_001)
    assert await refunds.expire_consents(10) == 1
    assert await refunds.expire_consents(10) == 0  # once
    assert await refunds.waiting_for("roomA", 10) == []
    # Her answer after the time is up changes nothing, either way.
    late = await refunds.consent("rf-late", accept=True, by="model:roomA", room="roomA")
    if unanswered is Unanswered.DECLINE:
        assert (late.body["status"], late.body["decided_by"]) == ("declined", "timeout")
        assert late.body["decided_at"]
    else:
        assert late.body["status"] == "awaiting_consent"
        assert late.body["escalated_at"]
        assert late.body["consents"][0]["answer"] is None
        # Escalated: support answers it, and who decided is theirs.
        decided = await refunds.consent("rf-late", accept=True, by="support:agent-1", support=True)
        assert (decided.body["status"], decided.body["decided_by"]) == (
            "succeeded",
            "support:agent-1",
        )
        assert decided.body["consents"][0]["answered_by"] == "support:agent-1"
