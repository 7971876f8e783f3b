"""Processors: several payment processors serving one deployment, each tab at its own.

What this package owns:

- :mod:`settlement.processors.settings` — the named list of processors
  (``TIPMETER_PROCESSORS`` and ``TIPMETER_PROCESSOR_<NAME>_<FIELD>``; the older single
  ``TIPMETER_GATEWAY`` settings read as a one-processor list), validated at start;
- :mod:`settlement.processors.registry` — the kinds of processor (one line each) and the
  registry that builds them and answers "the gateway of this tab";
- :mod:`settlement.processors.routing` — which processors may serve a new tab, in order;
- :mod:`settlement.processors.cascade` — placing a hold, trying the next eligible processor
  after a soft decline (never after a hard one), recording what was tried;
- :mod:`settlement.processors.holds` — settling a tab raised by a second hold (at a processor
  without incremental authorization): one capture per hold;
- adapters: :mod:`settlement.processors.stripe` (PaymentIntents, manual capture) and
  :mod:`settlement.processors.segpay` (Segpay Post Pay), with
  :mod:`settlement.processors.segpay_emulator`, the local process that speaks Segpay's
  documented requests for tests.

It may import :mod:`settlement.gateway`, :mod:`settlement.retry_rules`, the sandbox modules,
:mod:`settlement.http` and :mod:`metering.clock`; nothing in metering or settlement imports it
but the places that build gateways (the server's app, the worker runner) and the worker's one
call :meth:`~settlement.processors.registry.ProcessorRegistry.for_processor`.
docs/processors.md is its page.
"""
