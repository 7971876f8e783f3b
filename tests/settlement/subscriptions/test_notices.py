"""Member notices through a real SMTP server process: receipts, the card-expiry notice before a
renewal the card will not reach, and the dunning notices — each once, in the member's language."""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections import Counter
from pathlib import Path

from settlement.ledger.ledger import Ledger
from settlement.notify.smtp import SmtpConfig, SmtpNotifier
from settlement.subscriptions.service import NewSubscription
from tests.settlement.notify.test_notify import smtp_server
from tests.settlement.subscriptions.helpers import World, plan

__all__ = ["smtp_server"]


def _mail(sid: str, card: str, language: str, card_expires: str) -> NewSubscription:
    return NewSubscription(
        subscription_id=sid,
        customer=f"cust-{sid}",
        plan_id="gold",
        currency="EUR",
        payment_method=card,
        country="DE",
        country_evidence="card_country",
        email=f"{sid}@example.com",
        language=language,
        card_expires=card_expires,
    )


async def test_receipts_card_expiry_and_dunning_notices_are_mailed_once(
    ledger: Ledger, smtp_server: tuple[int, Path]
) -> None:
    port, maildir = smtp_server
    world = World(ledger)
    world.renewals.notify_with(SmtpNotifier(SmtpConfig("127.0.0.1", port)))
    await world.subs.put_plan(plan(), world.clock.now_ms())
    # Anchored on 31 January: renewals on 28 February and 31 March; a card valid through
    # February reaches the first, not the second.
    await world.subs.create(_mail("de1", "tok_visa", "de", "2026-02"), world.clock.now_ms())
    await world.subs.create(
        _mail("en1", "tok_decline_insufficient_funds", "en", ""), world.clock.now_ms()
    )
    await world.run()
    await world.advance_days(61)
    subjects: Counter[tuple[str, str]] = Counter()
    for found in mailbox.Maildir(maildir, create=False):
        mail = email.message_from_bytes(found.as_bytes(), policy=email.policy.default)
        subjects[(str(mail["To"]), str(mail["Subject"]))] += 1
    assert subjects == {
        ("de1@example.com", "Ihre Mitgliedschaftsquittung"): 3,
        ("de1@example.com", "Ihre Karte läuft vor der nächsten Verlängerung ab"): 1,
        ("en1@example.com", "Your membership payment did not go through"): 1,
        ("en1@example.com", "Your membership is paused"): 1,
        ("en1@example.com", "Your membership has ended"): 1,
    }
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT status, count(*) AS n FROM subscription_notices GROUP BY status"
        )
        rows = {row["status"]: row["n"] for row in await cursor.fetchall()}
    assert rows == {"sent": 7}


def test_every_notice_renders_in_both_languages(ledger: Ledger) -> None:
    from settlement.notify.log import LogNotifier
    from settlement.subscriptions.notices import KINDS, MemberNotices

    notices = MemberNotices(ledger.database, LogNotifier())
    for kind in KINDS:
        for language in ("en", "de", "xx"):
            message = notices.render(
                kind, "a@example.com", language=language, plan_id="<gold>", amount="9.90 EUR"
            )
            assert message.subject
            assert "&lt;gold&gt;" in message.html  # autoescaped
            assert "<gold>" in message.text
