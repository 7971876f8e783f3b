"""The load test's settings: ``LOADTEST_*`` environment variables, bounded and validated.

Not ``TIPMETER_*``: that prefix is the server's, and the server refuses any variable under it
that it does not know — a load-test knob left in a shell would stop ``tipmeter serve``.

Pure: no locust, no gevent, so the driver (``loadtest.run``) checks the settings before it starts
anything, and tests import this module without monkey-patching the test process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

PREFIX: Final = "LOADTEST_"
#: Kinds of show a viewer may start (the protocol's session kinds).
SHOW_KINDS: Final = ("private", "spy", "cam2cam")
#: The user classes whose share of the users LOADTEST_MIX sets (models: one per room).
MIX_USERS: Final = ("tipper", "show")
#: Bounds of the knobs (the server has its own: TIPMETER_TIPS_PER_S_MAX, CAP_MAX_MINOR …).
ROOMS_MAX: Final = 100
WEIGHT_MAX: Final = 1_000
TIP_RATE_PER_S_MAX: Final = 1_000.0
AMOUNT_MINOR_MAX: Final = 900_000_000_000
SHOW_S_MAX: Final = 3_600.0
TIMEOUT_S_MAX: Final = 120.0
_RUN_ID: Final = re.compile(r"[A-Za-z0-9]{1,16}")
#: Variables the driver reads (``python -m loadtest.run``), known here so that no one of them
#: is taken for a typo.
DRIVER_VARIABLES: Final = ("TIME", "USERS", "SPAWN_RATE", "REPORTS")


class ConfigError(ValueError):
    """A ``LOADTEST_*`` variable is malformed, out of bounds or unknown; the message names it."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What the locust users do; :data:`KNOBS` names the variable that sets each field."""

    seed: int = 1
    rooms: int = 4
    tipper_weight: int = 4
    show_weight: int = 1
    tip_rate_per_s: float = 1.0
    tip_min_minor: int = 1
    tip_max_minor: int = 500
    cap_minor: int = 5_000
    show_s: float = 10.0
    show_pause_s: float = 2.0
    show_kind: str = "private"
    show_rate_minor: int = 600
    currency: str = "USD"
    codec: str = "msgpack"
    timeout_s: float = 10.0
    run_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LoadConfig:
        """Read every ``LOADTEST_*`` variable of ``env``; raise ConfigError naming a bad one."""
        known = {knob.variable for knob in KNOBS} | {PREFIX + name for name in DRIVER_VARIABLES}
        unknown = sorted(name for name in env if name.startswith(PREFIX) and name not in known)
        if unknown:
            raise ConfigError(f"unknown variable(s) {', '.join(unknown)}; see docs/loadtest.md")
        values: dict[str, Any] = {}
        for knob in KNOBS:
            raw = env.get(knob.variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values.update(knob.parse(raw.strip()))
            except ValueError as exc:
                raise ConfigError(f"{knob.variable}={raw!r}: {exc}") from None
        config = cls(**values)
        if config.tip_min_minor > config.tip_max_minor:
            raise ConfigError(
                f"{PREFIX}TIP_MIN_MINOR ({config.tip_min_minor}) is above "
                f"{PREFIX}TIP_MAX_MINOR ({config.tip_max_minor})"
            )
        if not config.run_id:
            config = replace(config, run_id=default_run_id())
        return config

    @property
    def room_names(self) -> tuple[str, ...]:
        """The rooms of this run: one model console each."""
        return tuple(f"lt{self.run_id}-room{n}" for n in range(self.rooms))

    def customer(self, kind: str, index: int) -> str:
        """The customer id of the ``index``-th viewer of ``kind`` in this run."""
        return f"lt{self.run_id}-{kind}{index}"

    def show_cost_minor(self) -> int:
        """What one show of ``show_s`` seconds costs at ``show_rate_minor`` a minute, rounded up,
        with two seconds to spare: a fraction of a second in ``show_s``, and the second in
        progress when the show is stopped (seconds are billed in advance)."""
        seconds = int(self.show_s) + 2
        return -(-self.show_rate_minor * seconds // 60)


def default_run_id() -> str:
    """A run id from the clock (base 36 seconds): customers and rooms of two runs against the
    same server never meet."""
    n = int(time.time())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


# ---------------------------------------------------------------------------------------------
# Parsers: each raises ValueError with the reason, which from_env prefixes with the variable.


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", raw):
            raise ValueError("not a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be within {low}..{high}")
        return value

    return parse


def _float(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        too_low = value <= low if low_open else value < low
        if too_low or value > high or value != value:  # the last: NaN
            bound = f"above {low}" if low_open else f"at least {low}"
            raise ValueError(f"must be {bound} and at most {high}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _currency(raw: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", raw):
        raise ValueError("must be an ISO-4217 code such as USD")
    return raw


def _run_id(raw: str) -> str:
    if not _RUN_ID.fullmatch(raw):
        raise ValueError("must be 1 to 16 letters and digits")
    return raw


def _mix(raw: str) -> dict[str, Any]:
    weights = dict.fromkeys(MIX_USERS, 0)
    for part in raw.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name not in weights:
            raise ValueError(f"write weights as {'=N,'.join(MIX_USERS)}=N (e.g. tipper=4,show=1)")
        weights[name] = _int(0, WEIGHT_MAX)(value.strip())
    if not any(weights.values()):
        raise ValueError("at least one weight must be above 0")
    return {f"{name}_weight": weight for name, weight in weights.items()}


def _one(field: str, parse: Callable[[str], object]) -> Callable[[str], dict[str, Any]]:
    """A parser of the knob that sets the one field ``field``."""
    return lambda raw: {field: parse(raw)}


@dataclass(frozen=True, slots=True)
class Knob:
    """One variable: the fields it sets, and its meaning (docs/loadtest.md's table)."""

    variable: str
    parse: Callable[[str], dict[str, Any]]
    meaning: str
    #: The default as the docs show it: a field of LoadConfig, or the text itself.
    default: str


def _knob(name: str, field: str, parse: Callable[[str], object], meaning: str) -> Knob:
    return Knob(PREFIX + name, _one(field, parse), meaning, str(getattr(LoadConfig(), field)))


KNOBS: Final = (
    _knob("SEED", "seed", _int(0, 2**63 - 1), "Seed of every random choice (amounts, rooms)."),
    _knob(
        "ROOMS",
        "rooms",
        _int(1, ROOMS_MAX),
        "Rooms, each with one `ModelUser` (spawned first; they count in the users).",
    ),
    Knob(
        PREFIX + "MIX",
        _mix,
        "Weights of the viewers among the other users: `tipper=N,show=N`.",
        "tipper=4,show=1",
    ),
    _knob(
        "TIP_RATE",
        "tip_rate_per_s",
        _float(0.0, TIP_RATE_PER_S_MAX, low_open=True),
        "Tips a second each `TipperUser` sends (the server allows `TIPMETER_TIPS_PER_S_MAX`).",
    ),
    _knob("TIP_MIN_MINOR", "tip_min_minor", _int(1, AMOUNT_MINOR_MAX), "Smallest tip."),
    _knob("TIP_MAX_MINOR", "tip_max_minor", _int(1, AMOUNT_MINOR_MAX), "Largest tip."),
    _knob(
        "CAP_MINOR",
        "cap_minor",
        _int(1, AMOUNT_MINOR_MAX),
        "Cap each viewer's tab opens with, and the step it is raised by when it runs low.",
    ),
    _knob(
        "SHOW_S",
        "show_s",
        _float(0.0, SHOW_S_MAX, low_open=True),
        "Seconds a `ShowUser` stays in each show.",
    ),
    _knob(
        "SHOW_PAUSE_S",
        "show_pause_s",
        _float(0.0, SHOW_S_MAX),
        "Seconds a `ShowUser` waits between two shows.",
    ),
    _knob("SHOW_KIND", "show_kind", _choice(*SHOW_KINDS), "Kind of show viewers start."),
    _knob(
        "SHOW_RATE_MINOR",
        "show_rate_minor",
        _int(1, AMOUNT_MINOR_MAX),
        "Price a minute each model sets for that kind (the server's bounds: `TIPMETER_RATE_*`).",
    ),
    _knob("CURRENCY", "currency", _currency, "Currency of every tab."),
    _knob("CODEC", "codec", _choice("msgpack", "json"), "Encoding of every connection."),
    _knob(
        "TIMEOUT_S",
        "timeout_s",
        _float(0.0, TIMEOUT_S_MAX, low_open=True),
        "Longest wait for an answer; past it the round trip fails with `timeout`.",
    ),
    Knob(
        PREFIX + "RUN_ID",
        _one("run_id", _run_id),
        "Names this run's customers and rooms (`lt<id>-…`): 1 to 16 letters and digits.",
        "from the clock",
    ),
)


def render_markdown() -> str:
    """The knobs' table of docs/loadtest.md, rendered from :data:`KNOBS`."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{knob.variable}` | `{knob.default}` | {knob.meaning} |" for knob in KNOBS]
    return "\n".join(rows) + "\n"
