"""The contract of the collection routes, declared once.

:mod:`server.collection_api` checks its inputs with these params, and
:mod:`server.collection_openapi` draws the same objects as the routes' JSON Schemas in
``/openapi.json`` (see :mod:`server.api_contract` for the kinds of param); a batch's rows are
checked one by one by :mod:`settlement.collection.batch`, whose bounds the document states.
"""

from __future__ import annotations

from typing import Final

from server.api_contract import Body, Integer, OneOf, Text, nullable
from settlement.collection.links import (
    LINK_EXPIRY_H_DEFAULT,
    LINK_FAILED_MAX_DEFAULT,
    LINK_OPENS_MAX_DEFAULT,
)
from settlement.notify.templates import LANGUAGES

#: Longest a link may live, in hours, as the API accepts it.
LINK_EXPIRY_H_MAX: Final = 24 * 90
#: Most opens a link may allow, as the API accepts it.
LINK_OPENS_MAX_MAX: Final = 1_000
#: Most failed payments a link may allow, as the API accepts it.
LINK_FAILED_MAX_MAX: Final = 20
#: Longest batch id (the Idempotency-Key naming a batch), in characters.
BATCH_ID_CHARS_MAX: Final = 64
#: Longest case id looked for, in characters (the collector mints far shorter ones).
CASE_ID_CHARS_MAX: Final = 255
#: Bounds of a contact (a phone number or an e-mail address), in characters.
CONTACT_CHARS_MIN: Final = 3
CONTACT_CHARS_MAX: Final = 254


def _limit(name: str, high: int, description: str, example: int | None = None) -> Integer:
    """A limit of a link: an integer in 1 … ``high``."""
    return Integer(
        name=name,
        minimum=1,
        maximum=high,
        refusal=f"{name} must be an integer in [{{low}}, {{high}}]",
        description=description,
        example=example,
    )


CASE_ID: Final = Text(
    name="case_id",
    chars_min=1,
    chars_max=CASE_ID_CHARS_MAX,
    code="case_not_found",
    status=404,
    refusal="no such collection case",
    example="cc_8f2k",
)
LINK_EXPIRY_S: Final = _limit(
    "expiry_s", LINK_EXPIRY_H_MAX * 3_600, "The link's life in seconds (instead of `expiry_h`)."
)
LINK_EXPIRY_H: Final = _limit(
    "expiry_h",
    LINK_EXPIRY_H_MAX,
    f"The link's life in hours (default {LINK_EXPIRY_H_DEFAULT}).",
    LINK_EXPIRY_H_DEFAULT,
)
LINK_OPENS_MAX: Final = _limit(
    "opens_max",
    LINK_OPENS_MAX_MAX,
    f"How often the link may be opened (default {LINK_OPENS_MAX_DEFAULT}; `null`: no bound).",
    LINK_OPENS_MAX_DEFAULT,
)
LINK_FAILED_MAX: Final = _limit(
    "failed_max",
    LINK_FAILED_MAX_MAX,
    f"Failed payments before the link stops (default {LINK_FAILED_MAX_DEFAULT}).",
    LINK_FAILED_MAX_DEFAULT,
)


def _contact(name: str, description: str, example: str) -> Text:
    """A phone number or an e-mail address the link is sent to."""
    return Text(
        name=name,
        chars_min=CONTACT_CHARS_MIN,
        chars_max=CONTACT_CHARS_MAX,
        refusal=f"{name} must be a string of {CONTACT_CHARS_MIN} to {CONTACT_CHARS_MAX} chars",
        description=description,
        example=example,
    )


LINK_PHONE: Final = _contact("phone", "Send the link by SMS to this number.", "+4915112345678")
LINK_EMAIL: Final = _contact("email", "Send the link by e-mail to this address.", "bob@example.com")
LANGUAGE: Final = OneOf(
    name="language",
    values=LANGUAGES,
    refusal=f"language must be one of {', '.join(LANGUAGES)}",
    description="The language of the message and the pay page (default `en`).",
    example="en",
)
LINK_BODY: Final = Body(
    (
        nullable(LINK_EXPIRY_S),
        LINK_EXPIRY_H,
        nullable(LINK_OPENS_MAX),
        LINK_FAILED_MAX,
        nullable(LINK_PHONE),
        nullable(LINK_EMAIL),
        LANGUAGE,
    ),
    (),
)
BATCH_ID: Final = Text(
    name="Idempotency-Key",
    chars_min=1,
    chars_max=BATCH_ID_CHARS_MAX,
    code="idempotency_key_required",
    refusal="send an Idempotency-Key naming the batch",
    description="Names the batch: the same list uploaded again creates nothing twice.",
    example="batch-2026-11-30",
)
