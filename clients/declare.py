"""Declarations of wire messages, and the one encoder and decoder that every message uses.

Theory of operation. A message is a dataclass whose fields say their wire type and bounds with
``Annotated``: ``room: Annotated[str, Id()]``, ``amount_minor: Annotated[int, Int(minimum=1,
code=ErrorCode.INVALID_AMOUNT)]``. A ``bool`` field and a field holding a declared object (or
None) need no annotation; a plain ``str`` in the metadata is the field's description for the
docs. :meth:`Registry.message` (for a message, with its ``type`` and the roles that may send
it) and :func:`wire_object` (for an object nested in messages) read the fields once, at import,
into a :class:`Spec`.

Everything else is derived from the spec, in one place each:

- encoding (:meth:`Spec.dump`): a map with ``type`` first, then the fields in declared order. A
  message leaves out a field that holds its default (``message: ""``, ``id: None``) unless the
  field is marked :data:`ALWAYS`; a nested object always has every field, computed ones too.
- decoding (:meth:`Spec.decode`): each field in declared order is checked by its :class:`Kind`;
  the first refusal names the error code and the field. A missing field takes its default
  (required fields have none); ``null`` is accepted where the default is None. Unknown fields
  are ignored, so a newer peer may add some.
- the docs' tables and the OpenAPI schemas (:meth:`Kind.describe`, :meth:`Kind.schema`).

A misdeclared message (a field with no wire type) raises TypeError at import, naming the field.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Final,
    Generic,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from clients.codes import ErrorCode
from clients.ids import ID_PATTERN

T = TypeVar("T")

#: Every amount is an integer strictly below this bound (Lua computes exactly below it).
AMOUNT_LIMIT_MINOR: Final = 2**53
#: Longest tip message and viewer name, in characters.
MESSAGE_CHARS_MAX: Final = 255
CURRENCY_PATTERN: Final = re.compile(r"[A-Z]{3}")
STREAM_ID_PATTERN: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
#: An event id's parts are below 2**64 (Redis stream ids), and its milliseconds below 2**64 - 1
#: so that "after this id" is an id too (Redis refuses an interval that starts past the last).
STREAM_MS_LIMIT: Final = 2**64 - 1
STREAM_SEQ_LIMIT: Final = 2**64

#: Marks a defaulted message field that is sent even while it holds its default.
ALWAYS: Final = "always-on-the-wire"


class Refused(Exception):
    """A field (or the frame) is not what the declaration says: the code to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_id(value: object) -> bool:
    """Tell whether ``value`` is a valid message id, room id or tab id."""
    return type(value) is str and ID_PATTERN.fullmatch(value) is not None


def is_stream_id(value: object) -> bool:
    """Tell whether ``value`` is an event id (``<ms>-<seq>``) that a stream can hold."""
    if type(value) is not str or STREAM_ID_PATTERN.fullmatch(value) is None:
        return False
    ms, _, seq = value.partition("-")
    return int(ms) < STREAM_MS_LIMIT and int(seq) < STREAM_SEQ_LIMIT


def as_map(value: object, what: str) -> dict[str, Any]:
    """``value`` if it is a map with string keys; otherwise Refused (``invalid_field``)."""
    if not isinstance(value, dict) or not all(type(k) is str for k in value):
        raise Refused(ErrorCode.INVALID_FIELD, f"{what} must be a map with string keys")
    return value


def _bound(n: int) -> str:
    return "2^53-1" if n == AMOUNT_LIMIT_MINOR - 1 else f"{n:,}"


# ---------------------------------------------------------------------------------------------
# Kinds: a field's wire type, its check, its schema and its description


class Kind(ABC):
    """A field's wire type: how it is checked, encoded, drawn in JSON Schema and described."""

    @abstractmethod
    def check(self, value: object, name: str) -> Any:
        """``value`` as the message holds it, or Refused naming ``name``."""

    def dump(self, value: Any) -> Any:
        """``value`` as the wire carries it (the same, for scalars)."""
        return value

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the field (the OpenAPI document uses the same)."""

    @abstractmethod
    def describe(self) -> str:
        """The field's type and bounds, in the words of docs/protocol.md (Markdown)."""


@dataclass(frozen=True, slots=True)
class Id(Kind):
    """A client-minted or server id: ``[A-Za-z0-9_.-]{1,64}``."""

    def check(self, value: object, name: str) -> str:
        if type(value) is not str or ID_PATTERN.fullmatch(value) is None:
            raise Refused(ErrorCode.INVALID_ID, f"{name} must match {ID_PATTERN.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}

    def describe(self) -> str:
        return f"string `{ID_PATTERN.pattern}`"


@dataclass(frozen=True, slots=True)
class Int(Kind):
    """An integer (never a bool, never a float) in ``minimum … maximum``; amounts and counts
    stay below 2**53."""

    minimum: int = 0
    maximum: int = AMOUNT_LIMIT_MINOR - 1
    code: ErrorCode = ErrorCode.INVALID_FIELD

    def check(self, value: object, name: str) -> int:
        if type(value) is not int or not self.minimum <= value <= self.maximum:
            raise Refused(
                self.code,
                f"{name} must be an integer in {_bound(self.minimum)} … {_bound(self.maximum)}",
            )
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}

    def describe(self) -> str:
        return f"integer {_bound(self.minimum)} … {_bound(self.maximum)}"


@dataclass(frozen=True, slots=True)
class Currency(Kind):
    """An ISO-4217 code (three capitals; the server then checks it is one it accepts)."""

    def check(self, value: object, name: str) -> str:
        if type(value) is not str or CURRENCY_PATTERN.fullmatch(value) is None:
            raise Refused(ErrorCode.INVALID_CURRENCY, f"{name} must be an ISO-4217 code")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{CURRENCY_PATTERN.pattern}$"}

    def describe(self) -> str:
        return "string, ISO-4217 code"


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A string of at most ``chars_max`` characters (None: any length), printable on one line
    if ``printable``, not empty if ``nonempty``. ``refusal`` replaces the default message."""

    chars_max: int | None = None
    printable: bool = False
    nonempty: bool = False
    code: ErrorCode = ErrorCode.INVALID_FIELD
    refusal: str = ""

    def check(self, value: object, name: str) -> str:
        if (
            type(value) is not str
            or (self.chars_max is not None and len(value) > self.chars_max)
            or (self.nonempty and not value)
        ):
            limit = "" if self.chars_max is None else f" of at most {self.chars_max}"
            raise Refused(self.code, self.refusal or f"{name} must be a string{limit}")
        if self.printable and not value.isprintable():
            raise Refused(self.code, f"{name} must be printable, on one line")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.chars_max is not None:
            out["maxLength"] = self.chars_max
        if self.nonempty:
            out["minLength"] = 1
        if self.printable:
            # No control characters (C0, DEL, C1): one printable line.
            out["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
        return out

    def describe(self) -> str:
        words = ["string"]
        if self.chars_max is not None:
            words.append(f"up to {self.chars_max} characters")
        if self.printable:
            words.append("printable, one line")
        if self.nonempty:
            words.append("not empty")
        return ", ".join(words)


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    """One of a few strings."""

    values: tuple[str, ...]

    def check(self, value: object, name: str) -> str:
        if type(value) is not str or value not in self.values:
            raise Refused(ErrorCode.INVALID_FIELD, f"{name} must be {' or '.join(self.values)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}

    def describe(self) -> str:
        return " or ".join(f"`{v}`" for v in self.values)


@dataclass(frozen=True, slots=True)
class Bool(Kind):
    """``true`` or ``false`` (never 0 or 1)."""

    def check(self, value: object, name: str) -> bool:
        if type(value) is not bool:
            raise Refused(ErrorCode.INVALID_FIELD, f"{name} must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def describe(self) -> str:
        return "boolean"


@dataclass(frozen=True, slots=True)
class StreamId(Kind):
    """An event id ``<ms>-<seq>`` that a Redis stream can hold."""

    def check(self, value: object, name: str) -> str:
        if not is_stream_id(value):
            raise Refused(ErrorCode.INVALID_FIELD, f"{name} must be an event id (<ms>-<seq>)")
        return str(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{STREAM_ID_PATTERN.pattern}$"}

    def describe(self) -> str:
        return "string, event id `<ms>-<seq>`"


@dataclass(frozen=True, slots=True)
class IntMap(Kind):
    """A map of names to integers in 0 … 2^53-1 (limits, earnings by currency)."""

    def check(self, value: object, name: str) -> dict[str, int]:
        obj = as_map(value, name)
        if not all(type(v) is int and 0 <= v < AMOUNT_LIMIT_MINOR for v in obj.values()):
            raise Refused(ErrorCode.INVALID_FIELD, f"{name} values must be integers")
        return obj

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": Int().schema()}

    def describe(self) -> str:
        return "map of string to integer"


@dataclass(frozen=True, slots=True)
class AnyMap(Kind):
    """A map with string keys and any values (an event's data)."""

    def check(self, value: object, name: str) -> dict[str, Any]:
        return as_map(value, name)

    def schema(self) -> dict[str, Any]:
        return {"type": "object"}

    def describe(self) -> str:
        return "map"


@dataclass(frozen=True, slots=True)
class Object(Kind):
    """An object declared with :func:`wire_object`, nested in a message."""

    spec: Spec[Any]

    def check(self, value: object, name: str) -> Any:
        return self.spec.decode(as_map(value, name), f"{name}.")

    def dump(self, value: Any) -> Any:
        return self.spec.dump(value)

    def schema(self) -> dict[str, Any]:
        return self.spec.schema()

    def describe(self) -> str:
        return f"object [{self.spec.name}](#object-{self.spec.name})"


@dataclass(frozen=True, slots=True)
class ObjectMap(Kind):
    """A map of ``items_min`` to ``items_max`` names to declared objects."""

    spec: Spec[Any]
    items_min: int
    items_max: int
    keys: str = "names"

    def check(self, value: object, name: str) -> dict[str, Any]:
        obj = as_map(value, name)
        if not self.items_min <= len(obj) <= self.items_max:
            raise Refused(
                ErrorCode.INVALID_FIELD,
                f"{name} holds {self.items_min} to {self.items_max} {self.keys}",
            )
        return {
            k: self.spec.decode(as_map(v, f"{name}.{k}"), f"{name}.{k}.") for k, v in obj.items()
        }

    def dump(self, value: Any) -> Any:
        return {k: self.spec.dump(v) for k, v in value.items()}

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "minProperties": self.items_min,
            "maxProperties": self.items_max,
            "additionalProperties": self.spec.schema(),
        }

    def describe(self) -> str:
        return (
            f"map of {self.items_min} to {self.items_max} {self.keys} to "
            f"object [{self.spec.name}](#object-{self.spec.name})"
        )


@dataclass(frozen=True, slots=True)
class ListOf(Kind):
    """A list of at most ``items_max`` values of one kind (a membership's features, its
    allowances)."""

    item: Kind
    items_max: int

    def check(self, value: object, name: str) -> list[Any]:
        if type(value) is not list or len(value) > self.items_max:
            raise Refused(
                ErrorCode.INVALID_FIELD, f"{name} must be a list of at most {self.items_max}"
            )
        return [self.item.check(v, f"{name}[{i}]") for i, v in enumerate(value)]

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "maxItems": self.items_max, "items": self.item.schema()}

    def describe(self) -> str:
        return f"list of up to {self.items_max}: {self.item.describe()}"


# ---------------------------------------------------------------------------------------------
# Specs


_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One declared field: its wire name, kind, default and description."""

    name: str
    kind: Kind
    required: bool
    #: None is a value (the default is None): ``null`` on the wire decodes to it.
    nullable: bool
    #: Left off the wire while it holds ``default`` (messages only; never for required fields).
    sparse: bool
    default: object
    doc: str


@dataclass(frozen=True, slots=True)
class Computed:
    """A value the wire carries that the class computes (a property): encoded, never decoded."""

    name: str
    kind: Kind
    nullable: bool
    doc: str


class Spec(Generic[T]):
    """The declaration of one message or nested object, and its encoder and decoder."""

    def __init__(
        self,
        cls: type[T],
        name: str,
        fields: tuple[Field, ...],
        *,
        message: bool,
        senders: frozenset[str] = frozenset(),
        computed: tuple[Computed, ...] = (),
    ) -> None:
        self.cls = cls
        #: The ``type`` of a message; the name of an object in the docs.
        self.name = name
        self.fields = fields
        self.message = message
        #: The roles that may send a client message (empty for the server's messages).
        self.senders = senders
        self.computed = computed
        #: For :meth:`dump`: name, left off at its default, the default, how to convert it.
        self._plan = tuple(
            (f.name, f.sparse, f.default, _converter(f.kind)) for f in fields
        ) + tuple((c.name, False, None, _converter(c.kind)) for c in computed)
        self.doc = " ".join((cls.__doc__ or "").split())

    def decode(self, obj: Mapping[str, Any], prefix: str = "") -> T:
        """The instance ``obj`` describes; Refused at the first field that is not as declared."""
        values: dict[str, Any] = {}
        for f in self.fields:
            value = obj.get(f.name, _MISSING)
            if value is _MISSING:
                if f.required:
                    values[f.name] = f.kind.check(None, prefix + f.name)
            elif value is None and f.nullable:
                values[f.name] = None
            else:
                values[f.name] = f.kind.check(value, prefix + f.name)
        return self.cls(**values)

    def dump(self, value: T) -> dict[str, Any]:
        """The wire map of ``value`` (both codecs encode this same map)."""
        # Runs on every frame sent (tips are the hot path): the plan was worked out once.
        out: dict[str, Any] = {"type": self.name} if self.message else {}
        for name, sparse, default, convert in self._plan:
            v = getattr(value, name)
            if sparse and v == default:
                continue
            out[name] = v if convert is None or v is None else convert(v)
        return out

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the wire map."""
        properties: dict[str, Any] = {}
        required = [f.name for f in self.fields if f.required or not f.sparse]
        if self.message:
            properties["type"] = {"const": self.name}
            required.insert(0, "type")
        for f in self.fields:
            properties[f.name] = _nullable(f.kind.schema(), f.nullable, f.doc)
        for c in self.computed:
            properties[c.name] = _nullable(c.kind.schema(), c.nullable, c.doc)
            required.append(c.name)
        out: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
        if self.doc:
            out["description"] = self.doc
        return out


def _converter(kind: Kind) -> Callable[[Any], Any] | None:
    """``kind.dump``, or None where it returns its value unchanged (every scalar)."""
    return None if type(kind).dump is Kind.dump else kind.dump


def _nullable(schema: dict[str, Any], nullable: bool, doc: str) -> dict[str, Any]:
    out: dict[str, Any] = {"anyOf": [schema, {"type": "null"}]} if nullable else dict(schema)
    if doc:
        out["description"] = doc
    return out


#: Every declared class's spec, for encoding any of them.
SPECS: Final[dict[type, Spec[Any]]] = {}


def _kind_of(cls: type, name: str, hint: Any) -> tuple[Kind, bool, str]:
    """The kind of a field from its type hint, whether ALWAYS marks it, and its description."""
    meta: tuple[Any, ...] = ()
    if get_origin(hint) is Annotated:
        hint, *rest = get_args(hint)
        meta = tuple(rest)
    kinds = [m for m in meta if isinstance(m, Kind)]
    docs = [m for m in meta if isinstance(m, str) and m != ALWAYS]
    always = ALWAYS in meta
    if kinds:
        return kinds[0], always, " ".join(docs)
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint is bool:
        return Bool(), always, " ".join(docs)
    if isinstance(hint, type) and hint in SPECS:
        return Object(SPECS[hint]), always, " ".join(docs)
    raise TypeError(
        f"{cls.__name__}.{name} has no wire type: annotate it, e.g. Annotated[str, Id()] or "
        "Annotated[int, Int(minimum=1)] (bool fields and declared objects need none)"
    )


def _fields(cls: type, *, sparse: bool) -> tuple[Field, ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"declare {cls.__name__} as a dataclass first (@dataclass below)")
    # Evaluated in the module's namespace as it stands: everything declared above is there.
    hints = get_type_hints(cls, vars(sys.modules[cls.__module__]), include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        kind, always, doc = _kind_of(cls, f.name, hints[f.name])
        has_default = f.default is not dataclasses.MISSING
        required = not has_default and f.default_factory is dataclasses.MISSING
        out.append(
            Field(
                name=f.name,
                kind=kind,
                required=required,
                nullable=has_default and f.default is None,
                sparse=sparse and has_default and not always,
                default=f.default if has_default else _MISSING,
                doc=doc,
            )
        )
    return tuple(out)


def wire_object(
    name: str, *, computed: Iterable[tuple[str, Kind, bool, str]] = ()
) -> Callable[[type[T]], type[T]]:
    """Declare an object nested in messages (a tab, a session …), named ``name`` in the docs.
    ``computed`` lists properties the wire carries too: (name, kind, may it be None, what it
    is)."""

    def register(cls: type[T]) -> type[T]:
        extra = tuple(Computed(n, k, nullable=z, doc=d) for n, k, z, d in computed)
        SPECS[cls] = Spec(cls, name, _fields(cls, sparse=False), message=False, computed=extra)
        return cls

    return register


class Registry:
    """The messages one side sends, by their ``type``: what that side's peer decodes."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.specs: dict[str, Spec[Any]] = {}

    def message(
        self, wire_type: str, *, senders: Iterable[str] = ()
    ) -> Callable[[type[T]], type[T]]:
        """Declare the dataclass below as the message ``wire_type``, sent by ``senders``."""

        def register(cls: type[T]) -> type[T]:
            if wire_type in self.specs:
                raise TypeError(f"two {self.side} messages have the type {wire_type!r}")
            spec = Spec(
                cls,
                wire_type,
                _fields(cls, sparse=True),
                message=True,
                senders=frozenset(senders),
            )
            self.specs[wire_type] = SPECS[cls] = spec
            return cls

        return register

    def decode(self, obj: Mapping[str, Any]) -> object:
        """The message ``obj`` describes, or Refused (``unknown_type`` for an unknown type)."""
        kind = obj.get("type")
        spec = self.specs.get(kind) if type(kind) is str else None
        if spec is None:
            raise Refused(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
        return spec.decode(obj)
