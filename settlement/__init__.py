"""Settlement: everything after the meter stops — one capture per tab, statements, earnings,
signed webhooks. The theory of operation is in :mod:`settlement.worker` and
``docs/settlement.md``.

- :mod:`settlement.queue` — ask for settlement (freeze with a reason, then queue).
- :mod:`settlement.worker` — the worker: consumer group, reclaim, dead letters, burst mode.
- :mod:`settlement.sweeper` — finds due and lost triggers through the tab index.
- :mod:`settlement.scripts` — the Lua scripts (``settlement/lua``) and their typed wrappers.
- :mod:`settlement.statements`, :mod:`settlement.lookup` — statements and "find my payment".
- :mod:`settlement.webhooks` — signing, verification, delivery with backoff.
- :mod:`settlement.gateway` — the gateway protocol; :mod:`settlement.sandbox` and
  :mod:`settlement.sandbox_http` implement it, and so do the adapters of
  :mod:`settlement.processors` (registry, routing, cascading, Stripe, Segpay Post Pay).
- :mod:`settlement.retry_rules` — the one table of card-network retry rules.
- :mod:`settlement.config` — named bounds and timings, and the checkpoints a settlement passes.

Exceptions::

    SettlementError                       (settlement.errors)
    ├── SettlementMisuse      (ValueError) a bad setting or argument from our own code
    ├── StatementMismatch                  the lines do not explain the amount: never settled
    ├── InvalidSignature                   a webhook delivery failed verification
    ├── NoProcessor                        no configured processor may serve a new tab
    ├── PartialCapture                     some holds of a tab captured, a later one declined
    └── HttpFailure                        an HTTP exchange did not complete (settlement.http)

    GatewayError                          (settlement.gateway; raised by every adapter)
    ├── GatewayUnavailable                 no answer: retry later with the same key
    │   ├── GatewayCredentialsRejected     401/403: settlements wait until the key is fixed
    │   └── UnknownProcessor               a tab's processor is no longer configured: wait
    └── GatewayRequestError                the processor refused the request: do not retry

Business outcomes (settled, declined with a reason, voided, expired; applied or duplicate) are
values: :class:`settlement.outcomes.SettleCode`, :class:`settlement.outcomes.SettlementOutcome`.
"""
