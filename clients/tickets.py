"""Connection tickets: short-lived, signed, single-use credentials for the WebSocket endpoint.

The cam-site backend mints a ticket for a viewer, a model or a broadcast tool (or asks the HTTP
API, ``POST /v1/tickets``, to mint one) and hands it to the client, which presents it when it
connects. The server checks it before accepting the connection: signature, issuer, audience,
expiry, and that its id was never used before.

Format (version 1)::

    ticket    = "v1." payload "." signature
    payload   = base64url(JSON object), no padding
    signature = base64url(HMAC-SHA256(secret, "v1." payload)), no padding

The JSON object's fields: ``iss`` (issuer), ``aud`` (``"tipmeter"``), ``iat`` and ``exp``
(milliseconds since the epoch), ``jti`` (unique id, for single use), ``role`` (``viewer``,
``model`` or ``broadcast``), ``sub`` (the viewer's customer id, or the room for the other two),
``name`` (display name, may be empty) and, for viewers, ``cur`` (the currency of the tab they
spend from). Any language with HMAC-SHA256 and base64url can mint one; this module is the
reference, pure standard library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

VERSION_PREFIX: Final = "v1."
AUDIENCE: Final = "tipmeter"
#: Longest ticket accepted, in characters: a bound on what the server parses.
TICKET_CHARS_MAX: Final = 2_048
#: Longest lifetime (``exp - iat``) accepted unless the verifier says otherwise (the server
#: passes ``TIPMETER_TICKET_TTL_S_MAX``): a ticket is a credential for one connection, minted
#: just before it, and its single-use record lives as long as it does.
LIFETIME_MS_MAX_DEFAULT: Final = 300_000
#: How far in the future ``iat`` may be (clock skew between the minting backend and the server).
ISSUED_AT_SKEW_MS_MAX: Final = 30_000
#: ``iat`` and ``exp`` are integers in ``[0, TIME_MS_LIMIT)``: exact in JSON everywhere.
TIME_MS_LIMIT: Final = 2**53


class Role(StrEnum):
    """Who a connection speaks for."""

    VIEWER = "viewer"  # spends from a customer's tab
    MODEL = "model"  # a model's console: the room's events and earnings
    BROADCAST = "broadcast"  # a broadcast tool or overlay: the room's events


class TicketProblem(StrEnum):
    """Why a ticket is refused. The values are the handshake's error codes."""

    MISSING = "ticket_missing"
    MALFORMED = "ticket_malformed"
    BAD_SIGNATURE = "ticket_bad_signature"
    WRONG_ISSUER = "ticket_wrong_issuer"
    WRONG_AUDIENCE = "ticket_wrong_audience"
    EXPIRED = "ticket_expired"
    NOT_YET_VALID = "ticket_not_yet_valid"
    LIFETIME_TOO_LONG = "ticket_lifetime_too_long"
    REUSED = "ticket_reused"

    @property
    def explanation(self) -> str:
        """What is wrong, in a sentence for the refusal's message."""
        return _EXPLANATIONS[self]


_EXPLANATIONS: Final = {
    TicketProblem.MISSING: "no ticket: pass one in the ticket query parameter",
    TicketProblem.MALFORMED: "not a v1 ticket, or its claims are missing or of the wrong type",
    TicketProblem.BAD_SIGNATURE: "the signature does not match any of this server's secrets",
    TicketProblem.WRONG_ISSUER: "the issuer (iss) is not one this server accepts",
    TicketProblem.WRONG_AUDIENCE: 'the audience (aud) is not "tipmeter"',
    TicketProblem.EXPIRED: "the ticket expired (exp is past): mint a new one",
    TicketProblem.NOT_YET_VALID: "the ticket is issued in the future (iat): check the clocks",
    TicketProblem.LIFETIME_TOO_LONG: "exp - iat is longer than this server accepts",
    TicketProblem.REUSED: "this ticket already opened a connection: mint one per connection",
}


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid ticket says."""

    issuer: str
    issued_at_ms: int
    expires_at_ms: int
    ticket_id: str
    role: Role
    subject: str
    name: str = ""
    currency: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, signed: str) -> str:
    return _b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


def mint(
    secret: bytes,
    *,
    issuer: str,
    role: Role,
    subject: str,
    now_ms: int,
    ttl_ms: int,
    name: str = "",
    currency: str = "",
    ticket_id: str | None = None,
) -> str:
    """Mint a ticket valid from ``now_ms`` for ``ttl_ms``."""
    payload = {
        "iss": issuer,
        "aud": AUDIENCE,
        "iat": now_ms,
        "exp": now_ms + ttl_ms,
        "jti": ticket_id or secrets.token_urlsafe(16),
        "role": str(role),
        "sub": subject,
        "name": name,
    }
    if currency:
        payload["cur"] = currency
    body = VERSION_PREFIX + _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_sign(secret, body)}"


def verify(
    ticket: str | None,
    secrets_: tuple[bytes, ...],
    *,
    issuers: tuple[str, ...],
    now_ms: int,
    lifetime_ms_max: int = LIFETIME_MS_MAX_DEFAULT,
) -> Claims | TicketProblem:
    """Check a ticket's form, signature (against any of ``secrets_``, for rotation), issuer,
    audience, expiry and lifetime (``iat`` not in the future beyond the clock skew allowed,
    ``exp - iat`` at most ``lifetime_ms_max``). Never raises, whatever the string. Single use
    is the server's part (it needs shared state)."""
    if not ticket:
        return TicketProblem.MISSING
    if len(ticket) > TICKET_CHARS_MAX or not ticket.startswith(VERSION_PREFIX):
        return TicketProblem.MALFORMED
    if not ticket.isascii():  # hmac.compare_digest refuses non-ASCII str
        return TicketProblem.MALFORMED
    body, dot, signature = ticket.rpartition(".")
    if not dot or not body.startswith(VERSION_PREFIX):
        return TicketProblem.MALFORMED
    if not any(hmac.compare_digest(_sign(secret, body), signature) for secret in secrets_):
        return TicketProblem.BAD_SIGNATURE
    try:
        payload = json.loads(_unb64(body.removeprefix(VERSION_PREFIX)))
        claims = Claims(
            issuer=_str(payload, "iss"),
            issued_at_ms=_int(payload, "iat"),
            expires_at_ms=_int(payload, "exp"),
            ticket_id=_str(payload, "jti"),
            role=Role(_str(payload, "role")),
            subject=_str(payload, "sub"),
            name=payload.get("name", "") if isinstance(payload.get("name", ""), str) else "",
            currency=payload.get("cur", "") if isinstance(payload.get("cur", ""), str) else "",
        )
        audience = _str(payload, "aud")
    except (ValueError, TypeError, AttributeError, KeyError):
        return TicketProblem.MALFORMED
    if audience != AUDIENCE:
        return TicketProblem.WRONG_AUDIENCE
    if claims.issuer not in issuers:
        return TicketProblem.WRONG_ISSUER
    if claims.expires_at_ms <= now_ms:
        return TicketProblem.EXPIRED
    if claims.issued_at_ms > now_ms + ISSUED_AT_SKEW_MS_MAX:
        return TicketProblem.NOT_YET_VALID
    if claims.expires_at_ms - claims.issued_at_ms > lifetime_ms_max:
        return TicketProblem.LIFETIME_TOO_LONG
    return claims


def _str(payload: dict[str, object], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _int(payload: dict[str, object], name: str) -> int:
    value = payload[name]
    if type(value) is not int or not 0 <= value < TIME_MS_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**53)")
    return value
