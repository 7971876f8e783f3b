"""The sync facade against a real server: prices, shows, the tab it tracks, pushed messages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from clients.errors import Refused
from clients.protocol import RateView, TabUpdate
from clients.sync import SyncClient
from clients.tickets import Role
from server.embedded_redis import RedisServer
from tests.support.processes import API_KEY, TipmeterProcess, ticket


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TipmeterProcess]:
    """One tipmeter process on the session's Redis."""
    process = TipmeterProcess(
        ["serve"], {"TIPMETER_REDIS_URL": redis_server.url}, cwd=tmp_path_factory.mktemp("sync")
    ).start()
    try:
        yield process
    finally:
        process.stop()


def open_tab(server: TipmeterProcess, customer: str, cap_minor: int) -> str:
    """Open a tab through the HTTP API; its id."""
    response = httpx.post(
        server.base_url + "/v1/tabs",
        json={
            "customer": customer,
            "currency": "USD",
            "cap_minor": cap_minor,
            "payment_method": "tok_visa",
        },
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": f"open-{customer}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    tab_id: str = response.json()["tab_id"]
    return tab_id


def test_a_model_sets_prices_and_a_viewer_watches_a_show(server: TipmeterProcess) -> None:
    tab_id = open_tab(server, "sync-show", cap_minor=10_000)
    with SyncClient(server.ws_url, ticket(Role.MODEL, "sync-room")) as model:
        assert model.set_rates({"private": RateView(1_200)}).status == "applied"
        with SyncClient(server.ws_url, ticket(Role.VIEWER, "sync-show", currency="USD")) as viewer:
            assert viewer.tab is not None
            assert (viewer.tab.tab_id, viewer.tab.accrued_minor) == (tab_id, 0)
            started = viewer.start_session("sync-room", "private", session_id="show-sync-1")
            assert started.session is not None
            assert started.session.rate_per_minute_minor == 1_200
            # The first second is prepaid: 1,200 a minute is 20 a second.
            assert viewer.tab.accrued_minor == 20
            assert viewer.tab.burn_minor_per_minute == 1_200
            # Every second is billed in advance, and the viewer sees each tick as a `tab` push.
            updates = []
            while viewer.tab.accrued_minor < 40:
                message = viewer.next_message(5)
                assert message is not None, "no tab update in 5 s"
                if isinstance(message, TabUpdate):
                    updates.append(message)
            assert updates
            assert viewer.tab.version == max(update.tab.version for update in updates)
            stopped = viewer.stop_session("show-sync-1")
            assert stopped.session is not None
            assert stopped.session.state == "ended"
            assert stopped.session.end_reason == "stopped"
            assert viewer.tab.burn_minor_per_minute == 0


def test_refusals_raise_with_their_code_and_carry_the_tab(server: TipmeterProcess) -> None:
    open_tab(server, "sync-cap", cap_minor=100)
    with SyncClient(server.ws_url, ticket(Role.MODEL, "sync-room-2")) as model:
        with pytest.raises(Refused) as invalid:
            model.set_rates({"dinner": RateView(600)})
        assert invalid.value.code == "invalid_kind"
        with SyncClient(server.ws_url, ticket(Role.VIEWER, "sync-cap", currency="USD")) as viewer:
            with pytest.raises(Refused) as not_allowed:
                viewer.set_rates({"private": RateView(600)})
            assert not_allowed.value.code == "not_allowed"
            viewer.tip("sync-room-2", 60, "USD")
            with pytest.raises(Refused) as over_cap:
                viewer.tip("sync-room-2", 60, "USD")
            assert over_cap.value.code == "over_cap"
            assert viewer.tab is not None
            assert viewer.tab.remaining_minor == 40


def test_next_message_returns_none_when_nothing_comes(server: TipmeterProcess) -> None:
    with SyncClient(server.ws_url, ticket(Role.MODEL, "sync-quiet")) as model:
        model.subscribe("sync-quiet")
        assert model.next_message(0.2) is None
