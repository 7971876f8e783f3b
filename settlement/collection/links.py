"""Pay links: unguessable, signed, bound to one case and customer, limited in time and use.

A link's token is ``<link id>.<signature>``: the link id is 144 random bits
(:func:`secrets.token_urlsafe`), the signature an HMAC-SHA256 (keyed with the deployment's link
secret) of the link id, the case and the customer, so a token cannot be guessed, forged, or
moved to another case. The ledger keeps only the token's SHA-256 (to find the link), never the
token; nothing logs it (the pay pages' routes are left out of the access log).

Limits, each with a named default: the expiry (in hours, or seconds), the number of opens (or
none), and the number of failed card attempts. :func:`usable` decides, in one place, whether a
link may still be used, and says why not in the words the page shows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from settlement.errors import SettlementMisuse

#: A link lasts this many hours unless the merchant says otherwise.
LINK_EXPIRY_H_DEFAULT: Final = 72
_HOUR_S: Final = 3_600
#: Opens of the link page allowed (None: any number).
LINK_OPENS_MAX_DEFAULT: Final[int | None] = 20
#: Declined card attempts through one link before it stops taking cards.
LINK_FAILED_MAX_DEFAULT: Final = 3
#: Random bytes of a link id.
LINK_ID_BYTES: Final = 18


class LinkRefusal(StrEnum):
    """Why a link cannot be used (none of these reveal whether the token existed)."""

    NOT_FOUND = "not_found"  # unknown or forged token
    EXPIRED = "expired"  # past its expiry
    OPENS_USED = "opens_used"  # opened as often as allowed
    ATTEMPTS_USED = "attempts_used"  # as many declined cards as allowed
    CLOSED = "closed"  # the case is paid or written off


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """A link's limits."""

    #: Lifetime in seconds (links are set in hours; seconds serve a link read out on a call).
    expiry_s: int = LINK_EXPIRY_H_DEFAULT * _HOUR_S
    opens_max: int | None = LINK_OPENS_MAX_DEFAULT
    failed_max: int = LINK_FAILED_MAX_DEFAULT


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A link as the ledger keeps it."""

    link_id: str
    case_id: str
    expires_at_ms: int
    opens_max: int | None
    opens_n: int
    failed_max: int
    failed_n: int


def _signature(secret: str, link_id: str, case_id: str, customer: str) -> str:
    message = f"{link_id}:{case_id}:{customer}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def mint(secret: str, case_id: str, customer: str) -> tuple[str, str]:
    """A new link for ``case_id``: ``(link_id, token)``."""
    if not secret:
        raise SettlementMisuse("pay links need a secret (TIPMETER_PAYLINK_SECRET)")
    link_id = secrets.token_urlsafe(LINK_ID_BYTES)
    return link_id, f"{link_id}.{_signature(secret, link_id, case_id, customer)}"


def token_digest(token: str) -> str:
    """The SHA-256 of a token: how the ledger finds a link without keeping its token."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify(secret: str, token: str, *, link_id: str, case_id: str, customer: str) -> bool:
    """Whether ``token`` is the signed token of that link, case and customer."""
    found_id, _, signature = token.partition(".")
    expected = _signature(secret, link_id, case_id, customer)
    return hmac.compare_digest(found_id, link_id) and hmac.compare_digest(signature, expected)


def usable(link: LinkRow, now_ms: int, *, opening: bool) -> LinkRefusal | None:
    """Why ``link`` cannot be used now (None: it can). ``opening`` counts this open."""
    if now_ms >= link.expires_at_ms:
        return LinkRefusal.EXPIRED
    if link.failed_n >= link.failed_max:
        return LinkRefusal.ATTEMPTS_USED
    if opening and link.opens_max is not None and link.opens_n >= link.opens_max:
        return LinkRefusal.OPENS_USED
    return None
