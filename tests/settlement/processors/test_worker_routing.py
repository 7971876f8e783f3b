"""Two processors side by side in one deployment, in process: each tab is held, captured and
looked up at its own processor; a soft decline cascades, a hard one does not."""

from __future__ import annotations

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from settlement.gateway import AuthorizationStatus, DeclineReason, Outcome
from settlement.ledger.ledger import Ledger
from settlement.processors.cascade import RoutedHold, place_hold
from settlement.processors.registry import Processor, ProcessorRegistry
from settlement.processors.routing import RouteRequest
from settlement.processors.settings import ProcessorSpec
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.worker import SettleStatus
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, past_claim_bound, raised_by_second_hold


def _registry(
    clock: FakeClock, cascade_max: int = 1
) -> tuple[ProcessorRegistry, SandboxGateway, SandboxGateway]:
    a, b = SandboxGateway(clock=clock), SandboxGateway(clock=clock)
    registry = ProcessorRegistry(
        [
            Processor(ProcessorSpec("alpha", "sandbox"), a),
            Processor(ProcessorSpec("beta", "sandbox"), b),
        ],
        cascade_max=cascade_max,
    )
    return registry, a, b


async def _open(
    meter: Meter,
    registry: ProcessorRegistry,
    customer: str,
    *,
    card: str = "tok_visa",
    preferred: str = "",
) -> tuple[TabRef | None, RoutedHold]:
    tab_id = f"tab_{customer}"
    routed = await place_hold(
        registry,
        RouteRequest(route_key=tab_id, currency="USD", preferred=preferred),
        idempotency_key=f"auth:{tab_id}",
        payment_method=card,
        amount_minor=5_000,
        currency="USD",
    )
    if not routed.hold.approved:
        return None, routed
    opened = await meter.tabs.open(
        customer=customer,
        currency="USD",
        cap_minor=5_000,
        auth_ref=routed.hold.auth_ref,
        capture_before_ms=routed.hold.expires_at_ms,
        tab_id=tab_id,
        processor=routed.processor,
        processor_tried=routed.tried_text,
    )
    assert opened.code in (Code.APPLIED, Code.DUPLICATE)
    return TabRef(customer, tab_id), routed


async def test_every_call_for_a_tab_reaches_the_processor_that_holds_it(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    registry, a, b = _registry(clock)
    ref_a, _ = await _open(meter, registry, "ca", preferred="alpha")
    ref_b, _ = await _open(meter, registry, "cb", preferred="beta")
    assert ref_a is not None
    assert ref_b is not None
    for n, ref in enumerate((ref_a, ref_b)):
        assert (await meter.tip(ref, tip(f"t{n}", 100 + n))).code.ok
        await request_settlement(meter, ref, FreezeReason.MERCHANT)
    tab_a = await meter.tabs.read(ref_a)
    assert tab_a is not None
    assert tab_a.processor == "alpha"

    report = await make_worker(meter, registry, ledger).run_burst()

    assert report.statuses == {"settled": 2}
    assert [(c.auth_ref, c.amount_minor) for c in a.captures] == [(tab_a.auth_ref, 100)]
    assert [c.amount_minor for c in b.captures] == [101]
    held = await a.lookup_authorization(tab_a.auth_ref)
    assert held is not None
    assert held.status is AuthorizationStatus.CAPTURED
    assert await b.lookup_authorization(tab_a.auth_ref) is None


async def test_a_soft_decline_cascades_and_what_was_tried_is_recorded(
    meter: Meter, clock: FakeClock
) -> None:
    registry, a, _b = _registry(clock)
    a.decline_holds = DeclineReason.DO_NOT_HONOR
    ref, routed = await _open(meter, registry, "c1", preferred="alpha")
    assert ref is not None
    assert (routed.processor, routed.tried_text) == (
        "beta",
        "alpha:declined:do_not_honor;beta:approved",
    )
    stored = await meter.store.client.hget(keys.tab(ref.customer, ref.tab_id), "processor_tried")
    assert stored == routed.tried_text.encode()
    # A retry of the same open asks the same processors with the same keys: no second hold.
    _, again = await _open(meter, registry, "c1", preferred="alpha")
    assert again.hold == routed.hold


async def test_a_hard_decline_never_cascades(meter: Meter, clock: FakeClock) -> None:
    registry, _a, b = _registry(clock)
    ref, routed = await _open(
        meter, registry, "c2", card="tok_decline_stolen_card", preferred="alpha"
    )
    assert ref is None
    assert routed.tried_text == "alpha:declined:stolen_card"
    assert await b.lookup("auth:tab_c2") is None


async def test_cascading_is_off_unless_configured(meter: Meter, clock: FakeClock) -> None:
    registry, a, _b = _registry(clock, cascade_max=0)
    a.decline_holds = DeclineReason.DO_NOT_HONOR
    ref, routed = await _open(meter, registry, "c3", preferred="alpha")
    assert ref is None
    assert routed.tried_text == "alpha:declined:do_not_honor"


async def test_a_3ds_hold_waits_for_the_customer_and_the_same_request_then_finds_it(
    meter: Meter, clock: FakeClock
) -> None:
    registry, a, _ = _registry(clock)
    ref, routed = await _open(meter, registry, "c4", card="tok_3ds", preferred="alpha")
    assert ref is None
    assert routed.hold.outcome is Outcome.ACTION_REQUIRED
    assert routed.hold.action is not None
    assert routed.hold.action.client_secret
    assert a.complete_action(routed.hold.auth_ref)
    ref, again = await _open(meter, registry, "c4", card="tok_3ds", preferred="alpha")
    assert ref is not None
    assert (again.hold.outcome, again.hold.auth_ref) == (Outcome.APPROVED, routed.hold.auth_ref)


async def test_a_tab_at_a_processor_no_longer_configured_waits_instead_of_dead_lettering(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    registry, _, _ = _registry(clock)
    ref, _ = await _open(meter, registry, "c5", preferred="beta")
    assert ref is not None
    assert (await meter.tip(ref, tip("t", 100))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    only_alpha = ProcessorRegistry([next(iter(registry))])
    worker = make_worker(meter, only_alpha, ledger)
    for _ in range(5):  # more deliveries than FAST's deliveries_max
        report = await worker.run_burst(sweep=False)
        assert report.statuses == {SettleStatus.RETRY_LATER.value: 1}
        assert (report.left_pending, report.dead_lettered) == (1, 0)
        await past_claim_bound(meter)  # past FAST's claim bound, so the next burst reclaims it
    # The processor's settings are back: the tab settles there.
    restored = make_worker(meter, registry, ledger)
    assert (await restored.run_burst(sweep=False)).statuses == {"settled": 1}


async def _raised_by_second_hold(
    meter: Meter, clock: FakeClock, second_card: str
) -> tuple[TabRef, SandboxGateway, str, str]:
    """A tab at a sandbox without increments, raised from 5,000 to 8,000 by a second hold."""
    flat = SandboxGateway(clock=clock, incremental=False)
    ref, first, second = await raised_by_second_hold(meter, flat, second_card)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.auth_ref, [h.auth_ref for h in tab.second_holds]) == (first, [second])
    return ref, flat, first, second


async def test_a_tab_within_its_first_hold_captures_there_and_releases_the_second(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    ref, flat, first, second = await _raised_by_second_hold(meter, clock, "tok_visa")
    assert (await meter.tip(ref, tip("t1", 1_200))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, ProcessorRegistry.single(flat), ledger).run_burst()
    assert report.statuses == {"settled": 1}
    assert [(c.auth_ref, c.amount_minor) for c in flat.captures] == [(first, 1_200)]
    released = await flat.lookup_authorization(second)
    assert released is not None
    assert released.status is AuthorizationStatus.VOIDED


async def test_a_decline_after_a_committed_capture_waits_for_an_operator(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    ref, flat, first, _ = await _raised_by_second_hold(
        meter, clock, "tok_capture_decline_insufficient_funds"
    )
    assert (await meter.tip(ref, tip("t1", 6_000))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    worker = make_worker(meter, ProcessorRegistry.single(flat), ledger)
    report = await worker.run_burst()
    # Neither settled nor failed: 5,000 moved on the first hold, 1,000 could not.
    assert (report.acked, report.left_pending) == (0, 1)
    assert [(c.auth_ref, c.amount_minor) for c in flat.captures] == [(first, 5_000)]
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.state.value == "settling"
    await past_claim_bound(meter)  # past FAST's claim bound: the next burst takes the entry again
    again = await worker.run_burst()
    assert again.left_pending == 1
    assert len(flat.captures) == 1  # the first capture was replayed, never repeated
