"""The ledger of record: PostgreSQL keeps what was settled; Redis stays the meter.

What it owns: the schema (``migrations/``, numbered SQL files applied in order under a lock by
:mod:`settlement.ledger.migrate`), the connection pool (:mod:`settlement.ledger.db`), and one
module of explicit SQL per aggregate:

- :mod:`settlement.ledger.journal` — accounts and the double-entry journal (every entry
  balances to zero, enforced by the database);
- :mod:`settlement.ledger.settlements` — a settled tab, its lines, shows and model earnings,
  written once per settlement id, read back as the same tab and statement Redis showed;
- :mod:`settlement.ledger.holds` — every authorization a tab was opened or raised with;
- :mod:`settlement.ledger.allowances` — what a settled tab used of the allowance reserved for
  it (written in the settlement's transaction);
- :mod:`settlement.ledger.deliveries` — webhook events delivered to the cam site;
- :mod:`settlement.ledger.invoices` — invoices and credit notes, numbered gap-free per series,
  written with the entries they document; :mod:`settlement.ledger.tax` — the one tax rule;
- :mod:`settlement.ledger.reconcile` — the ledger, Redis and each processor compared.

What it may import: :mod:`metering` (the tab and line types it records), and the settlement
modules below it (:mod:`settlement.statements`, :mod:`settlement.scripts`' record type,
:mod:`settlement.gateway`). Nothing in :mod:`server`. The flow between the two stores, the
accounts and the entry codes are drawn in ``docs/ledger.md``.

Exceptions::

    LedgerError                 (settlement.errors.SettlementError)
    ├── LedgerUnavailable       the database cannot be reached: retry later, nothing is lost
    └── LedgerMismatch          a write disagrees with what the ledger recorded before
"""
