"""Tickets: the reference minting and verification, and every way a ticket can be wrong."""

from __future__ import annotations

import base64
import json

import pytest

from clients.tickets import (
    ISSUED_AT_SKEW_MS_MAX,
    LIFETIME_MS_MAX_DEFAULT,
    Claims,
    Role,
    TicketProblem,
    _sign,
    mint,
    verify,
)

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


def test_a_non_ascii_signature_is_refused_not_raised() -> None:
    body = _mint().rsplit(".", 1)[0]
    assert verify(f"{body}.\u00e9\u00e9", (SECRET,), issuers=("tipmeter",), now_ms=NOW) is (
        TicketProblem.MALFORMED
    )


def _signed(payload: dict[str, object]) -> str:
    body = "v1." + base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{body}.{_sign(SECRET, body)}"


def _payload(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "iss": "tipmeter",
        "aud": "tipmeter",
        "iat": NOW,
        "exp": NOW + 60_000,
        "jti": "j1",
        "role": "viewer",
        "sub": "c42",
        "cur": "USD",
    }
    payload.update(overrides)
    return payload


@pytest.mark.parametrize("exp", [2**63, 2**64 + 5, 2**53])
def test_times_beyond_2_to_the_53_are_malformed(exp: int) -> None:
    ticket = _signed(_payload(exp=exp))
    assert verify(ticket, (SECRET,), issuers=("tipmeter",), now_ms=NOW) is TicketProblem.MALFORMED


def test_a_ticket_issued_in_the_future_is_not_yet_valid() -> None:
    skew = ISSUED_AT_SKEW_MS_MAX
    soon = _signed(_payload(iat=NOW + skew, exp=NOW + skew + 60_000))
    later = _signed(_payload(iat=NOW + skew + 1, exp=NOW + skew + 60_000))
    assert isinstance(verify(soon, (SECRET,), issuers=("tipmeter",), now_ms=NOW), Claims)
    assert verify(later, (SECRET,), issuers=("tipmeter",), now_ms=NOW) is (
        TicketProblem.NOT_YET_VALID
    )


def test_a_lifetime_above_the_maximum_is_refused() -> None:
    at_max = _mint(ttl_ms=120_000)
    over = _mint(ttl_ms=120_001)
    kwargs = {"issuers": ("tipmeter",), "now_ms": NOW, "lifetime_ms_max": 120_000}
    assert isinstance(verify(at_max, (SECRET,), **kwargs), Claims)  # type: ignore[arg-type]
    assert verify(over, (SECRET,), **kwargs) is TicketProblem.LIFETIME_TOO_LONG  # type: ignore[arg-type]
    default = _mint(ttl_ms=LIFETIME_MS_MAX_DEFAULT + 1)
    assert verify(default, (SECRET,), issuers=("tipmeter",), now_ms=NOW) is (
        TicketProblem.LIFETIME_TOO_LONG
    )


def test_every_problem_explains_itself_differently() -> None:
    explanations = [problem.explanation for problem in TicketProblem]
    assert len(set(explanations)) == len(TicketProblem)
