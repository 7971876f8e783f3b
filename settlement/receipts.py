"""Receipts of Post Pay invoices and credit notes, e-mailed through the notifier.

Theory of operation. The invoice of a capture and the credit note of a refund each queue their
receipt in the transaction that writes them (``invoice_notices``, an outbox row, ``pending``;
:func:`settlement.ledger.invoices.receipt_due`), so a process that dies after the commit leaves
the receipt to be sent, never lost. :meth:`Receipts.send_due` — every settlement worker's
periodic loop runs it — claims pending rows with ``FOR UPDATE SKIP LOCKED`` (racing workers get
different rows), marks them ``sending`` and commits, then renders each document in the
customer's language and sends it to the address given when the tab was opened, and records how
it went (``sent``, ``refused``, ``unavailable``, ``no_address``). A claimed row is never claimed
again: a receipt is sent at most once (the money never depends on it).

The templates are Jinja2 files, ``receipt_email.txt`` and ``receipt_email.html`` (HTML
autoescaped), in :data:`TEMPLATES_DIR`; a merchant replaces them by passing another folder with
the same names. The words are English, German, Italian and Lithuanian (:data:`CATALOGUE`);
another language reads English.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jinja2
import psycopg

from metering.money import format_minor
from settlement.ledger import invoices
from settlement.ledger.db import Database
from settlement.ledger.errors import LedgerError
from settlement.ledger.times import at
from settlement.notify.base import Channel, Message, Notifier

log = logging.getLogger("tipmeter.receipts")

TEMPLATES_DIR: Final = Path(__file__).parent / "notify" / "templates"
#: Receipts claimed per transaction (a round); the rest waits for the next round.
RECEIPTS_BATCH_MAX_DEFAULT: Final = 100

CATALOGUE: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "greeting": "Hello,",
        "invoice_subject": "Your invoice",
        "invoice_body": "Thank you: your payment was received. Here is your invoice.",
        "credit_note_subject": "Your credit note",
        "credit_note_body": "We refunded you. Here is your credit note.",
        "number": "Number",
        "credits": "Corrects invoice",
        "net": "Net",
        "tax": "Tax",
        "total": "Total",
        "signature": "Your team",
    },
    "de": {
        "greeting": "Hallo,",
        "invoice_subject": "Ihre Rechnung",
        "invoice_body": "Vielen Dank: Ihre Zahlung ist eingegangen. Hier ist Ihre Rechnung.",
        "credit_note_subject": "Ihre Gutschrift",
        "credit_note_body": "Wir haben Ihnen Geld erstattet. Hier ist Ihre Gutschrift.",
        "number": "Nummer",
        "credits": "Korrigiert die Rechnung",
        "net": "Netto",
        "tax": "MwSt.",
        "total": "Gesamt",
        "signature": "Ihr Team",
    },
    "it": {
        "greeting": "Buongiorno,",
        "invoice_subject": "La tua fattura",
        "invoice_body": "Grazie: il tuo pagamento è stato ricevuto. Ecco la tua fattura.",
        "credit_note_subject": "La tua nota di credito",
        "credit_note_body": "Ti abbiamo rimborsato. Ecco la tua nota di credito.",
        "number": "Numero",
        "credits": "Rettifica la fattura",
        "net": "Imponibile",
        "tax": "IVA",
        "total": "Totale",
        "signature": "Il tuo team",
    },
    "lt": {
        "greeting": "Sveiki,",
        "invoice_subject": "Jūsų sąskaita faktūra",
        "invoice_body": "Ačiū: jūsų mokėjimas gautas. Štai jūsų sąskaita faktūra.",
        "credit_note_subject": "Jūsų kreditinė sąskaita",
        "credit_note_body": "Grąžinome jums pinigus. Štai jūsų kreditinė sąskaita.",
        "number": "Numeris",
        "credits": "Koreguoja sąskaitą",
        "net": "Be PVM",
        "tax": "PVM",
        "total": "Iš viso",
        "signature": "Jūsų komanda",
    },
}


def money(amount_minor: int, currency: str) -> str:
    """An amount for people, a credit's with its minus sign (``-1234`` → ``-12.34 USD``)."""
    if amount_minor < 0:
        return f"-{format_minor(-amount_minor, currency)}"
    return format_minor(amount_minor, currency)


class Receipts:
    """Sends the pending receipts of Post Pay invoices and credit notes (module docstring)."""

    def __init__(
        self,
        database: Database,
        notifier: Notifier,
        templates_dir: Path = TEMPLATES_DIR,
        *,
        batch_max: int = RECEIPTS_BATCH_MAX_DEFAULT,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.database = database
        self.notifier = notifier
        self.batch_max = batch_max
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
        )

    async def send_due(self, now_ms: int) -> dict[str, int]:
        """Claim one round of pending receipts, send them, record how each went; the count
        per status."""
        async with self.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                """
                UPDATE invoice_notices SET status = 'sending'
                WHERE invoice_id IN (
                    SELECT invoice_id FROM invoice_notices WHERE status = 'pending'
                    ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)
                RETURNING invoice_id
                """,
                (self.batch_max,),
            )
            claimed = [row["invoice_id"] for row in await cursor.fetchall()]
        counts: dict[str, int] = {}
        for invoice_id in claimed:
            status = await self._send(invoice_id)
            counts[status] = counts.get(status, 0) + 1
            async with self.database.connection() as conn:
                await conn.execute(
                    "UPDATE invoice_notices SET status = %s, sent_at = %s WHERE invoice_id = %s",
                    (status, at(now_ms), invoice_id),
                )
        return counts

    async def send_due_logged(self, now_ms: int) -> dict[str, int]:
        """:meth:`send_due`, with a database failure logged instead of raised (the worker's
        loop goes on; pending rows are claimed on a later round)."""
        try:
            return await self.send_due(now_ms)
        except (LedgerError, psycopg.Error) as exc:
            log.error("receipts failed", extra={"fields": {"why": repr(exc)}})
            return {}

    async def _send(self, invoice_id: str) -> str:
        async with self.database.connection() as conn:
            document = await invoices.read(conn, invoice_id)
            if document is None:  # pragma: no cover - a notice refers to its invoice
                return "no_address"
            settlement = document["settlement_id"].partition("/")
            _country, _evidence, email, language = await invoices.tab_country(
                conn, settlement[0], settlement[2]
            )
        if not email:
            return "no_address"
        return str((await self.notifier.send(self.render(document, email, language))).code)

    def render(self, document: Mapping[str, Any], to: str, language: str) -> Message:
        """The e-mail of one invoice or credit note, in ``language`` (English when unknown)."""
        lang = language if language in CATALOGUE else "en"
        kind = document["kind"]
        currency = document["currency"]
        values = {
            "t": CATALOGUE[lang],
            "lang": lang,
            "kind": kind,
            "invoice": document,
            "lines": [
                {
                    "description": line["description"],
                    "total": money(line["total_minor"], currency),
                }
                for line in document["lines"]
            ],
            "net": money(document["net_minor"], currency),
            "tax": money(document["tax_minor"], currency),
            "total": money(document["total_minor"], currency),
        }
        return Message(
            Channel.EMAIL,
            to,
            self._env.get_template("receipt_email.txt").render(values).strip() + "\n",
            subject=f"{CATALOGUE[lang][f'{kind}_subject']} {document['invoice_id']}",
            html=self._env.get_template("receipt_email.html").render(values),
        )
