"""Memberships and recurring billing: plans, subscriptions, the renewal scheduler, dunning and
invoices.

What it owns:

- :mod:`~settlement.subscriptions.plans` — what a cam site sells: a price per period (month,
  year, N days) per currency, site memberships and per-model fan clubs (the model's share),
  levels, trials, fixed terms, notice periods, a bonus rule, the dunning plan;
- :mod:`~settlement.subscriptions.periods` — calendar arithmetic of billing periods;
- :mod:`~settlement.subscriptions.lifecycle` — the subscription lifecycle, one transition
  table (drawn in ``docs/subscriptions.md`` from the table);
- :mod:`~settlement.subscriptions.proration` — upgrade and downgrade mid-period, exact to the
  cent by one rounding rule;
- :mod:`~settlement.subscriptions.tax` — tax per line, by country, inclusive or exclusive (the
  rule itself is :mod:`settlement.ledger.tax`, shared with Post Pay invoices);
- :mod:`~settlement.subscriptions.store` — the SQL (migration ``0004_subscriptions.sql``);
- :mod:`~settlement.subscriptions.service` — create, change, cancel, read;
- :mod:`~settlement.subscriptions.scheduler` — charges each due period exactly once, with any
  number of workers, through crashes;
- :mod:`~settlement.subscriptions.allowances` — a plan's free seconds and discounts reserved
  into a member's tab (one tab at a time), and what is left of them.

What it may import: :mod:`metering.money`, :mod:`metering.clock`, :mod:`metering.allowances`
(and the store it runs on), :mod:`settlement.ledger`,
:mod:`settlement.gateway`, :mod:`settlement.processors`, :mod:`settlement.retry_rules`,
:mod:`settlement.notify`. Nothing in :mod:`server`.

Exceptions::

    SubscriptionError           (settlement.errors.SettlementError)
    └── PlanInvalid             a plan's definition breaks a rule (the message says which)

Business outcomes (a plan unknown, a change refused, a charge declined) are result codes
(:class:`~settlement.subscriptions.service.SubCode`), not exceptions.
"""
