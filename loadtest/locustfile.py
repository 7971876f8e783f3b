"""tipmeter's locust users: ``make loadtest`` runs them (``python -m loadtest.run``).

By hand, against a running server (``make run`` in another shell; its development keys are read
from ``.tipmeter/`` unless ``TIPMETER_TICKET_SECRETS`` and ``TIPMETER_API_KEYS`` are set)::

    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000

The users and their ``LOADTEST_*`` settings: docs/loadtest.md, and :mod:`loadtest.users`.
"""

from __future__ import annotations

import logging
from typing import Any

from locust import events
from locust.env import Environment

from loadtest.users import CONFIG, TALLY, ModelUser, ShowUser, TipperUser

__all__ = ["ModelUser", "ShowUser", "TipperUser"]

log = logging.getLogger("tipmeter.loadtest")


def _announce(environment: Environment, **kwargs: Any) -> None:
    log.info(
        "tipmeter load test: seed %d, run %s, rooms %d, mix tipper=%d,show=%d, %.3g tips/s a "
        "tipper, shows of %.3g s",
        CONFIG.seed,
        CONFIG.run_id,
        CONFIG.rooms,
        CONFIG.tipper_weight,
        CONFIG.show_weight,
        CONFIG.tip_rate_per_s,
        CONFIG.show_s,
    )


def _tally(environment: Environment, **kwargs: Any) -> None:
    counted = ", ".join(f"{name} {count}" for name, count in sorted(TALLY.items()))
    log.info("tipmeter load test (seed %d) counted: %s", CONFIG.seed, counted or "nothing")


# Registered by calls, not as decorators, so the listeners keep their types (locust's
# add_listener has none).
events.test_start.add_listener(_announce)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_tally)  # type: ignore[no-untyped-call]
