"""The console's credential rules, without a server: roles, lockout arithmetic, cookies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.console import auth
from server.console.auth import Role


def test_each_role_may_do_what_the_roles_before_it_may() -> None:
    assert Role.ADMIN.allows(Role.SUPPORT)
    assert Role.ADMIN.allows(Role.READ_ONLY)
    assert Role.SUPPORT.allows(Role.READ_ONLY)
    assert not Role.SUPPORT.allows(Role.ADMIN)
    assert not Role.READ_ONLY.allows(Role.SUPPORT)


def test_the_account_locks_at_the_bound_and_unlocks_after_the_lockout() -> None:
    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    failed_n, until = 0, None
    for _ in range(auth.LOGIN_FAILURES_MAX - 1):
        failed_n, until = auth.after_failure(failed_n, t0)
        assert until is None
    failed_n, until = auth.after_failure(failed_n, t0)
    assert failed_n == 0
    assert until == t0 + timedelta(seconds=auth.LOCKOUT_S)
    assert auth.locked(until, t0 + timedelta(seconds=auth.LOCKOUT_S - 1))
    assert not auth.locked(until, t0 + timedelta(seconds=auth.LOCKOUT_S))


def test_a_cookie_signed_with_another_secret_or_altered_is_refused() -> None:
    signer = auth.CookieSigner(("secret-one-0123456789",))
    value = signer.sign("session-abc")
    assert signer.unsign(value) == "session-abc"
    assert auth.CookieSigner(("another-secret-0123456789",)).unsign(value) is None
    assert signer.unsign(value.replace("session-abc", "session-abd")) is None
    # A rotated secret list still reads cookies signed with the older secret.
    assert auth.CookieSigner(("new-secret-0123456789", "secret-one-0123456789")).unsign(value)


def test_passwords_are_argon2id_and_checked() -> None:
    hashed = auth.hash_password("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert auth.verify_password(hashed, "a long enough password")
    assert not auth.verify_password(hashed, "another password!!")
    assert not auth.verify_password(None, "a long enough password")
    assert auth.check_password_rules("short") is not None
    assert auth.check_password_rules("x" * auth.PASSWORD_CHARS_MIN) is None
