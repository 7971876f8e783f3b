"""The pay-link messages per language: SMS text, e-mail subject, text and HTML.

Rendered with Jinja2 from ``templates/``; the HTML is autoescaped (a name or an amount can
never inject markup), the texts are plain. The words are in :data:`CATALOGUE`, one entry per
language (English, German, Italian, Lithuanian); another language falls back to English.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2

from metering.money import format_minor
from settlement.notify.base import Channel, Message

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
LANGUAGES: Final = ("en", "de", "it", "lt")

CATALOGUE: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "subject": "Your payment is due",
        "greeting": "Hello,",
        "body": "A payment for your recent shows did not go through. You owe",
        "pay": "Pay securely here",
        "expiry": "The link is personal and expires; do not share it.",
        "sms_intro": "A payment did not go through. You owe",
        "sms_pay": "Pay here:",
    },
    "de": {
        "subject": "Ihre Zahlung ist fällig",
        "greeting": "Hallo,",
        "body": "Eine Zahlung für Ihre letzten Shows ist nicht durchgegangen. Offen sind",
        "pay": "Hier sicher bezahlen",
        "expiry": "Der Link ist persönlich und läuft ab; geben Sie ihn nicht weiter.",
        "sms_intro": "Eine Zahlung ist nicht durchgegangen. Offen sind",
        "sms_pay": "Hier bezahlen:",
    },
    "it": {
        "subject": "Il tuo pagamento è dovuto",
        "greeting": "Ciao,",
        "body": "Un pagamento per i tuoi ultimi show non è andato a buon fine. Devi",
        "pay": "Paga in modo sicuro qui",
        "expiry": "Il link è personale e scade; non condividerlo.",
        "sms_intro": "Un pagamento non è andato a buon fine. Devi",
        "sms_pay": "Paga qui:",
    },
    "lt": {
        "subject": "Jūsų mokėjimas laukia",
        "greeting": "Sveiki,",
        "body": "Mokėjimas už paskutinius pasirodymus nepavyko. Esate skolingi",
        "pay": "Saugiai sumokėkite čia",
        "expiry": "Nuoroda asmeninė ir nustos galioti; niekam jos neduokite.",
        "sms_intro": "Mokėjimas nepavyko. Esate skolingi",
        "sms_pay": "Sumokėkite čia:",
    },
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
)


def paylink_message(
    channel: Channel, to: str, *, url: str, amount_minor: int, currency: str, language: str
) -> Message:
    """The message that sends a pay link, in ``language`` (English when unknown)."""
    lang = language if language in CATALOGUE else "en"
    values = {
        "t": CATALOGUE[lang],
        "lang": lang,
        "url": url,
        "amount": format_minor(amount_minor, currency),
    }
    if channel is Channel.SMS:
        text = _env.get_template("paylink_sms.txt").render(values).strip()
        return Message(Channel.SMS, to, text)
    return Message(
        Channel.EMAIL,
        to,
        _env.get_template("paylink_email.txt").render(values).strip() + "\n",
        subject=CATALOGUE[lang]["subject"],
        html=_env.get_template("paylink_email.html").render(values),
    )
