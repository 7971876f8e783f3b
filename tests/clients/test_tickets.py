"""Tickets: the reference minting and verification, and every way a ticket can be wrong."""

from __future__ import annotations

import base64
import json

from clients.tickets import Claims, Role, TicketProblem, mint, verify

SECRET = b"s" * 32
NOW = 1_700_000_000_000


def _mint(**overrides: object) -> str:
    args: dict[str, object] = {
        "issuer": "tipmeter",
        "role": Role.VIEWER,
        "subject": "c42",
        "now_ms": NOW,
        "ttl_ms": 60_000,
        "name": "Bob",
        "currency": "USD",
    }
    args.update(overrides)
    return mint(SECRET, **args)  # type: ignore[arg-type]


def test_a_valid_ticket_yields_its_claims() -> None:
    claims = verify(_mint(), (SECRET,), issuers=("tipmeter",), now_ms=NOW + 1)
    assert isinstance(claims, Claims)
    assert (claims.role, claims.subject, claims.name, claims.currency) == (
        Role.VIEWER,
        "c42",
        "Bob",
        "USD",
    )
    assert claims.expires_at_ms == NOW + 60_000


def test_expired() -> None:
    assert (
        verify(_mint(), (SECRET,), issuers=("tipmeter",), now_ms=NOW + 60_000)
        is TicketProblem.EXPIRED
    )


def test_forged_signature_and_tampered_payload() -> None:
    assert (
        verify(_mint(), (b"x" * 32,), issuers=("tipmeter",), now_ms=NOW)
        is TicketProblem.BAD_SIGNATURE
    )
    ticket = _mint()
    body, signature = ticket.rsplit(".", 1)
    payload = json.loads(base64.urlsafe_b64decode(body[3:] + "=="))
    payload["sub"] = "someone-else"
    forged_body = (
        "v1." + base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    )
    assert verify(f"{forged_body}.{signature}", (SECRET,), issuers=("tipmeter",), now_ms=NOW) is (
        TicketProblem.BAD_SIGNATURE
    )


def test_rotation_accepts_any_listed_secret() -> None:
    old = b"o" * 32
    ticket = mint(
        old, issuer="tipmeter", role=Role.MODEL, subject="alice", now_ms=NOW, ttl_ms=1_000
    )
    assert isinstance(verify(ticket, (SECRET, old), issuers=("tipmeter",), now_ms=NOW), Claims)


def test_wrong_issuer_and_missing_and_malformed() -> None:
    assert (
        verify(_mint(issuer="evil"), (SECRET,), issuers=("tipmeter",), now_ms=NOW)
        is TicketProblem.WRONG_ISSUER
    )
    assert verify(None, (SECRET,), issuers=("tipmeter",), now_ms=NOW) is TicketProblem.MISSING
    for junk in ("v2.abc.def", "v1.", "v1.@@@.x", "x" * 5_000):
        assert verify(junk, (SECRET,), issuers=("tipmeter",), now_ms=NOW) in (
            TicketProblem.MALFORMED,
            TicketProblem.BAD_SIGNATURE,
        )


def test_a_signed_but_incomplete_payload_is_malformed() -> None:
    import hashlib
    import hmac

    body = "v1." + base64.urlsafe_b64encode(b'{"iss":"tipmeter"}').rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(
        hmac.new(SECRET, body.encode(), hashlib.sha256).digest()
    ).rstrip(b"=")
    ticket = f"{body}.{signature.decode()}"
    assert verify(ticket, (SECRET,), issuers=("tipmeter",), now_ms=NOW) is TicketProblem.MALFORMED
