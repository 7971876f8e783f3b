"""The accountants' export: totals equal the ledger's, in both formats, from the CLI too."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
from collections import defaultdict

from settlement.ledger.ledger import Ledger
from settlement.ledger.times import at
from settlement.subscriptions import export
from tests.settlement.subscriptions.helpers import DAY_MS, START_MS, World, plan, signup
from tests.support.processes import VENV_BIN


async def _year_of_billing(world: World) -> None:
    now = world.clock.now_ms()
    await world.subs.put_plan(plan("silver", rank=1), now)
    await world.subs.put_plan(
        plan("gold", rank=2, prices={"USD": {"price_minor": 2500}, "EUR": {"price_minor": 1999}}),
        now,
    )
    await world.subs.put_plan(
        plan(
            "club",
            kind="fan_club",
            room="mia",
            model_share_bp=7000,
            tax_inclusive=False,
            free_every_n=3,
            prices={"EUR": {"price_minor": 799}},
        ),
        now,
    )
    await world.subs.create(signup("a", "silver", country="DE"), now)
    await world.subs.create(signup("b", "gold", currency="EUR", country="IT"), now)
    await world.subs.create(signup("c", "club", currency="EUR", country="FR"), now)
    await world.subs.create(signup("d", "gold", country="US"), now)
    await world.run()
    await world.advance_days(11)
    await world.subs.change_plan("a", "gold", world.clock.now_ms())  # upgrade: owed
    await world.subs.change_plan("d", "silver", world.clock.now_ms())  # downgrade: a credit
    await world.advance_days(90, step_days=3)


async def test_export_totals_equal_the_ledger(ledger: Ledger) -> None:
    world = World(ledger)
    await _year_of_billing(world)
    since, until = at(START_MS), at(START_MS + 120 * DAY_MS)
    async with ledger.database.connection() as conn:
        found = await export.issued(conn, since, until)
        booked = await export.ledger_totals(conn, since, until)
    assert len(found) >= 12
    assert export.totals(found) == booked
    # Some line is a credit (the downgrade), some invoice is free of a bonus period.
    assert any(line["total_minor"] < 0 for i in found for line in i["lines"])

    plain = list(csv.DictReader(io.StringIO(export.plain_csv(found))))
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in plain:
        s = sums[row["currency"]]
        s[0] += int(row["net_minor"])
        s[1] += int(row["tax_minor"])
        s[2] += int(row["total_minor"])
    assert {cur: tuple(s) for cur, s in sums.items()} == {
        cur: (t.net_minor, t.tax_minor, t.total_minor) for cur, t in booked.items()
    }

    datev = export.datev_csv(found, since, until)
    assert export.datev_totals(datev) == {cur: t.total_minor for cur, t in booked.items()}
    header = datev.splitlines()[1].split(";")
    assert header[:3] == ["Umsatz (ohne Soll/Haben-Kz)", "Soll/Haben-Kennzeichen", "WKZ Umsatz"]
    numbers = sorted(int(i["number"]) for i in found)
    assert numbers == list(range(1, len(found) + 1))  # one series (2026), gap-free


async def test_the_cli_prints_the_export(ledger: Ledger, database_url: str) -> None:
    world = World(ledger)
    await _year_of_billing(world)
    since, until = at(START_MS), at(START_MS + 120 * DAY_MS)
    async with ledger.database.connection() as conn:
        expected = export.plain_csv(await export.issued(conn, since, until))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    env.update(
        {
            "TIPMETER_DATABASE_URL": database_url,
            "TIPMETER_TICKET_SECRETS": "x" * 32,
            "TIPMETER_API_KEYS": "y" * 32,
        }
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(VENV_BIN / "tipmeter"),
            "export",
            "--since",
            since.date().isoformat(),
            "--until",
            until.date().isoformat(),
        ],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == expected
