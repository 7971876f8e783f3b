"""The money core: Post Pay tabs, tips and room event streams, counted in Redis.

Every money-moving step is one Lua script (``metering/lua/``), atomic, idempotent and
cluster-safe, wrapped by one typed Python function in :mod:`metering.scripts`. The modules:

- :mod:`metering.money` — amounts (integer minor units) and the one rounding rule.
- :mod:`metering.keys` — every Redis key name, prefix and lifetime.
- :mod:`metering.lifecycle` — the tab lifecycle as a transition table.
- :mod:`metering.outcomes` — business result codes and result types.
- :mod:`metering.scripts` — the Lua scripts and their typed wrappers.
- :mod:`metering.store` — the Redis connection (standalone or cluster) and script runner.
- :mod:`metering.batch` — coalescing of many callers' script items into few round trips.
- :mod:`metering.tabs`, :mod:`metering.tips`, :mod:`metering.rooms` — the operations.
- :mod:`metering.allowances` — a member's free seconds and discounts, reserved into a tab and
  spent by the session and tip scripts in the same step as the cap check.

Exceptions (:mod:`metering.errors`) are for misuse and infrastructure failure only::

    MeteringError
    ├── InvalidArgument       (ValueError)  the caller passed something malformed
    └── StoreError                          Redis did not answer as a script promises
        └── StoreUnavailable                Redis could not be reached

Expected business outcomes (applied, duplicate, over cap, tab not open, …) are never raised:
they are :class:`metering.outcomes.Code` values inside the returned results.

Importing this package (and :mod:`metering.money`) does not import redis, so the wire protocol
and the SDK can share the money rules without the server's dependencies.
"""
