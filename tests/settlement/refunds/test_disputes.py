"""Disputes through the service: the claw-back, its outcome, the flag, the evidence, and model
earnings that equal the ledger's sum for the room after every step."""

from __future__ import annotations

import pytest

from metering.clock import FakeClock
from metering.meter import Meter
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.refunds.policy import ModelShare, Reason
from settlement.refunds.service import DisputeNotice, RefundRequest, Refunds
from settlement.sandbox import SandboxGateway
from tests.settlement.refunds.helpers import settled_tab

FEE = 1_500


async def _earned_after_clawbacks(ledger: Ledger, room: str) -> int:
    """What the model of ``room`` is owed from the settlement tables: her shares, less the
    parts taken back by succeeded refunds and by open or lost disputes."""
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT (SELECT coalesce(sum(share_minor), 0) FROM model_earnings
                    WHERE room = %(r)s AND collected)
                 - (SELECT coalesce(sum(l.model_minor), 0) FROM refund_lines l
                    JOIN refunds f USING (refund_id) WHERE l.room = %(r)s
                    AND f.status = 'succeeded')
                 - (SELECT coalesce(sum(l.model_minor), 0) FROM dispute_lines l
                    JOIN disputes d USING (dispute_id) WHERE l.room = %(r)s
                    AND d.status <> 'won') AS owed
            """,
            {"r": room},
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row["owed"])


async def _check_earnings(ledger: Ledger) -> None:
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []
    for room in ("roomA", "roomB"):
        owed = -await ledger.account_balance(journal.model_payable(room, "USD"))
        assert owed == await _earned_after_clawbacks(ledger, room), room


def _notice(
    capture_id: str, amount: int, status: str = "open", dispute_id: str = "dp_1"
) -> DisputeNotice:
    return DisputeNotice(
        "sandbox", dispute_id, capture_id, "USD", amount, FEE, "fraudulent", status, 0
    )


async def test_a_dispute_claws_back_flags_the_customer_and_a_win_gives_it_back(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, capture_id = await settled_tab(meter, gateway, ledger, clock, show_s=60)
    refunds = Refunds(ledger.database, lambda _n: gateway, clock)
    # A part is refunded first; the dispute takes what is left.
    first = await refunds.request(RefundRequest("rf-1", ref, Reason.OTHER, lines={"sess:s1": None}))
    assert first.body["status"] == "succeeded"
    left = 301 + 250

    opened = await refunds.dispute(_notice(capture_id, left))
    assert opened.created
    assert opened.body["status"] == "open"
    assert sum(line["amount_minor"] for line in opened.body["lines"]) == left
    assert (await refunds.flagged(ref.customer)) is not None
    await _check_earnings(ledger)
    clearing = journal.processor_clearing("sandbox", "USD")
    assert (
        await ledger.account_balance(clearing) == -FEE
    )  # the capture, all taken back, and the fee

    again = await refunds.dispute(_notice(capture_id, left))
    assert not again.created
    assert await ledger.account_balance(clearing) == -FEE  # nothing doubled
    nothing = await refunds.request(
        RefundRequest(
            "rf-2", ref, Reason.OTHER, amount_minor=1, override_by="s", override_reason="x"
        )
    )
    assert nothing.body["decision"]["reason"] == "exceeds_refundable"

    won = await refunds.dispute(_notice(capture_id, left, "won"))
    assert won.body["status"] == "won"
    await _check_earnings(ledger)
    # The disputed amount is back; the processor kept its fee: a chargeback loss.
    assert await ledger.account_balance(clearing) == left - FEE
    assert (
        await ledger.account_balance(journal.Account(journal.AccountKind.CHARGEBACKS, "USD")) == FEE
    )
    assert (
        await ledger.account_balance(journal.Account(journal.AccountKind.DISPUTES_OPEN, "USD")) == 0
    )
    # Won back: the lines may be refunded again.
    after = await refunds.request(
        RefundRequest(
            "rf-3", ref, Reason.OTHER, amount_minor=left, override_by="s", override_reason="x"
        )
    )
    assert after.body["status"] == "succeeded"
    await _check_earnings(ledger)
    assert await refunds.clear_flag(ref.customer, "support-1")
    assert await refunds.flagged(ref.customer) is None


async def test_a_lost_dispute_makes_the_loss_final_and_the_evidence_comes_from_the_ledger(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref, capture_id = await settled_tab(
        meter, gateway, ledger, clock, show_s=45, messages={"t1": "for the <b>song</b> 🎵"}
    )
    refunds = Refunds(ledger.database, lambda _n: gateway, clock)
    found = await ledger.read_tab(ref)
    assert found is not None
    captured = found[1].captured_minor
    show_line = next(line for line in found[0].lines if line.kind == "session")
    await refunds.dispute(_notice(capture_id, captured, dispute_id="dp_2"))
    lost = await refunds.dispute(_notice(capture_id, captured, "lost", dispute_id="dp_2"))
    assert lost.body["status"] == "lost"
    await _check_earnings(ledger)
    assert (
        await ledger.account_balance(journal.Account(journal.AccountKind.DISPUTES_OPEN, "USD")) == 0
    )
    model = sum(line["model_minor"] for line in lost.body["lines"])
    assert (
        await ledger.account_balance(journal.Account(journal.AccountKind.CHARGEBACKS, "USD"))
        == captured + FEE - model
    )

    evidence = await refunds.evidence("dp_2")
    assert evidence["capture"]["capture_id"] == capture_id
    assert evidence["capture"]["amount_minor"] == captured
    assert [h["kind"] for h in evidence["holds"]] == [] or evidence["holds"][0][
        "kind"
    ] == "authorize"
    # The tips with their messages, as the viewer sent them, kept by the ledger.
    assert {t["tip_id"]: t["message"] for t in evidence["tips"]} == {
        "t1": "for the <b>song</b> 🎵",
        "t2": "",
    }
    (show,) = evidence["shows"]
    assert (show["session_id"], show["billed_s"], show["amount_minor"]) == (
        "s1",
        show_line.seconds,
        show_line.amount_minor,
    )
    assert show["started_at"]
    assert show["ended_at"]
    assert evidence["statement"]["total_minor"] == captured


@pytest.mark.parametrize("share", [ModelShare.TAKE_BACK, ModelShare.HOLD])
@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_the_models_share_is_taken_back_or_held_by_policy_and_entries_balance(
    meter: Meter,
    gateway: SandboxGateway,
    ledger: Ledger,
    clock: FakeClock,
    share: ModelShare,
    outcome: str,
) -> None:
    ref, capture_id = await settled_tab(meter, gateway, ledger, clock, show_s=30)
    refunds = Refunds(ledger.database, lambda _n: gateway, clock, dispute_model_share=share)
    found = await ledger.read_tab(ref)
    assert found is not None
    captured = found[1].captured_minor
    before = {
        room: await ledger.account_balance(journal.model_payable(room, "USD"))
        for room in ("roomA", "roomB")
    }

    opened = await refunds.dispute(_notice(capture_id, captured, dispute_id="dp_h"))
    parts = {line["room"]: 0 for line in opened.body["lines"]}
    for line in opened.body["lines"]:
        parts[line["room"]] += line["model_minor"]
    await _check_earnings(ledger)
    disputes_open = journal.Account(journal.AccountKind.DISPUTES_OPEN, "USD")
    for room, part in parts.items():
        held = journal.Account(journal.AccountKind.MODEL_HELD, "USD", room)
        # Either way she is not paid the disputed part while the dispute is open ...
        payable = await ledger.account_balance(journal.model_payable(room, "USD"))
        assert payable == before[room] + part
        # ... but held, it is still hers (credited to her held account), not the platform's.
        assert await ledger.account_balance(held) == (-part if share is ModelShare.HOLD else 0)
    model = sum(parts.values())
    assert await ledger.account_balance(disputes_open) == captured + FEE - (
        0 if share is ModelShare.HOLD else model
    )

    await refunds.dispute(_notice(capture_id, captured, outcome, dispute_id="dp_h"))
    await _check_earnings(ledger)
    # After the outcome both policies leave every account in the same place.
    assert await ledger.account_balance(disputes_open) == 0
    chargebacks = journal.Account(journal.AccountKind.CHARGEBACKS, "USD")
    for room, part in parts.items():
        held = journal.Account(journal.AccountKind.MODEL_HELD, "USD", room)
        assert await ledger.account_balance(held) == 0
        payable = await ledger.account_balance(journal.model_payable(room, "USD"))
        assert payable == before[room] + (0 if outcome == "won" else part)
    assert await ledger.account_balance(chargebacks) == (
        FEE if outcome == "won" else captured + FEE - model
    )
    clearing = journal.processor_clearing("sandbox", "USD")
    assert await ledger.account_balance(clearing) == (captured - FEE if outcome == "won" else -FEE)
