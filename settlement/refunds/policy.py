"""A site's refund policy, and the one pure function that decides a refund request.

:func:`decide` takes the policy, the request (which lines, how much) and the facts of the
tab's lines from the ledger (kind, show kind, billed seconds, what is left to refund), and
returns a :class:`Decision`: ``allowed`` (with the amount per line), ``needs_consent`` (the
model must accept; the amount per line if she does) or ``refused`` (with the reason), and in
every case the most the policy allows without consent. It does no I/O and reads no clock: the
time is an argument. The decision is returned to the caller and recorded with the refund.

Order of precedence (the first that applies decides):

1. a support override (written reason, its own permission): allowed, up to what is left;
2. ``refund_window_closed``: the capture is older than the window;
3. ``exceeds_refundable``: more is asked of a line (or the tab) than is left of it;
4. ``not_refundable``: a line the policy never refunds (spy shows, by default);
5. within the policy on every line: allowed;
6. otherwise ``needs_consent`` (tips, and shows beyond the policy), if consent is enabled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from settlement.refunds.split import Room, spread

#: How long after the capture a refund may be asked for.
WINDOW_S_DEFAULT: Final = 48 * 3600
#: Watched seconds of a private or cam2cam show up to which it is refunded in full.
SHOW_FULL_REFUND_S_DEFAULT: Final = 300
#: How long a request waits for the model's answer before it counts as unanswered.
CONSENT_TIMEOUT_S_DEFAULT: Final = 24 * 3600


class Verdict(StrEnum):
    """What the policy decided."""

    ALLOWED = "allowed"
    NEEDS_CONSENT = "needs_consent"
    REFUSED = "refused"


class Unanswered(StrEnum):
    """What becomes of a consent request the model did not answer in time."""

    DECLINE = "decline"
    ESCALATE = "escalate"


class ModelShare(StrEnum):
    """What a dispute does with the model's share of the disputed lines while it is open."""

    #: Taken back at once (into ``disputes_open``); a won dispute gives it back.
    TAKE_BACK = "take_back"
    #: Held in her ``model_held`` account: not payable, given back if won, forfeited if lost.
    HOLD = "hold"


class Reason(StrEnum):
    """The refund reason codes a request may carry."""

    CUSTOMER_REQUEST = "customer_request"
    SHOW_NOT_DELIVERED = "show_not_delivered"
    TECHNICAL_PROBLEM = "technical_problem"
    DUPLICATE = "duplicate"
    FRAUD = "fraud"
    GOODWILL = "goodwill"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    """A site's refund policy (docs/refunds.md has the table)."""

    window_s: int = WINDOW_S_DEFAULT
    show_full_refund_s: int = SHOW_FULL_REFUND_S_DEFAULT
    spy_refundable: bool = False
    #: Whether tips and shows beyond the policy may be refunded with the model's consent.
    consent_enabled: bool = True
    consent_timeout_s: int = CONSENT_TIMEOUT_S_DEFAULT
    unanswered: Unanswered = Unanswered.DECLINE


@dataclass(frozen=True, slots=True)
class LineFacts:
    """One captured line as the ledger knows it."""

    line_id: str
    seq: int
    kind: str
    room: str
    amount_minor: int
    #: What is left to take back (captured less refunded and disputed).
    remaining_minor: int
    #: The show's kind for a session line (``private``, ``spy``, ``cam2cam``); "" for a tip.
    show_kind: str = ""
    seconds: int = 0


@dataclass(frozen=True, slots=True)
class RefundAsk:
    """What is asked: ``lines`` (line id → amount, None: what is left of it) and/or a total
    ``amount_minor`` (None: the whole of the lines named, or of the tab)."""

    captured_at_ms: int
    now_ms: int
    lines: Mapping[str, int | None] = field(default_factory=dict)
    amount_minor: int | None = None
    override: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: verdict, the amount per line if carried out, the most the policy
    allows without consent, and the reason (refusal code, or why consent is needed)."""

    verdict: Verdict
    amount_minor: int
    lines: tuple[tuple[str, int], ...] = ()
    policy_max_minor: int = 0
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        """The decision as recorded and returned."""
        return {
            "verdict": str(self.verdict),
            "amount_minor": self.amount_minor,
            "policy_max_minor": self.policy_max_minor,
            "reason": self.reason,
            "lines": [{"line_id": line, "amount_minor": amount} for line, amount in self.lines],
        }


def policy_max(policy: RefundPolicy, line: LineFacts) -> int:
    """The most of ``line`` the policy refunds without the model's consent.

    A tip: nothing. A spy show: nothing unless spy shows are refundable. A private or cam2cam
    show watched at most ``show_full_refund_s``: all of it; watched longer: the part billed for
    the first ``show_full_refund_s`` seconds, ``floor(amount × full_s / seconds)``, less what was
    taken back already.
    """
    if line.kind != "session":
        return 0
    if line.show_kind == "spy" and not policy.spy_refundable:
        return 0
    if line.seconds <= policy.show_full_refund_s:
        return line.remaining_minor
    allowed = line.amount_minor * policy.show_full_refund_s // line.seconds
    taken = line.amount_minor - line.remaining_minor
    return max(0, min(line.remaining_minor, allowed - taken))


def _never(policy: RefundPolicy, line: LineFacts) -> bool:
    return line.kind == "session" and line.show_kind == "spy" and not policy.spy_refundable


def _refused(reason: str, policy_max_minor: int = 0) -> Decision:
    return Decision(Verdict.REFUSED, 0, policy_max_minor=policy_max_minor, reason=reason)


def decide(policy: RefundPolicy, ask: RefundAsk, facts: Sequence[LineFacts]) -> Decision:
    """Decide ``ask`` against ``policy`` over the tab's lines ``facts`` (see the module
    docstring for the order of precedence). Pure: same arguments, same decision."""
    by_id = {line.line_id: line for line in facts}
    unknown = [line_id for line_id in ask.lines if line_id not in by_id]
    if unknown:
        return _refused("line_not_found")
    # Latest lines first: an amount refund gives back the end of the evening first.
    chosen = sorted(
        (by_id[line_id] for line_id in ask.lines) if ask.lines else facts,
        key=lambda line: -line.seq,
    )
    limits = {line.line_id: policy_max(policy, line) for line in chosen}
    policy_total = sum(limits.values())
    if ask.override:
        policy_total = sum(line.remaining_minor for line in chosen)
    elif ask.now_ms - ask.captured_at_ms > policy.window_s * 1000:
        return _refused("refund_window_closed")
    wanted: dict[str, int] = {}
    for line in chosen:
        explicit = ask.lines.get(line.line_id)
        if explicit is not None and explicit > line.remaining_minor:
            return _refused("exceeds_refundable", policy_total)
        wanted[line.line_id] = line.remaining_minor if explicit is None else explicit
    if ask.amount_minor is not None:
        available = [Room(line.line_id, wanted[line.line_id]) for line in chosen]
        if ask.amount_minor > sum(wanted.values()):
            return _refused("exceeds_refundable", policy_total)
        # Within the policy first, then the rest: the least that needs consent.
        within = [Room(r.line_id, min(r.available_minor, limits[r.line_id])) for r in available]
        first = spread(min(ask.amount_minor, sum(r.available_minor for r in within)), within)
        rest = [Room(r.line_id, r.available_minor - first.get(r.line_id, 0)) for r in available]
        second = spread(ask.amount_minor - sum(first.values()), rest)
        wanted = {
            line.line_id: first.get(line.line_id, 0) + second.get(line.line_id, 0)
            for line in chosen
        }
    wanted = {line_id: amount for line_id, amount in wanted.items() if amount > 0}
    total = sum(wanted.values())
    if total == 0:
        return _refused("nothing_to_refund", policy_total)
    lines = tuple(sorted(wanted.items()))
    if ask.override:
        return Decision(Verdict.ALLOWED, total, lines, policy_total, "support_override")
    if any(_never(policy, by_id[line_id]) for line_id in wanted):
        return _refused("not_refundable", policy_total)
    beyond = [line_id for line_id, amount in wanted.items() if amount > limits[line_id]]
    if not beyond:
        return Decision(Verdict.ALLOWED, total, lines, policy_total, "within_policy")
    if not policy.consent_enabled:
        return _refused("beyond_policy", policy_total)
    tips = any(by_id[line_id].kind != "session" for line_id in beyond)
    return Decision(
        Verdict.NEEDS_CONSENT,
        total,
        lines,
        policy_total,
        "tip_needs_consent" if tips else "beyond_show_policy",
    )
