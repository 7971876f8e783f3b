"""A smoke run of ``make bench``: tiny numbers, real processes; it must produce its table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from loadtest.bench import BEGIN, END, write_report

ROWS = (
    "tips/s acknowledged, 10 connections",
    "ack latency p99",
    "tips/s, replicated ack (`TIPMETER_ACK_REPLICAS=1`",
    "server CPU per acknowledged tip",
    "fan-out A → B p99 at 50 tips/s",
    "server CPU per room event shown to a viewer (10 viewers",
    "50 metered sessions: tick lag p99",
    "RSS per idle connection, 50 connections",
    "settlement, one worker, 50 tabs",
    "Redis memory after 200 settled tabs, retention passed (at 100: ",
)


def test_the_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text(f"# Benchmarks\n\nanalysis above\n\n{BEGIN}\nold\n{END}\n\nanalysis below\n")
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--quick", "--output", str(output)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nanalysis above\n\n")
    assert text.endswith("\n\nanalysis below\n")
    assert "old" not in text
    table = text[text.index(BEGIN) : text.index(END)]
    for row in ROWS:
        assert row in table, row
    tips = re.search(r"\| tips/s acknowledged, 10 connections \| ([\d,]+) \| ([\d,]+) \|", table)
    assert tips is not None
    product, baseline = (int(n.replace(",", "")) for n in tips.groups())
    assert product > 0
    assert baseline > 0
    replicated = re.search(r"\| tips/s, replicated ack [^|]* \| ([\d,]+) \|", table)
    assert replicated is not None
    assert int(replicated.group(1).replace(",", "")) > 0  # acknowledged, so the replica confirmed
    frames = re.search(r"\(10 viewers, ([\d,]+) frames\)", table)
    assert frames is not None
    assert int(frames.group(1).replace(",", "")) > 0
    settled = re.search(r"\| ([\d,]+) tabs/s \|", table)
    assert settled is not None
    assert int(settled.group(1).replace(",", "")) > 0
    memory = re.search(
        r"retention passed \(at 100: [\d.]+ MiB\) \| ([\d.]+) MiB "
        r"\| ([\d.]+) MiB \(empty server\) \|",
        table,
    )
    assert memory is not None
    assert float(memory.group(1)) > 0
    assert float(memory.group(2)) > 0


def test_the_report_replaces_only_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    write_report("| a |\n", doc)
    assert doc.read_text() == f"# Benchmarks\n\n{BEGIN}\n| a |\n{END}\n"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    write_report("| b |\n", doc)
    assert doc.read_text() == f"intro\n{BEGIN}\n| b |\n{END}\noutro\n"
