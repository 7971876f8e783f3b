"""How one setting is declared: its parser (type and bounds), default and help, in one place.

A setting is a field of :class:`server.config.Settings` whose default is :func:`setting`:

    port: int = setting(8000, integer(1, 65535), "Port the server listens on.")

The environment variable is ``TIPMETER_`` and the field's name in capitals (``variable=`` names
another). Reading the environment, ``tipmeter config`` and the README's table all come from
these declarations, so adding a setting is one field and nothing else.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar, overload

PREFIX: Final = "TIPMETER_"
#: The key of a field's metadata that holds its :class:`Declaration`.
METADATA_KEY: Final = "tipmeter.setting"
SECRET_CHARS_MIN: Final = 32
SECONDS_MAX: Final = 86_400

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Parser(Generic[T]):
    """Turns a variable's text into a value; ``accepts`` says, as a user types them, which
    values it takes (the README's "values" column). Raises ValueError saying what it expects."""

    read: Callable[[str], T]
    accepts: str

    def __call__(self, raw: str) -> T:
        return self.read(raw)


@dataclass(frozen=True, slots=True)
class Declaration:
    """What :func:`setting` records on a field: its parser, its help and its variable."""

    parse: Parser[Any]
    help: str
    variable: str | None = None


@overload
def setting(
    default: None, parse: Parser[T], help: str, *, variable: str | None = None
) -> T | None: ...


@overload
def setting(default: T, parse: Parser[T], help: str, *, variable: str | None = None) -> T: ...


def setting(
    default: T | None, parse: Parser[T], help: str, *, variable: str | None = None
) -> T | None:
    """Declare a setting: a dataclass field with ``default``, read by ``parse`` from its
    environment variable (``TIPMETER_<FIELD>`` unless ``variable`` names it), documented by
    ``help`` (one or two sentences of Markdown)."""
    declaration = Declaration(parse=parse, help=help, variable=variable)
    field: T | None = dataclasses.field(default=default, metadata={METADATA_KEY: declaration})
    return field


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable, as the settings class declares it."""

    name: str
    field: str
    parse: Parser[Any]
    help: str
    default: Any


def variables(settings_class: type[Any]) -> Iterator[Variable]:
    """Every variable ``settings_class`` (a dataclass) declares with :func:`setting`, in the
    order of its fields. Fields without a declaration are not settings."""
    for field in dataclasses.fields(settings_class):
        declaration = field.metadata.get(METADATA_KEY)
        if not isinstance(declaration, Declaration):
            continue
        yield Variable(
            name=declaration.variable or PREFIX + field.name.upper(),
            field=field.name,
            parse=declaration.parse,
            help=declaration.help,
            default=field.default,
        )


def typed(value: Any) -> str:
    """``value`` as a user would type it in the variable (a list comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(typed(item) for item in value)
    return str(value)


def is_set(default: Any) -> bool:
    """False for a default that means "unset" (nothing, an empty list or text)."""
    return default not in (None, (), "")


def render_table(declared: Iterator[Variable]) -> str:
    """A Markdown table of ``declared``: variable, default and accepted values as typed, help."""
    rows = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
    for var in declared:
        shown = f"`{typed(var.default)}`" if is_set(var.default) else "unset"
        rows.append(f"| `{var.name}` | {shown} | {var.parse.accepts} | {var.help} |")
    return "\n".join(rows) + "\n"


#: The README's table stands between these two lines.
TABLE_BEGIN: Final = "<!-- settings:begin -->\n"
TABLE_END: Final = "<!-- settings:end -->"


def with_table(document: str, table: str) -> str:
    """``document`` (the README) with the text between its table markers replaced by
    ``table``. Raises ValueError when the markers are missing."""
    begin = document.find(TABLE_BEGIN)
    end = document.find(TABLE_END, begin + 1)
    if begin < 0 or end < 0:
        raise ValueError(f"no {TABLE_BEGIN.strip()} … {TABLE_END} block to fill")
    return document[: begin + len(TABLE_BEGIN)] + table + document[end:]


# -- Parsers ---------------------------------------------------------------------------------


def integer(low: int, high: int) -> Parser[int]:
    """A decimal integer within ``[low, high]``."""

    def read(raw: str) -> int:
        if not raw.strip().lstrip("-").isdigit():
            raise ValueError(f"expected an integer in {low}..{high}")
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"expected an integer in {low}..{high}")
        return value

    return Parser(read, f"`{low}`..`{high}`")


def choice(*options: str) -> Parser[str]:
    """One of ``options`` (case-insensitive)."""

    def read(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return Parser(read, ", ".join(f"`{option}`" for option in options))


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def _comma_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ValueError("expected a comma-separated list")
    return items


def _networks(raw: str) -> tuple[str, ...]:
    items = _comma_list(raw)
    try:
        return tuple(str(ipaddress.ip_network(item, strict=False)) for item in items)
    except ValueError:
        raise ValueError("expected comma-separated IP networks, e.g. 10.0.0.0/8,::1") from None


def _secret_list(raw: str) -> tuple[str, ...]:
    items = _comma_list(raw)
    if any(len(item) < SECRET_CHARS_MIN for item in items):
        raise ValueError(f"every secret must be at least {SECRET_CHARS_MIN} characters long")
    return items


def _seconds_list(raw: str) -> tuple[int, ...]:
    items = _comma_list(raw)
    if not all(item.isdigit() and 0 < int(item) <= SECONDS_MAX for item in items):
        raise ValueError(f"expected whole seconds between 1 and {SECONDS_MAX}, comma-separated")
    return tuple(sorted({int(item) for item in items}, reverse=True))


def _url(raw: str) -> str:
    value = _text(raw)
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


#: A non-empty string.
text: Final = Parser(_text, "text")
#: A folder or file.
path: Final = Parser(lambda raw: Path(_text(raw)), "a path")
#: A comma-separated list of non-empty items.
comma_list: Final = Parser(_comma_list, "comma-separated")
#: A comma-separated list of IP networks (``10.0.0.0/8``) or addresses.
networks: Final = Parser(_networks, "comma-separated IP networks")
#: A comma-separated list of secrets, each at least 32 characters long.
secret_list: Final = Parser(_secret_list, f"comma-separated, {SECRET_CHARS_MIN}+ characters each")
#: Comma-separated whole seconds, read largest first.
seconds_list: Final = Parser(_seconds_list, f"comma-separated seconds, `1`..`{SECONDS_MAX}`")
#: An http(s) URL.
url: Final = Parser(_url, "`http://…` or `https://…`")
