"""Messages to members: receipts, dunning notices and card-expiry notices, by e-mail.

The scheduler names what happened (:class:`~settlement.subscriptions.scheduler.Notice`:
``receipt``, ``declined``, ``restricted``, ``cancelled``, ``card_expiring``) after its
transaction commits; :class:`MemberNotices` renders the message from a template in the member's
language (English, German; another falls back to English) and sends it through the notifier
(:mod:`settlement.notify`). Each notice is recorded once in ``subscription_notices`` by its id
(``<kind>:<subscription>:<period>``): a notice repeated is not sent twice. A notice whose sending
was refused or unavailable is recorded so and not sent again (messages are at most once; the
money never depends on them).

The templates are ``member_email.txt`` and ``member_email.html`` (Jinja2, HTML autoescaped) in
:data:`TEMPLATES_DIR`; a merchant replaces them by passing another folder with the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2

from metering.money import format_minor
from settlement.ledger.db import Database
from settlement.ledger.times import at
from settlement.notify.base import Channel, Message, Notifier
from settlement.subscriptions import invoices, store

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
KINDS: Final = ("receipt", "declined", "restricted", "cancelled", "card_expiring")


@dataclass(frozen=True, slots=True)
class Notice:
    """A message a transition calls for (sent after the transaction commits)."""

    kind: str  # one of KINDS
    subscription_id: str
    period_no: int


CATALOGUE: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "greeting": "Hello,",
        "receipt_subject": "Your membership receipt",
        "receipt_body": "Thank you: your membership was renewed and paid.",
        "declined_subject": "Your membership payment did not go through",
        "declined_body": "We could not charge your card for your membership. We will try "
        "again; you can also update your card in your account.",
        "restricted_subject": "Your membership is paused",
        "restricted_body": "Your membership is still unpaid, so its features are paused. "
        "Update your card to restore them.",
        "cancelled_subject": "Your membership has ended",
        "cancelled_body": "Your membership has ended. You are welcome back at any time.",
        "card_expiring_subject": "Your card expires before your next renewal",
        "card_expiring_body": "The card on file expires before your membership renews. "
        "Please update it to keep your membership.",
        "amount": "Amount",
        "invoice": "Invoice",
        "plan": "Plan",
        "period_end": "Next renewal",
        "signature": "Your membership team",
    },
    "de": {
        "greeting": "Hallo,",
        "receipt_subject": "Ihre Mitgliedschaftsquittung",
        "receipt_body": "Vielen Dank: Ihre Mitgliedschaft wurde verlängert und bezahlt.",
        "declined_subject": "Die Zahlung Ihrer Mitgliedschaft ist nicht durchgegangen",
        "declined_body": "Wir konnten Ihre Karte für Ihre Mitgliedschaft nicht belasten. Wir "
        "versuchen es erneut; Sie können Ihre Karte auch in Ihrem Konto ändern.",
        "restricted_subject": "Ihre Mitgliedschaft ist pausiert",
        "restricted_body": "Ihre Mitgliedschaft ist noch unbezahlt, daher sind ihre Funktionen "
        "pausiert. Ändern Sie Ihre Karte, um sie wiederherzustellen.",
        "cancelled_subject": "Ihre Mitgliedschaft ist beendet",
        "cancelled_body": "Ihre Mitgliedschaft ist beendet. Sie sind jederzeit wieder willkommen.",
        "card_expiring_subject": "Ihre Karte läuft vor der nächsten Verlängerung ab",
        "card_expiring_body": "Die hinterlegte Karte läuft ab, bevor sich Ihre Mitgliedschaft "
        "verlängert. Bitte ändern Sie sie, um Ihre Mitgliedschaft zu behalten.",
        "amount": "Betrag",
        "invoice": "Rechnung",
        "plan": "Tarif",
        "period_end": "Nächste Verlängerung",
        "signature": "Ihr Mitgliedschaftsteam",
    },
}


class MemberNotices:
    """Renders and sends member notices once each (see the module docstring)."""

    def __init__(
        self, database: Database, notifier: Notifier, templates_dir: Path = TEMPLATES_DIR
    ) -> None:
        self.database = database
        self.notifier = notifier
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
        )

    async def send(self, notice: Notice, now_ms: int) -> str:
        """Send ``notice`` unless it was sent before; how it went (``sent``, ``refused``,
        ``unavailable``, ``no_address``, or ``duplicate``)."""
        notice_id = f"{notice.kind}:{notice.subscription_id}:{notice.period_no}"
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT status FROM subscription_notices WHERE notice_id = %s", (notice_id,)
            )
            if await cursor.fetchone() is not None:
                return "duplicate"
            sub = await store.read(conn, notice.subscription_id)
            if sub is None:
                return "no_address"
            found = [
                i
                for i in await invoices.of_subscription(conn, sub.subscription_id)
                if i["period_no"] == notice.period_no
            ]
            period = await store.read_period(conn, sub.subscription_id, notice.period_no)
        message = self.render(
            notice.kind,
            sub.email,
            language=sub.language,
            plan_id=sub.plan_id,
            amount=format_minor(period.total_minor, sub.currency) if period else "",
            invoice_id=found[0]["invoice_id"] if found else "",
            period_end=at(sub.period_end_ms).date().isoformat()
            if notice.kind in ("receipt", "card_expiring")
            else "",
        )
        status = "no_address"
        if sub.email:
            status = str((await self.notifier.send(message)).code)
        async with self.database.connection() as conn:
            await conn.execute(
                """
                INSERT INTO subscription_notices (notice_id, subscription_id, kind, status, at)
                VALUES (%s, %s, %s, %s, %s) ON CONFLICT (notice_id) DO NOTHING
                """,
                (notice_id, sub.subscription_id, notice.kind, status, at(now_ms)),
            )
        return status

    def render(
        self,
        kind: str,
        to: str,
        *,
        language: str,
        plan_id: str,
        amount: str = "",
        invoice_id: str = "",
        period_end: str = "",
    ) -> Message:
        """The e-mail of one notice, in ``language`` (English when unknown)."""
        if kind not in KINDS:
            raise ValueError(f"no notice {kind!r}; one of {', '.join(KINDS)}")
        lang = language if language in CATALOGUE else "en"
        values = {
            "t": CATALOGUE[lang],
            "lang": lang,
            "kind": kind,
            "plan_id": plan_id,
            "amount": amount,
            "invoice_id": invoice_id,
            "period_end": period_end,
        }
        return Message(
            Channel.EMAIL,
            to,
            self._env.get_template("member_email.txt").render(values).strip() + "\n",
            subject=CATALOGUE[lang][f"{kind}_subject"],
            html=self._env.get_template("member_email.html").render(values),
        )
