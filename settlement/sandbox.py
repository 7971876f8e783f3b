"""The sandbox gateway: a deterministic payment processor that ships with the product.

It keeps its ledger in memory, decides by test card token, and can be told to fail in the ways
real processors fail, so that every path of settlement can be exercised without a network. Its
:attr:`SandboxGateway.captures` list is the ground truth of what was charged: tests count
double charges there.

Test cards (the ``payment_method`` of :meth:`SandboxGateway.authorize`):

==================================  ========================================================
token                               behaviour
==================================  ========================================================
``tok_visa``, ``tok_mastercard``    approves everything
``tok_decline_<reason>``            the hold is declined with ``<reason>``
``tok_capture_decline_<reason>``    the hold is approved; its capture is declined
``tok_increment_decline``           the hold is approved; raising it is declined
                                    (``insufficient_funds``)
``tok_3ds``                         the hold needs the customer (3-D Secure):
                                    ``action_required``; once :meth:`SandboxGateway.
                                    complete_action` ran, the same request finds it approved
==================================  ========================================================

A sandbox can also be given a behaviour of its own, so that two sandboxes serve one deployment
as two different processors would: ``decline_holds`` declines every hold with that reason (a
processor whose acquirer refuses the traffic), and ``incremental=False`` makes it a processor
without incremental authorization (a raise then takes a second hold).

``<reason>`` is any :class:`~settlement.gateway.DeclineReason` value, e.g.
``tok_decline_insufficient_funds`` or ``tok_capture_decline_stolen_card``.

Faults (:meth:`SandboxGateway.inject`): ``timeout_after_commit`` (the operation is recorded,
then the call raises GatewayUnavailable), ``fail_before_commit`` (the call raises
GatewayUnavailable and records nothing), ``slow`` (the call waits ``slow_s`` first),
``slow_after_commit`` (the operation is recorded, then the reply waits ``slow_s``: a caller
killed meanwhile never learns the outcome) and ``hang`` (the call waits ``hang_s`` before
anything, as a processor that stopped answering). ``latency_s`` delays every call, so that
crash tests can kill callers while calls are in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import orjson

from metering.clock import Clock, SystemClock
from metering.money import is_currency, is_positive_amount
from settlement.gateway import (
    Authorization,
    AuthorizationStatus,
    Capabilities,
    CaptureResult,
    CustomerAction,
    DeclineReason,
    GatewayRequestError,
    GatewayUnavailable,
    Hold,
    Outcome,
    RefundResult,
    VoidResult,
)

#: How long a sandbox hold lasts: seven days, like most card networks' authorizations.
HOLD_TTL_MS_DEFAULT: Final = 7 * 24 * 3600 * 1000
APPROVING_CARDS: Final = frozenset({"tok_visa", "tok_mastercard"})
INCREMENT_DECLINE_CARD: Final = "tok_increment_decline"
ACTION_CARD: Final = "tok_3ds"

Result = Hold | CaptureResult | VoidResult | RefundResult
R = TypeVar("R", Hold, CaptureResult, VoidResult, RefundResult)


class Fault(StrEnum):
    """A way for the next call of an operation to fail."""

    TIMEOUT_AFTER_COMMIT = "timeout_after_commit"
    FAIL_BEFORE_COMMIT = "fail_before_commit"
    SLOW = "slow"
    SLOW_AFTER_COMMIT = "slow_after_commit"
    HANG = "hang"


@dataclass
class _HoldRecord:
    card: str
    amount_minor: int
    currency: str
    expires_at_ms: int
    captured_minor: int = 0
    voided: bool = False
    capture_id: str = ""
    action_pending: bool = False


@dataclass
class _CaptureRecord:
    auth_ref: str
    amount_minor: int
    currency: str
    refunded_minor: int = 0


@dataclass(frozen=True, slots=True)
class CaptureLogEntry:
    """One committed capture: what a card statement would show."""

    capture_id: str
    auth_ref: str
    amount_minor: int
    currency: str
    idempotency_key: str


@dataclass
class SandboxGateway:
    """An in-memory, deterministic implementation of :class:`settlement.gateway.Gateway`."""

    clock: Clock = field(default_factory=SystemClock)
    hold_ttl_ms: int = HOLD_TTL_MS_DEFAULT
    slow_s: float = 2.0
    hang_s: float = 3_600.0
    latency_s: float = 0.0
    #: Decline every hold with this reason (a processor of another behaviour).
    decline_holds: DeclineReason | None = None
    #: Whether holds can be raised in place (incremental authorization).
    incremental: bool = True
    captures: list[CaptureLogEntry] = field(default_factory=list)
    _holds: dict[str, _HoldRecord] = field(default_factory=dict)
    _captures: dict[str, _CaptureRecord] = field(default_factory=dict)
    _keys: dict[str, tuple[tuple[object, ...], Result]] = field(default_factory=dict)
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    #: Where every committed call is appended (one JSON line each, with the state of the
    #: holds and captures it changed), replayed at start: the processor's own record survives
    #: a restart. None: memory only (tests of one process).
    journal_path: Path | None = None
    _journal: IO[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.journal_path is not None:
            self._journal = _open_journal(self.journal_path)
            for line in self._journal.read().splitlines():
                if line.strip():
                    self._replay_entry(orjson.loads(line))

    def close(self) -> None:
        """Close the journal (the lock on it is released)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _write(self, key: str, result: Result | None, params: tuple[object, ...] = ()) -> None:
        """Journal one change before anyone learns of it: the call's key and answer (if any)
        and the state, after the change, of every hold and capture the answer names."""
        if self._journal is None:
            return
        auth_refs = {str(p) for p in params[1:2] if isinstance(p, str) and p in self._holds}
        capture_ids: set[str] = set()
        logged = None
        if isinstance(result, Hold | VoidResult) and result.auth_ref in self._holds:
            auth_refs.add(result.auth_ref)
        if isinstance(result, CaptureResult) and result.approved:
            capture_ids.add(result.capture_id)
            logged = dataclasses.asdict(self.captures[-1])
        if isinstance(result, RefundResult):
            capture_ids.add(result.capture_id)
        entry = {
            "key": key,
            "params": list(params),
            "result": encode_result(result),
            "holds": {ref: dataclasses.asdict(self._holds[ref]) for ref in sorted(auth_refs)},
            "captures": {
                cid: dataclasses.asdict(self._captures[cid])
                for cid in sorted(capture_ids)
                if cid in self._captures
            },
            "logged": logged,
        }
        self._journal.write(orjson.dumps(entry) + b"\n")
        self._journal.flush()

    def _replay_entry(self, entry: dict[str, Any]) -> None:
        for ref, hold in entry["holds"].items():
            self._holds[ref] = _HoldRecord(**hold)
        for cid, capture in entry["captures"].items():
            self._captures[cid] = _CaptureRecord(**capture)
        if entry["logged"] is not None:
            self.captures.append(CaptureLogEntry(**entry["logged"]))
        result = decode_result(entry["result"])
        if result is not None:
            self._keys[entry["key"]] = (tuple(entry["params"]), result)

    @property
    def capabilities(self) -> Capabilities:
        """Everything, but incremental authorization only if ``incremental``."""
        return Capabilities(incremental_authorization=self.incremental, customer_action=True)

    def complete_action(self, auth_ref: str) -> bool:
        """The customer passed the 3-D Secure challenge of hold ``auth_ref`` (False: no such
        pending hold)."""
        hold = self._holds.get(auth_ref)
        if hold is None or not hold.action_pending:
            return False
        hold.action_pending = False
        self._write("", None, ("complete_action", auth_ref))
        return True

    def inject(self, operation: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` (``"capture"`` …) fail with ``fault``."""
        self._faults.setdefault(operation, []).extend([fault] * times)

    async def _before(self, operation: str) -> Fault | None:
        pending = self._faults.get(operation)
        fault = pending.pop(0) if pending else None
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_s)
        if fault is Fault.HANG:
            await asyncio.sleep(self.hang_s)
        if fault is Fault.FAIL_BEFORE_COMMIT:
            raise GatewayUnavailable(f"sandbox: {operation} failed before commit")
        return fault

    def _replay(self, key: str, params: tuple[object, ...]) -> Result | None:
        recorded = self._keys.get(key)
        if recorded is None:
            return None
        if recorded[0] != params:
            raise GatewayRequestError(f"idempotency key {key!r} reused with other parameters")
        return recorded[1]

    async def _commit(
        self, key: str, params: tuple[object, ...], result: R, fault: Fault | None
    ) -> R:
        self._write(key, result, params)
        self._keys[key] = (params, result)
        if fault is Fault.TIMEOUT_AFTER_COMMIT:
            raise GatewayUnavailable("sandbox: committed, but the answer was lost")
        if fault is Fault.SLOW_AFTER_COMMIT:
            await asyncio.sleep(self.slow_s)
        return result

    @staticmethod
    def _id(prefix: str, key: str) -> str:
        return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    def _hold(self, auth_ref: str) -> _HoldRecord:
        hold = self._holds.get(auth_ref)
        if hold is None:
            raise GatewayRequestError(f"no hold {auth_ref!r}")
        return hold

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """Place a hold; test cards decide the outcome (see the module docstring)."""
        if not is_positive_amount(amount_minor) or not is_currency(currency):
            raise GatewayRequestError("authorize needs a positive amount and a known currency")
        params: tuple[object, ...] = ("authorize", payment_method, amount_minor, currency)
        fault = await self._before("authorize")
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, Hold):
            return self._after_action(idempotency_key, replayed)
        reason = _declined_by(payment_method, "tok_decline_")
        if reason is None and not _known_card(payment_method):
            reason = DeclineReason.INVALID_CARD
        if reason is None and self.decline_holds is not None:
            reason = self.decline_holds
        if reason is not None:
            result = Hold(
                outcome=Outcome.DECLINED,
                currency=currency,
                decline_reason=reason,
                processor_ref=self._id("decl", idempotency_key),
                decline_code=reason.value,
            )
        else:
            auth_ref = self._id("auth", idempotency_key)
            expires = self.clock.now_ms() + self.hold_ttl_ms
            record = _HoldRecord(payment_method, amount_minor, currency, expires)
            self._holds[auth_ref] = record
            if payment_method == ACTION_CARD:
                record.action_pending = True
                action = CustomerAction(
                    "redirect", client_secret=f"{auth_ref}_secret", redirect_url=f"/3ds/{auth_ref}"
                )
                result = Hold(
                    Outcome.ACTION_REQUIRED,
                    auth_ref,
                    amount_minor,
                    currency,
                    processor_ref=auth_ref,
                    action=action,
                )
            else:
                result = Hold(
                    Outcome.APPROVED,
                    auth_ref,
                    amount_minor,
                    currency,
                    expires,
                    processor_ref=auth_ref,
                )
        return await self._commit(idempotency_key, params, result, fault)

    def _after_action(self, key: str, replayed: Hold) -> Hold:
        """A repeated hold request after the customer completed its challenge: approved now."""
        if replayed.outcome is not Outcome.ACTION_REQUIRED:
            return replayed
        record = self._holds[replayed.auth_ref]
        if record.action_pending:
            return replayed
        approved = Hold(
            Outcome.APPROVED,
            replayed.auth_ref,
            record.amount_minor,
            record.currency,
            record.expires_at_ms,
            processor_ref=replayed.auth_ref,
        )
        params = self._keys[key][0]
        self._write(key, approved, params)
        self._keys[key] = (params, approved)
        return approved

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Raise a hold to a new total; ``tok_increment_decline`` declines."""
        params: tuple[object, ...] = ("increment", auth_ref, amount_minor)
        fault = await self._before("increment")
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, Hold):
            return replayed
        hold = self._hold(auth_ref)
        if not self.incremental:
            raise GatewayRequestError("this processor has no incremental authorization")
        if hold.voided or hold.capture_id:
            raise GatewayRequestError(f"hold {auth_ref!r} is closed")
        if not is_positive_amount(amount_minor) or amount_minor < hold.amount_minor:
            raise GatewayRequestError("an increment raises the hold's total")
        if hold.card == INCREMENT_DECLINE_CARD:
            result = Hold(
                Outcome.DECLINED,
                auth_ref,
                hold.amount_minor,
                hold.currency,
                hold.expires_at_ms,
                DeclineReason.INSUFFICIENT_FUNDS,
                processor_ref=auth_ref,
            )
        else:
            hold.amount_minor = amount_minor
            result = Hold(
                Outcome.APPROVED,
                auth_ref,
                amount_minor,
                hold.currency,
                hold.expires_at_ms,
                processor_ref=auth_ref,
            )
        return await self._commit(idempotency_key, params, result, fault)

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture once and release the rest; ``tok_capture_decline_<reason>`` declines."""
        params: tuple[object, ...] = ("capture", auth_ref, amount_minor)
        fault = await self._before("capture")
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, CaptureResult):
            return replayed
        hold = self._hold(auth_ref)
        if hold.action_pending:
            raise GatewayRequestError(f"hold {auth_ref!r} waits for the customer's action")
        if hold.voided or hold.capture_id:
            raise GatewayRequestError(f"hold {auth_ref!r} was already captured or voided")
        if not is_positive_amount(amount_minor) or amount_minor > hold.amount_minor:
            raise GatewayRequestError("a capture takes a positive amount up to the hold")
        if self.clock.now_ms() >= hold.expires_at_ms:
            raise GatewayRequestError(f"hold {auth_ref!r} expired before its capture")
        reason = _declined_by(hold.card, "tok_capture_decline_")
        if reason is not None:
            result = CaptureResult(
                Outcome.DECLINED,
                decline_reason=reason,
                processor_ref=auth_ref,
                decline_code=reason.value,
            )
        else:
            capture_id = self._id("cap", idempotency_key)
            hold.capture_id = capture_id
            hold.captured_minor = amount_minor
            self._captures[capture_id] = _CaptureRecord(auth_ref, amount_minor, hold.currency)
            self.captures.append(
                CaptureLogEntry(capture_id, auth_ref, amount_minor, hold.currency, idempotency_key)
            )
            result = CaptureResult(
                Outcome.APPROVED,
                capture_id,
                amount_minor,
                hold.amount_minor - amount_minor,
                processor_ref=capture_id,
            )
        return await self._commit(idempotency_key, params, result, fault)

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Release a hold that was not captured."""
        params: tuple[object, ...] = ("void", auth_ref)
        fault = await self._before("void")
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, VoidResult):
            return replayed
        hold = self._hold(auth_ref)
        if hold.capture_id:
            raise GatewayRequestError(f"hold {auth_ref!r} was captured; refund instead")
        hold.voided = True
        result = VoidResult(
            auth_ref=auth_ref, released_minor=hold.amount_minor, processor_ref=auth_ref
        )
        return await self._commit(idempotency_key, params, result, fault)

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """Refund part or all of a capture; the refunds of a capture never exceed it."""
        params: tuple[object, ...] = ("refund", capture_id, amount_minor)
        fault = await self._before("refund")
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, RefundResult):
            return replayed
        capture = self._captures.get(capture_id)
        if capture is None:
            raise GatewayRequestError(f"no capture {capture_id!r}")
        if not is_positive_amount(amount_minor):
            raise GatewayRequestError("a refund takes a positive amount")
        if capture.refunded_minor + amount_minor > capture.amount_minor:
            raise GatewayRequestError("refunds would exceed the capture")
        capture.refunded_minor += amount_minor
        refund_id = self._id("re", idempotency_key)
        result = RefundResult(
            refund_id, capture_id, amount_minor, capture.refunded_minor, processor_ref=refund_id
        )
        return await self._commit(idempotency_key, params, result, fault)

    async def listed_captures(self) -> list[CaptureLogEntry]:
        """Every capture committed, in commit order (for reconciliation)."""
        return list(self.captures)

    async def lookup(self, idempotency_key: str) -> Result | None:
        """The result recorded for ``idempotency_key``, if a call with it ever committed."""
        recorded = self._keys.get(idempotency_key)
        return recorded[1] if recorded is not None else None

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """Where hold ``auth_ref`` stands now."""
        await self._before("lookup_authorization")
        hold = self._holds.get(auth_ref)
        if hold is None:
            return None
        if hold.capture_id:
            status = AuthorizationStatus.CAPTURED
        elif hold.voided:
            status = AuthorizationStatus.VOIDED
        elif hold.action_pending:
            status = AuthorizationStatus.ACTION_REQUIRED
        elif self.clock.now_ms() >= hold.expires_at_ms:
            status = AuthorizationStatus.EXPIRED
        else:
            status = AuthorizationStatus.HELD
        return Authorization(
            auth_ref=auth_ref,
            status=status,
            amount_minor=hold.amount_minor,
            currency=hold.currency,
            captured_minor=hold.captured_minor,
            capture_id=hold.capture_id,
            expires_at_ms=hold.expires_at_ms,
            processor_ref=auth_ref,
        )


def _known_card(card: str) -> bool:
    return (
        card in APPROVING_CARDS
        or card in (INCREMENT_DECLINE_CARD, ACTION_CARD)
        or _declined_by(card, "tok_capture_decline_") is not None
    )


def _declined_by(card: str, prefix: str) -> DeclineReason | None:
    if not card.startswith(prefix):
        return None
    try:
        return DeclineReason(card.removeprefix(prefix))
    except ValueError:
        return None


_KINDS: Final[dict[type, str]] = {
    Hold: "hold",
    CaptureResult: "capture",
    VoidResult: "void",
    RefundResult: "refund",
}


def encode_result(result: Result | None) -> dict[str, Any] | None:
    """A gateway result as JSON-ready data, tagged with its ``kind`` (the HTTP sandbox's wire
    format and the journal's)."""
    if result is None:
        return None
    return {"kind": _KINDS[type(result)], **dataclasses.asdict(result)}


def decode_result(data: Any) -> Result | None:
    """The inverse of :func:`encode_result`; raise GatewayRequestError if malformed."""
    if data is None:
        return None
    try:
        fields = dict(data)
        kind = fields.pop("kind")
        if kind in ("hold", "capture"):
            fields["outcome"] = Outcome(fields["outcome"])
            reason = fields.get("decline_reason")
            fields["decline_reason"] = DeclineReason(reason) if reason else None
        if kind == "hold" and fields.get("action") is not None:
            fields["action"] = CustomerAction(**fields["action"])
        cls = {"hold": Hold, "capture": CaptureResult, "void": VoidResult, "refund": RefundResult}
        result: Result = cls[kind](**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise GatewayRequestError(f"malformed gateway reply: {exc}") from exc
    return result


def _open_journal(path: Path) -> IO[bytes]:
    """Open (or create) the journal for reading and appending, locked to this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = path.open("a+b")
    try:
        fcntl.flock(journal, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        journal.close()
        raise GatewayRequestError(
            f"another process keeps the sandbox journal {path}; one sandbox per journal"
        ) from None
    os.chmod(path, 0o600)
    journal.seek(0)
    return journal
