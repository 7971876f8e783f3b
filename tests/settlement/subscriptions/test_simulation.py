"""The seeded year of memberships: its invariants (simulation.py says which)."""

from __future__ import annotations

import os
import random

import pytest

from settlement.ledger.ledger import Ledger
from tests.settlement.subscriptions.simulation import simulate

#: A fixed seed unless TIPMETER_SIM_SEED names one (a failure prints the seed to replay).
SEED = int(os.environ.get("TIPMETER_SIM_SEED", random.SystemRandom().randrange(2**32)))
FULL = os.environ.get("TIPMETER_SIM_FULL") == "1"


@pytest.mark.parametrize(
    "subscriptions",
    [
        # About a minute alone, several on a loaded machine: a bound of its own.
        pytest.param(60, marks=[pytest.mark.slow, pytest.mark.timeout(900)], id="60"),
        pytest.param(
            10_000,
            marks=[
                pytest.mark.slow,
                pytest.mark.timeout(4 * 3_600),
                pytest.mark.skipif(not FULL, reason="the full year: set TIPMETER_SIM_FULL=1"),
            ],
            id="10000",
        ),
    ],
)
async def test_a_year_of_memberships_charges_each_period_once_and_adds_up(
    ledger: Ledger, subscriptions: int
) -> None:
    print(f"seed={SEED} subscriptions={subscriptions}")
    figures = await simulate(ledger, subscriptions, SEED)
    print("\n".join(figures.lines()))
    assert figures.charged_twice == 0, figures
    assert figures.periods_missed == 0, figures
    assert figures.prorations_off == 0, figures
    assert figures.invoices_off == 0, figures
    assert figures.numbering_gaps == 0, figures
    assert figures.export_off == 0, figures
    assert figures.unbalanced == 0, figures
    assert figures.credits_off == 0, figures
    # The simulation exercised what it claims to (else its zeros prove nothing).
    assert figures.periods_paid > subscriptions, figures
    assert figures.periods_free > 0, figures
    assert figures.declines > 0, figures
    assert figures.cards_updated > 0, figures
    assert figures.changes > 0, figures
    assert figures.item_changes > 0, figures
    assert figures.tabs > 0, figures
    assert figures.credit_notes == figures.refunds > 0, figures
    assert sum(figures.cancels.values()) > 0, figures
    assert figures.states["expired"] > 0, figures
    assert figures.states["cancelled"] > 0, figures
    assert figures.notices["card_expiring"] > 0, figures
    assert figures.notices["restricted"] > 0, figures
