"""Operators' credentials: argon2id password hashes, signed session cookies, roles, lockout.

Passwords are hashed with ``argon2-cffi``'s :class:`~argon2.PasswordHasher` (argon2id, its
default cost, a random salt per hash; a hash made with an older cost is re-made at the next good
login). The session cookie carries only the session's random id, signed with the server's
secret by ``itsdangerous`` (Pallets' signing library, the one Flask's sessions use) so a forged
or altered cookie is refused before the database is asked; the session row decides whether it
is still live.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, TimestampSigner

#: Failed logins in a row after which an account locks.
LOGIN_FAILURES_MAX: Final = 5
#: How long a locked account stays locked, in seconds.
LOCKOUT_S: Final = 15 * 60
#: Life of a session, in seconds (an operator logs in again after a working day).
SESSION_TTL_S: Final = 12 * 3_600
#: Shortest password an operator may be given.
PASSWORD_CHARS_MIN: Final = 12
#: Longest password accepted (argon2 takes any length; the bound keeps a request cheap).
PASSWORD_CHARS_MAX: Final = 256
#: The cookie's name and the path it is sent to.
COOKIE_NAME: Final = "tipmeter_console"
COOKIE_PATH: Final = "/console"
#: The header every state-changing request carries its session's CSRF token in.
CSRF_HEADER: Final = "x-csrf-token"
#: Salt of the cookie's signature: a signature made for anything else never validates here.
_SIGNER_SALT: Final = "tipmeter.console.session"

_hasher: Final = PasswordHasher()
#: A hash to verify against when the name is unknown, so an unknown name takes as long to
#: refuse as a wrong password (the answer's timing tells nothing about which names exist).
_DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(16))


class Role(enum.StrEnum):
    """What an operator may do; each role may do everything of the roles before it."""

    READ_ONLY = "read_only"
    SUPPORT = "support"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Tell whether this role may do what ``needed`` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


def check_password_rules(password: str) -> str | None:
    """Why ``password`` may not be an operator's, or None when it may."""
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        return f"a password has {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"
    return None


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (with its own salt and cost)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Tell whether ``password`` matches ``password_hash`` (None: an unknown operator, checked
    against a dummy hash all the same). Blocking (about the cost of one hash): run it in a
    thread from async code."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Tell whether a hash was made with another cost than the current one."""
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A random session id or CSRF token (256 bits)."""
    return secrets.token_urlsafe(32)


class CookieSigner:
    """Signs and checks session cookies with the server's secrets (the first signs; any of
    them checks, so a secret can be rotated without logging everyone out)."""

    def __init__(self, secrets_: tuple[str, ...]) -> None:
        if not secrets_:
            raise ValueError("the console needs the server's secret (TIPMETER_TICKET_SECRETS)")
        # itsdangerous signs with the last key and accepts any of them.
        self._signer = TimestampSigner(list(reversed(secrets_)), salt=_SIGNER_SALT)

    def sign(self, session_id: str) -> str:
        """The cookie's value for ``session_id``."""
        return self._signer.sign(session_id).decode()

    def unsign(self, value: str) -> str | None:
        """The session id a cookie names, or None when its signature is wrong or it is older
        than a session may live."""
        try:
            return self._signer.unsign(value, max_age=SESSION_TTL_S).decode()
        except BadSignature:
            return None


def locked(locked_until: datetime | None, at: datetime) -> bool:
    """Tell whether an account locked until ``locked_until`` is still locked at ``at``."""
    return locked_until is not None and locked_until > at


def after_failure(failed_n: int, at: datetime) -> tuple[int, datetime | None]:
    """The failure count and lock end after one more failed login at ``at``: the account locks
    for :data:`LOCKOUT_S` once the count reaches :data:`LOGIN_FAILURES_MAX`, and the count
    starts over so the next lock needs as many failures again."""
    failed_n += 1
    if failed_n >= LOGIN_FAILURES_MAX:
        return 0, at + timedelta(seconds=LOCKOUT_S)
    return failed_n, None


def same_token(sent: str, expected: str) -> bool:
    """Compare a sent CSRF token with the session's in constant time."""
    return bool(sent) and secrets.compare_digest(sent.encode(), expected.encode())
