"""Batch start: the merchant's list of customers who owe money, checked row by row.

A list is CSV (a header row naming ``customer, amount_minor, currency, phone, email,
language``) or JSON (``{"rows": [{…}, …]}`` with the same fields). :func:`parse` checks every
row and explains each refusal; the collector then creates, for each good row, its case, its
receivable entry and its link in one transaction — a row is created whole or not at all — and
sends the link. At most :data:`BATCH_ROWS_MAX` rows per list.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Final

import orjson

from metering.money import is_currency

#: Rows one list may hold.
BATCH_ROWS_MAX: Final = 1_000
#: Largest amount one row may ask for (minor units).
ROW_AMOUNT_MAX_MINOR: Final = 10_000_000
LANGUAGES: Final = ("en", "de", "it", "lt")
#: Longest customer id a row may name.
ROW_CUSTOMER_CHARS_MAX: Final = 64
#: Longest e-mail address a row may give.
ROW_EMAIL_CHARS_MAX: Final = 254


@dataclass(frozen=True, slots=True)
class Row:
    """One good row."""

    number: int
    customer: str
    amount_minor: int
    currency: str
    phone: str
    email: str
    language: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """One bad row and why."""

    number: int
    errors: tuple[str, ...]


class BatchFormatError(ValueError):
    """The list as a whole cannot be read (not CSV or JSON, too many rows)."""


def _records(body: bytes, content_type: str) -> list[dict[str, Any]]:
    if "csv" in content_type:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BatchFormatError("the CSV is not UTF-8") from None
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BatchFormatError("the body is neither CSV (text/csv) nor JSON") from None
    rows = value.get("rows") if isinstance(value, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BatchFormatError('JSON lists are {"rows": [{...}, ...]}')
    return rows


def _row(number: int, record: dict[str, Any]) -> Row | Refusal:
    errors = []
    customer = str(record.get("customer") or "").strip()
    if not customer or len(customer) > ROW_CUSTOMER_CHARS_MAX or "/" in customer:
        errors.append("customer must be 1 to 64 characters, without '/'")
    raw_amount = record.get("amount_minor")
    amount = 0
    if isinstance(raw_amount, int) and not isinstance(raw_amount, bool):
        amount = raw_amount
    elif isinstance(raw_amount, str) and raw_amount.strip().isdigit():
        amount = int(raw_amount.strip())
    if not 0 < amount <= ROW_AMOUNT_MAX_MINOR:
        errors.append(f"amount_minor must be an integer from 1 to {ROW_AMOUNT_MAX_MINOR}")
    currency = str(record.get("currency") or "").strip().upper()
    if not is_currency(currency):
        errors.append("currency must be an accepted ISO-4217 code")
    phone = str(record.get("phone") or "").strip()
    email = str(record.get("email") or "").strip()
    if not phone and not email:
        errors.append("a phone or an e-mail is needed to send the link")
    if phone and not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
        errors.append("phone must be in international form (+ and 7 to 15 digits)")
    if email and ("@" not in email or len(email) > ROW_EMAIL_CHARS_MAX or " " in email):
        errors.append("email is not an address")
    language = str(record.get("language") or "en").strip().lower()
    if language not in LANGUAGES:
        errors.append(f"language must be one of {', '.join(LANGUAGES)}")
    if errors:
        return Refusal(number, tuple(errors))
    return Row(number, customer, amount, currency, phone, email, language)


def parse(body: bytes, content_type: str) -> tuple[list[Row], list[Refusal]]:
    """Every row of a list, checked: the good ones and the refused ones (numbered from 1)."""
    records = _records(body, content_type)
    if len(records) > BATCH_ROWS_MAX:
        raise BatchFormatError(f"a list has at most {BATCH_ROWS_MAX} rows")
    good: list[Row] = []
    bad: list[Refusal] = []
    for number, record in enumerate(records, start=1):
        checked = _row(number, record)
        if isinstance(checked, Row):
            good.append(checked)
        else:
            bad.append(checked)
    return good, bad
