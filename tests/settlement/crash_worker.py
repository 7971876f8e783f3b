"""A ``tipmeter worker`` that kills itself at one checkpoint: the crash tests' entry point.

``python -m tests.settlement.crash_worker POINT`` reads the same ``TIPMETER_*`` environment as
``tipmeter worker`` and runs the same loop, with a checkpoint hook that sends this process
SIGKILL when a settlement reaches ``POINT`` (a :class:`settlement.config.Checkpoint`) — a real
``kill -9`` at an exact place in the code. Production code carries the hook's call sites only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

from server.config import Settings
from settlement.config import Checkpoint
from settlement.runner import run_worker


def kill_at(point: Checkpoint) -> Callable[[Checkpoint], None]:
    """A checkpoint hook that SIGKILLs this process when a settlement reaches ``point``."""

    def hook(reached: Checkpoint) -> None:
        if reached is point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv: list[str]) -> int:
    """Run the worker loop with :func:`kill_at` the checkpoint named by ``argv[0]``."""
    if len(argv) != 1 or argv[0] not in set(Checkpoint):
        print(f"usage: crash_worker {{{','.join(Checkpoint)}}}", file=sys.stderr)
        return 2
    settings = Settings.from_env(os.environ)
    asyncio.run(run_worker(settings, on_checkpoint=kill_at(Checkpoint(argv[0]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
