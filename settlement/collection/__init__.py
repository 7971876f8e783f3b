"""Collection of failed payments: cases, card retries by the network rules, pay links.

What it owns: the collection case lifecycle (:mod:`settlement.collection.lifecycle`, one
transition table), the retry schedule under the card-network rules
(:mod:`settlement.collection.policy`, reading :mod:`settlement.retry_rules` — the one table of
those rules, never a copy), pay links (:mod:`settlement.collection.links`), the ledger's SQL for
cases, attempts, history, links and their journal entries (:mod:`settlement.collection.cases`,
schema in ``settlement/ledger/migrations/0003_collection.sql``) and the service that ties them
together (:mod:`settlement.collection.collector`).

What it may import: :mod:`metering` (the tab lifecycle it ends), :mod:`settlement.ledger`,
:mod:`settlement.processors` (every charge goes to the processor named on the case),
:mod:`settlement.gateway`, :mod:`settlement.retry_rules`, and
:mod:`settlement.subscriptions` (a membership debt's charge is an attempt of its period:
:mod:`settlement.subscriptions.paylink`). Nothing in :mod:`server`; the HTTP
routes and pages live in ``server/`` and call in here. ``docs/collection.md`` draws the
lifecycle, the retry table and both ways to start.

Exceptions (business outcomes — paid, declined, busy, closed, refused rows — are returned as
result codes, never raised)::

    SettlementError                    (settlement.errors)
    ├── SettlementMisuse               e.g. a pay link asked for without a secret
    ├── TransitionRefused              a transition the case table forbids (a bug)
    └── LedgerError …                  the ledger's own (unavailable, mismatch)
"""
