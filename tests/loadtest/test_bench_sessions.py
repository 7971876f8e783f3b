"""A smoke run of the sessions benchmark: tiny numbers, it must produce its figures."""

from __future__ import annotations

from loadtest.bench_sessions import run_with_own_redis


async def test_the_sessions_benchmark_produces_its_table() -> None:
    figures = await run_with_own_redis(sessions=20, seconds=2)
    assert figures.sessions == 20
    assert figures.ticks >= 1
    assert figures.billed_error_s_max <= 2
    table = figures.table()
    assert table.startswith("| sessions | ticks/s |")
    assert "| 20 |" in table
