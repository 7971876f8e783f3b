"""Development keys for the embedded default: generated once, kept in the data folder.

With no ``TIPMETER_TICKET_SECRETS`` or ``TIPMETER_API_KEYS`` and the embedded Redis, ``tipmeter
serve`` uses keys stored in ``<data dir>/dev-keys.json`` (created with mode 0600), so a laptop
setup needs no configuration and keeps its keys across restarts. With a configured Redis the
keys must be configured: every process must share them.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "dev-keys.json"


@dataclass(frozen=True, slots=True)
class DevKeys:
    """A ticket secret and an API key for local use."""

    ticket_secret: str
    api_key: str


def load_or_create(data_dir: Path) -> DevKeys:
    """Read the data folder's development keys, creating them the first time."""
    path = data_dir / FILE_NAME
    if path.exists():
        raw = json.loads(path.read_text())
        return DevKeys(ticket_secret=raw["ticket_secret"], api_key=raw["api_key"])
    keys = DevKeys(
        ticket_secret=secrets.token_urlsafe(32), api_key=f"tm_dev_{secrets.token_urlsafe(24)}"
    )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"ticket_secret": keys.ticket_secret, "api_key": keys.api_key}, out)
    return keys
