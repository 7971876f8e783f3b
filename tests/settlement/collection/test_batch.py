"""Batch start: every row checked and explained; good rows created whole and payable."""

from __future__ import annotations

import pytest

from metering.clock import FakeClock
from settlement.collection import batch
from settlement.collection.collector import ChargeCode, CollectionConfig, Collector
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox import SandboxGateway

CSV = (
    b"customer,amount_minor,currency,phone,email,language\n"
    b"alice,1250,EUR,+37060012345,,lt\n"
    b"bob,0,EUR,,bob@example.com,de\n"
    b"carol,990,XXX,,,fr\n"
    b"dave,500,USD,,dave@example.com,\n"
)


def test_a_csv_list_is_checked_row_by_row_with_every_problem_explained() -> None:
    good, bad = batch.parse(CSV, "text/csv")
    assert [(r.number, r.customer, r.amount_minor, r.language) for r in good] == [
        (1, "alice", 1250, "lt"),
        (4, "dave", 500, "en"),
    ]
    assert [r.number for r in bad] == [2, 3]
    assert bad[0].errors == ("amount_minor must be an integer from 1 to 10000000",)
    assert len(bad[1].errors) == 3  # currency, no contact, language


def test_a_json_list_reads_the_same_fields_and_garbage_is_refused_whole() -> None:
    body = (
        b'{"rows": [{"customer": "a", "amount_minor": 5, "currency": "USD",'
        b' "phone": "+1555123456"}]}'
    )
    good, bad = batch.parse(body, "application/json")
    assert (len(good), len(bad)) == (1, 0)
    with pytest.raises(batch.BatchFormatError):
        batch.parse(b"[1, 2]", "application/json")
    with pytest.raises(batch.BatchFormatError):
        batch.parse(b"not json", "application/json")


async def test_an_uploaded_debt_is_created_whole_once_and_paid_through_its_link(
    gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    collector = Collector(
        ledger, ProcessorRegistry.single(gateway), CollectionConfig(link_secret="s")
    )
    good, _ = batch.parse(CSV, "text/csv")
    case_id, token = await collector.open_uploaded("b1", good[0], "sandbox", clock.now_ms())
    assert token is not None
    again = await collector.open_uploaded("b1", good[0], "sandbox", clock.now_ms())
    assert again == (case_id, None)  # the same list again creates nothing twice
    owed = journal.customer_tab(f"batch:{case_id}", "EUR")
    assert await ledger.account_balance(owed) == 1250
    case = await collector.case(case_id)
    assert case is not None
    assert (case["state"], case["origin"], case["language"]) == ("link_sent", "batch", "lt")

    paid = await collector.pay_link(token, "tok_visa", clock.now_ms())
    assert paid.code is ChargeCode.PAID
    assert await ledger.account_balance(owed) == 0
    assert await ledger.account_balance(journal.earnings_pending("EUR")) == 0
    assert await ledger.account_balance(journal.platform_revenue("EUR")) == -1250
    assert await ledger.account_balance(journal.processor_clearing("sandbox", "EUR")) == 1250
