"""What the embedded servers (redis-server, PostgreSQL) share as child processes: stopping one
within a bound, and being a context manager."""

from __future__ import annotations

import abc
import signal
import subprocess
from typing import Self


def stop_child(
    process: subprocess.Popen[bytes] | None, timeout_s: float, signum: int = signal.SIGTERM
) -> None:
    """Ask ``process`` to stop with ``signum``; SIGKILL it if it has not exited in ``timeout_s``.

    ``signum`` is each server's clean shutdown: SIGTERM makes redis-server flush its
    append-only file, SIGINT is PostgreSQL's fast shutdown (which checkpoints).
    """
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ChildServer(abc.ABC):
    """A server run as a child process: ``with server:`` starts it and always stops it."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server; return once it answers."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
