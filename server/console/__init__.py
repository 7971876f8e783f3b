"""The operator console: a web console for the cam site's staff, served by tipmeter.

Theory of operation. An operator logs in with a name and a password (hashed with argon2id,
:mod:`server.console.auth`); a session row in PostgreSQL is created and its id, signed with the
server's secret (itsdangerous), goes back in an HttpOnly, SameSite=Strict cookie scoped to
``/console``. Every request of the console's API reads the cookie, checks the signature, finds
the live session and its operator, and checks the operator's role (read-only < support <
admin). Every state-changing request must also echo the session's CSRF token in the
``X-CSRF-Token`` header. Repeated failed logins lock the account for a while. Every action —
logins (good or bad), searches, downloads, support actions — is written to an append-only audit
log (who, what, target, outcome, when, from where).

The console never accepts the cam site's API key or anything of the demo backend: its only
credential is an operator session. Support actions go through the very HTTP API the cam site's
backend calls (:mod:`server.console.support` sends the request in process, with the server's
API key and support key), so they obey the same policy, checks and error codes.

Modules: ``store`` (the SQL of operators, sessions and the audit log), ``auth`` (passwords,
cookies, roles, lockout), ``routes`` (the HTTP routes and the page), ``analyses`` (reports from
the ledger), ``live`` (the live panel's WebSocket), ``support`` (support actions).
"""
