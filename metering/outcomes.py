"""Business outcomes: result codes and the typed results the operations return.

Expected outcomes are values, not exceptions. Each operation's docstring lists the codes it can
return in their order of precedence: when several apply, the first one listed is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from metering.lifecycle import TabState


class Code(StrEnum):
    """Every business outcome of the money core. The values are stable wire error codes."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ID_REUSED = "id_reused"
    INVALID_ID = "invalid_id"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_FIELD = "invalid_field"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    CAP_OUT_OF_RANGE = "cap_out_of_range"
    CAP_NOT_RAISED = "cap_not_raised"
    TAB_NOT_FOUND = "tab_not_found"
    TAB_NOT_OPEN = "tab_not_open"
    TAB_ALREADY_OPEN = "tab_already_open"
    CURRENCY_MISMATCH = "currency_mismatch"
    OVER_CAP = "over_cap"
    LINES_FULL = "lines_full"
    BUSY = "busy"
    INVALID_KIND = "invalid_kind"
    INSUFFICIENT_CAP = "insufficient_cap"
    SESSIONS_FULL = "sessions_full"
    SESSION_NOT_FOUND = "session_not_found"
    LEASE_ALIVE = "lease_alive"
    # Purchases from a model's catalog (metering/purchases.py, docs/purchases.md).
    PURCHASE_NOT_FOUND = "purchase_not_found"
    PURCHASE_NOT_PENDING = "purchase_not_pending"
    NOT_DUE = "not_due"

    @property
    def ok(self) -> bool:
        """True for the two codes that mean the operation's effect is in place."""
        return self in (Code.APPLIED, Code.DUPLICATE)


@dataclass(frozen=True, slots=True)
class TabRef:
    """Names one tab: the customer (whose hash tag holds every key of the tab) and its id."""

    customer: str
    tab_id: str


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class Balance:
    """What a viewer watches live: the tab's state, cap and accrued amount.

    ``version`` grows with every change of the tab, so a client can drop a stale update.
    """

    state: TabState | None
    cap_minor: int
    accrued_minor: int
    version: int
    #: The per-minute rates of the tab's running sessions, summed (0 without sessions).
    burn_minor_per_minute: int = 0

    @property
    def remaining_minor(self) -> int:
        """How much can still be spent: ``cap - accrued``, never negative."""
        return max(self.cap_minor - self.accrued_minor, 0)


def no_balance() -> Balance:
    """The balance of a result that did not reach a tab."""
    return Balance(state=None, cap_minor=0, accrued_minor=0, version=0)


@dataclass(frozen=True, slots=True)
class OpenResult:
    """Outcome of opening a tab. ``tab_id`` names the existing tab on ``tab_already_open``."""

    code: Code
    tab_id: str
    balance: Balance = field(default_factory=no_balance)


@dataclass(frozen=True, slots=True)
class CapResult:
    """Outcome of raising a tab's cap."""

    code: Code
    balance: Balance = field(default_factory=no_balance)


@dataclass(frozen=True, slots=True)
class FreezeResult:
    """Outcome of freezing a tab for settlement; reason and time are the original freeze's."""

    code: Code
    balance: Balance = field(default_factory=no_balance)
    reason: str = ""
    frozen_at_ms: int = 0


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class RoomEventDraft:
    """An event queued in a customer's outbox, waiting to be relayed into its room."""

    customer: str
    room: str
    event_key: str
    event_type: str
    data: bytes
    currency: str
    earned_minor: int
    outbox_id: str = ""


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class TipResult:
    """Outcome of a tip. ``balance`` is the tab after the tip (the original one on a duplicate).

    ``event`` is set only when the tip was applied by this call: the caller relays it.
    """

    code: Code
    tip_id: str
    balance: Balance = field(default_factory=no_balance)
    seq: int = 0
    share_minor: int = 0
    applied_at_ms: int = 0
    event: RoomEventDraft | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """One itemized charge on a tab: a tip, or the seconds of one session at its rate."""

    kind: str
    line_id: str
    seq: int
    at_ms: int
    room: str
    amount_minor: int
    payout_bp: int
    share_minor: int
    seconds: int = 0
    rate_per_minute_minor: int = 0
    #: A tip's message as the viewer sent it ("" for none, and for sessions).
    message: str = ""
    #: Purchase lines only (kind ``purchase``): the catalog item's id and name, its kind
    #: (request or unlock), the purchase's state (metering/purchase_lifecycle.py) and, once
    #: voided, the amount it had (its ``amount_minor`` and ``share_minor`` are then 0).
    item_id: str = ""
    item_name: str = ""
    item_kind: str = ""
    state: str = ""
    voided_minor: int = 0
    #: A member's allowance (metering/allowances.py): the seconds of a session its free
    #: allowance covered (delivered, charged 0), and what the allowance saved on the line (a
    #: session's list price less its amount; a tip's discount); the session's show kind.
    covered_s: int = 0
    saved_minor: int = 0
    session_kind: str = ""


@dataclass(frozen=True, slots=True)
class SecondHold:
    """A further hold under a tab, placed to raise its cap at a processor that cannot raise a
    hold in place; the tab settles with one capture per hold."""

    auth_ref: str
    amount_minor: int
    capture_before_ms: int


@dataclass(frozen=True, slots=True)
class Tab:
    """A tab as read in one consistent snapshot, with its itemized lines in order."""

    ref: TabRef
    currency: str
    state: TabState
    cap_minor: int
    accrued_minor: int
    version: int
    auth_ref: str
    capture_before_ms: int
    opened_at_ms: int
    active_at_ms: int
    freeze_reason: str = ""
    frozen_at_ms: int = 0
    #: When less than the smallest tip first remained (0: not exhausted). Starts the
    #: ``cap_reached`` settlement trigger; raising the cap clears it.
    exhausted_at_ms: int = 0
    #: The per-minute rates of the tab's running sessions, summed.
    burn_minor_per_minute: int = 0
    #: The processor holding the authorization ("" : the deployment's first processor).
    processor: str = ""
    #: The cap the tab opened with: the amount of the first hold (``auth_ref``).
    opened_cap_minor: int = 0
    #: The card token (or stored purchase) the first hold was placed on.
    payment_method: str = ""
    #: Further holds, where the processor raised the cap by a second authorization.
    second_holds: tuple[SecondHold, ...] = ()
    lines: tuple[Line, ...] = field(default=())

    @property
    def remaining_minor(self) -> int:
        """How much can still be spent."""
        return max(self.cap_minor - self.accrued_minor, 0)

    @property
    def balance(self) -> Balance:
        """The live part of the tab."""
        return Balance(
            self.state,
            self.cap_minor,
            self.accrued_minor,
            self.version,
            self.burn_minor_per_minute,
        )
