"""The command line the settlement simulations share (``python -m
tests.settlement.collection.simulation``, ``python -m tests.settlement.subscriptions.simulation``):
run one on a fresh database of the tests' PostgreSQL, with a seed to replay it, and print its
figures."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from settlement.ledger.ledger import Ledger


class Figures(Protocol):
    """What a simulation answers: its figures, as lines to print."""

    def lines(self) -> list[str]: ...


def run_simulation(
    description: str,
    simulate: Callable[[Ledger, int, int], Awaitable[Figures]],
    size: str,
    size_default: int,
) -> None:
    """Parse ``--<size>`` (how much to simulate) and ``--seed``, run ``simulate`` and print."""
    # Imported here, not at the top: pytest imports the simulations without starting a database.
    from settlement.ledger.db import DatabaseConfig
    from tests.support import postgres

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{size}", type=int, default=size_default)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**32))
    args = parser.parse_args()

    async def run() -> Figures:
        ledger = await Ledger.open(DatabaseConfig(url=postgres.fresh_database("sim")))
        try:
            return await simulate(ledger, getattr(args, size), args.seed)
        finally:
            await ledger.close()

    print(f"seed={args.seed}")
    try:
        print("\n".join(asyncio.run(run()).lines()))
    finally:
        postgres.stop_shared()
