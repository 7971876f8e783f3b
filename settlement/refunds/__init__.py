"""Refunds, chargebacks and disputes, decided from the ledger of record.

What it owns:

- :mod:`settlement.refunds.split` — the one rounding rule: how much of an amount taken back
  from a line is the model's (:func:`~settlement.refunds.split.model_part`), and how an amount
  is spread over a tab's lines;
- :mod:`settlement.refunds.policy` — the site's refund policy and the pure function that
  decides a request (allowed, the most that may be refunded, needs the model's consent,
  refused with the reason);
- :mod:`settlement.refunds.store` — the SQL of refunds, disputes and customer flags (the
  bounds are held by PostgreSQL: row locks and ``CHECK`` constraints, migration
  ``0002_refunds.sql``), and the search of a payment by any number;
- :mod:`settlement.refunds.service` — the flows: a refund decided, reserved, sent to the
  processor that captured the tab, posted to the journal and announced by webhook; a dispute
  notice recorded, its claw-back and its outcome;
- :mod:`settlement.refunds.notices` — signed dispute notices (the sandbox's, Stripe's
  ``charge.dispute.*``) read into one shape;
- :mod:`settlement.refunds.attachments` — a customer's attachments to her refund request,
  checked by content and bounded.

The models' consent per room (asked, answered, expired: ``Refunds.consent``,
``waiting_for``, ``expire_consents``) is recorded here; its live push to their consoles is
:mod:`server.consent_push`. It may import :mod:`metering` (types), :mod:`settlement.gateway`,
:mod:`settlement.processors.holds` (a tab captured once per hold), :mod:`settlement.ledger`,
:mod:`settlement.webhooks` and :mod:`settlement.statements`; nothing in :mod:`server` (the HTTP
routes, ``server.refunds_api``, import it). docs/refunds.md is its page.

Exceptions::

    RefundError                 (settlement.errors.SettlementError)
    ├── RefundNotFound          no such refund, dispute, tab or payment
    ├── RefundIdReused          a refund or dispute id sent again with other parameters
    └── NotRefundable           the tab was not captured (nothing to give back)
"""
