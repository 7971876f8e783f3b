"""Locust users of tipmeter: viewers who tip, viewers in private shows, and models listening.

Theory of operation. Locust runs each user in a greenlet; gevent's monkey-patching (done by
``import locust``) makes the blocking sockets of :class:`clients.sync.SyncClient` and
``http.client`` cooperative, so a user is written as plain blocking code. Each user plays one
person: a viewer has a customer id, a Post Pay tab and one WebSocket connection; a model has a
room and her console's connection. The generator also plays the cam-site backend
(:mod:`loadtest.backend`): it mints the tickets and opens, raises and settles the tabs.

Every request/answer round trip is timed and reported through locust's ``request`` event under
its own name (``ws``: connect, tip, session_start …; ``http``: open_tab, raise_cap, settle_tab),
a refusal as a failure named by its error code. Pushed messages are reported as ``push``:
``tip_delivered`` (a tip's delivery to its model, from the server's ``at_ms``) and
``session_tick`` (the time between two billing ticks a viewer sees in a show).

Choices are seeded (``LOADTEST_SEED``): a user's room and amounts come from its own generator,
seeded with the seed, its class and its spawn number. Settings: :mod:`loadtest.config`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import ClassVar, Final, TypeVar

from locust import User, constant, constant_throughput, task
from locust.env import Environment

from clients.errors import Disconnected, HandshakeRefused, Refused, TipmeterError
from clients.protocol import (
    Codec,
    ErrorCode,
    RateView,
    RoomEvent,
    SessionUpdate,
    TabUpdate,
    TabView,
    Warning,
)
from clients.sync import SyncClient
from clients.tickets import Role
from loadtest.backend import Backend, BackendError, Credentials
from loadtest.config import ConfigError, LoadConfig

log = logging.getLogger("tipmeter.loadtest")

T = TypeVar("T")

try:
    CONFIG: Final = LoadConfig.from_env(os.environ)
    CREDENTIALS: Final = Credentials.from_env(os.environ)
except ConfigError as exc:
    sys.exit(f"loadtest: {exc}")

CODEC: Final = Codec.MSGPACK if CONFIG.codec == "msgpack" else Codec.JSON
#: A model's listening task returns after this long, so that locust can stop her between two.
LISTEN_SLICE_S: Final = 1.0
#: Pushed messages a tipper reads between two tips at most (the rest wait for the next tip).
DRAIN_MESSAGES_MAX: Final = 100
#: Pause after a failed connection before the next attempt (the task would spin otherwise).
RECONNECT_PAUSE_S: Final = 1.0

#: What this locust process saw that is not a round trip: room events by type, warnings, shows
#: ended by the server. Logged when the test stops.
TALLY: Final = collections.Counter[str]()


class Failure(Exception):
    """A failed round trip, named by its code. Locust groups failures by ``repr``, so the repr
    is the bare code: ``over_cap``, ``timeout``, ``disconnected`` …"""

    def __repr__(self) -> str:
        return str(self.args[0])


def failure_code(exc: BaseException) -> str:
    """The name a failure is reported under."""
    match exc:
        case Refused() | HandshakeRefused() | BackendError():
            return exc.code
        case Disconnected():
            return "disconnected"
        case TimeoutError():
            return "timeout"
        case _:
            return "connection_error"


class Rooms:
    """Which rooms have their model online in this locust process: a show needs her there, so
    a ShowUser waits (bounded) for its room's model, who is spawned first but connects later."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._online = {name: threading.Event() for name in names}

    def set_online(self, room: str, online: bool) -> None:
        """Mark ``room``'s model as (no longer) connected."""
        if online:
            self._online[room].set()
        else:
            self._online[room].clear()

    def wait_online(self, room: str, timeout_s: float) -> bool:
        """Wait until ``room``'s model is connected; False after ``timeout_s``."""
        return self._online[room].wait(timeout_s)


ROOMS: Final = Rooms(CONFIG.room_names)
#: Users spawned so far by kind: a user's number seeds its choices.
_SPAWNED: Final[collections.defaultdict[str, itertools.count[int]]] = collections.defaultdict(
    itertools.count
)


class TipmeterUser(User):
    """What every user has: a seeded generator, the backend, and one connection at a time."""

    abstract = True
    #: Names this kind of user in customer ids and seeds.
    kind: ClassVar[str] = "user"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise ConfigError("pass the server's URL to locust: --host http://127.0.0.1:8000")
        self.index = next(_SPAWNED[self.kind])
        self.rng = random.Random(f"{CONFIG.seed}:{self.kind}:{self.index}")
        self.backend = Backend(self.host, CREDENTIALS, timeout_s=CONFIG.timeout_s)
        self.client: SyncClient | None = None

    def on_stop(self) -> None:
        """Close the connection (a show in progress ends ``viewer_left``)."""
        self.drop()
        self.backend.close()

    def drop(self) -> None:
        """Close the connection, if any; the next task connects again with a new ticket."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except (TipmeterError, OSError) as exc:
                log.debug("closing a connection failed: %s", exc)

    # -- reporting ------------------------------------------------------------------------

    def report(
        self, request_type: str, name: str, response_time_ms: float, failure: str | None = None
    ) -> None:
        """One request event: a round trip (or a push) and how it went."""
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=response_time_ms,
            response_length=0,
            exception=None if failure is None else Failure(failure),
            context={},
        )

    def ws(self, name: str, call: Callable[[SyncClient], T]) -> T | Refused | None:
        """Time and report one WebSocket round trip: its answer; the refusal (a failure under
        its code), for the caller to act on; or None when the connection failed (reported,
        and dropped)."""
        client = self.client
        if client is None:
            return None
        started = time.perf_counter()
        try:
            answer = call(client)
        except Refused as refused:
            self.report("ws", name, _ms_since(started), refused.code)
            return refused
        except (TipmeterError, OSError) as exc:
            self.report("ws", name, _ms_since(started), failure_code(exc))
            self.drop()
            return None
        self.report("ws", name, _ms_since(started))
        return answer

    def http(self, name: str, call: Callable[[Backend], T]) -> T | BackendError:
        """Time and report one call of the backend's HTTP API: its answer, or its error."""
        started = time.perf_counter()
        try:
            answer = call(self.backend)
        except BackendError as exc:
            self.report("http", name, _ms_since(started), exc.code)
            return exc
        self.report("http", name, _ms_since(started))
        return answer

    def connect(self, role: Role, subject: str, currency: str = "") -> bool:
        """Open this user's connection with a fresh ticket; report ``connect``."""
        client = SyncClient(
            self.backend.ws_url,
            self.backend.ticket(role, subject, currency),
            codec=CODEC,
            open_timeout_s=CONFIG.timeout_s,
        )
        started = time.perf_counter()
        try:
            client.connect()
        except (TipmeterError, OSError) as exc:
            self.report("ws", "connect", _ms_since(started), failure_code(exc))
            client.close()
            return False
        self.report("ws", "connect", _ms_since(started))
        self.client = client
        return True


class ViewerUser(TipmeterUser):
    """A viewer: a customer with a Post Pay tab in one room, raised or replaced when it runs low
    (as the site's page prompts the viewer to before it runs out)."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.customer = CONFIG.customer(self.kind, self.index)
        self.room = self.rng.choice(CONFIG.room_names)
        self.tabs_opened = 0
        self.tab_id: str | None = None
        #: The tab as the last HTTP answer showed it (the connection's view may be older).
        self.http_tab: TabView | None = None

    def ready(self) -> bool:
        """Open the tab, then the connection, if either is missing. False if one failed."""
        if self.tab_id is None:
            self.open_new_tab()
            if self.tab_id is None:
                time.sleep(RECONNECT_PAUSE_S)
                return False
        if self.client is None and not self.connect(Role.VIEWER, self.customer, CONFIG.currency):
            time.sleep(RECONNECT_PAUSE_S)
            return False
        return True

    def current_tab(self) -> TabView | None:
        """The newest view of the current tab, from the connection or from the HTTP API."""
        views = [self.http_tab, self.client.tab if self.client is not None else None]
        mine = [view for view in views if view is not None and view.tab_id == self.tab_id]
        return max(mine, key=lambda view: view.version, default=None)

    def open_new_tab(self) -> None:
        """Open a tab with ``LOADTEST_CAP_MINOR`` (report ``open_tab``)."""
        key = f"{self.customer}-tab{self.tabs_opened}"
        self.tabs_opened += 1
        opened = self.http(
            "open_tab",
            lambda backend: backend.open_tab(self.customer, CONFIG.currency, CONFIG.cap_minor, key),
        )
        if isinstance(opened, BackendError):
            if opened.code == "tab_already_open" and opened.tab_id is not None:
                self.tab_id, self.http_tab = opened.tab_id, None
            return
        self.tab_id, self.http_tab = opened.tab_id, opened

    def top_up(self, needed_minor: int) -> None:
        """Make room for ``needed_minor`` more: raise the cap by ``LOADTEST_CAP_MINOR`` (or
        more); past the server's largest cap, settle the tab and open a new one."""
        tab = self.current_tab()
        if tab is None or self.tab_id is None:
            self.open_new_tab()
            return
        tab_id = self.tab_id
        cap = max(tab.cap_minor + CONFIG.cap_minor, tab.accrued_minor + needed_minor)
        raised = self.http(
            "raise_cap", lambda backend: backend.raise_cap(self.customer, tab_id, cap)
        )
        if not isinstance(raised, BackendError):
            self.http_tab = raised
        elif raised.code == "cap_out_of_range":
            self.settle_and_reopen()
        elif raised.code == "tab_not_open":
            self.open_new_tab()

    def settle_and_reopen(self) -> None:
        """Settle the tab (report ``settle_tab``), then open a new one."""
        tab_id = self.tab_id
        if tab_id is not None:
            self.http("settle_tab", lambda backend: backend.settle(self.customer, tab_id))
        self.open_new_tab()

    def after_refusal(self, code: str, needed_minor: int) -> None:
        """Do what a viewer's page would after a refusal of a tip or a show."""
        if code in (ErrorCode.OVER_CAP, ErrorCode.INSUFFICIENT_CAP):
            self.top_up(needed_minor)
        elif code in (ErrorCode.NO_OPEN_TAB, ErrorCode.TAB_NOT_OPEN):
            self.open_new_tab()
        elif code == ErrorCode.LINES_FULL:
            self.settle_and_reopen()


class TipperUser(ViewerUser):
    """A viewer who tips their room ``LOADTEST_TIP_RATE`` times a second, amounts drawn from
    ``LOADTEST_TIP_MIN_MINOR`` … ``LOADTEST_TIP_MAX_MINOR``. Reports ``tip``."""

    kind = "tipper"
    weight = CONFIG.tipper_weight
    abstract = CONFIG.tipper_weight == 0
    wait_time = constant_throughput(CONFIG.tip_rate_per_s)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.tips = 0

    @task
    def tip(self) -> None:
        """One tip and its answer."""
        if not self.ready():
            return
        amount = self.rng.randint(CONFIG.tip_min_minor, CONFIG.tip_max_minor)
        tab = self.current_tab()
        if tab is not None and tab.remaining_minor < amount:
            self.top_up(amount)
        self.tips += 1
        tip_id = f"{self.customer}-t{self.tips}"
        answer = self.ws(
            "tip",
            lambda client: client.tip(
                self.room, amount, CONFIG.currency, tip_id=tip_id, timeout_s=CONFIG.timeout_s
            ),
        )
        if isinstance(answer, Refused):
            self.after_refusal(answer.code, amount)
        self.drain()

    def drain(self) -> None:
        """Read what the server pushed (this tab's updates) without waiting."""
        for _ in range(DRAIN_MESSAGES_MAX):
            client = self.client
            if client is None:
                return
            try:
                if client.next_message(0) is None:
                    return
            except (TipmeterError, OSError):
                self.drop()
                return


class ShowUser(ViewerUser):
    """A viewer in private shows: starts one in their room (``session_start``), stays
    ``LOADTEST_SHOW_S`` seconds receiving the tab's updates every second (``session_tick``), and
    stops it (``session_stop``); then pauses ``LOADTEST_SHOW_PAUSE_S``."""

    kind = "show"
    weight = CONFIG.show_weight
    abstract = CONFIG.show_weight == 0
    wait_time = constant(CONFIG.show_pause_s)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.shows = 0

    @task
    def show(self) -> None:
        """One show, from start to stop."""
        if not self.ready():
            return
        if not ROOMS.wait_online(self.room, CONFIG.timeout_s):
            log.warning("the model of %s is not online: starting the show anyway", self.room)
        cost = CONFIG.show_cost_minor()
        tab = self.current_tab()
        if tab is not None and tab.remaining_minor < cost:
            self.top_up(cost)
        self.shows += 1
        session_id = f"{self.customer}-s{self.shows}"
        answer = self.ws(
            "session_start",
            lambda client: client.start_session(
                self.room, CONFIG.show_kind, session_id=session_id, timeout_s=CONFIG.timeout_s
            ),
        )
        if isinstance(answer, Refused):
            self.after_refusal(answer.code, cost)
            return
        if answer is None:
            return
        accrued = answer.tab.accrued_minor if answer.tab is not None else 0
        if self.watch(session_id, time.monotonic() + CONFIG.show_s, accrued):
            return
        self.ws(
            "session_stop",
            lambda client: client.stop_session(session_id, timeout_s=CONFIG.timeout_s),
        )

    def watch(self, session_id: str, deadline: float, accrued_minor: int) -> bool:
        """Receive the show's pushes until ``deadline``; True if it ended before (by the
        server: reported as ``session_ended`` with the end reason, or the connection).

        A billing tick is a ``tab`` update whose accrued amount grew; ``session_tick`` is the
        time between two of them (the first only starts the clock: shows start between ticks).
        ``accrued_minor`` is the tab's as the show started.
        """
        last_tick: float | None = None
        accrued = accrued_minor
        while (left_s := deadline - time.monotonic()) > 0:
            client = self.client
            if client is None:
                return True
            try:
                message = client.next_message(left_s)
            except (TipmeterError, OSError) as exc:
                self.report("push", "session_tick", 0, failure_code(exc))
                self.drop()
                return True
            match message:
                case TabUpdate(tab=tab) if tab.tab_id == self.tab_id:
                    if tab.accrued_minor > accrued:
                        now = time.perf_counter()
                        if last_tick is not None:
                            self.report("push", "session_tick", (now - last_tick) * 1000)
                        last_tick = now
                    accrued = max(accrued, tab.accrued_minor)
                case SessionUpdate(session=session) if session.session_id == session_id:
                    reason = session.end_reason or "ended"
                    TALLY[f"show ended: {reason}"] += 1
                    self.report("push", "session_ended", 0, reason)
                    return True
                case Warning():
                    TALLY["low-credit warning"] += 1
        return False


class ModelUser(TipmeterUser):
    """A model's console, one per room (``LOADTEST_ROOMS``; spawned first): sets her prices
    (``set_rates``), follows her room (``subscribe``) and counts the events it gets, reporting
    each tip's delivery (``tip_delivered``: now minus the tip's ``at_ms``)."""

    kind = "model"
    fixed_count = CONFIG.rooms
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.room = CONFIG.room_names[self.index % CONFIG.rooms]

    def on_stop(self) -> None:
        """Leave the room."""
        ROOMS.set_online(self.room, False)
        super().on_stop()

    def go_online(self) -> bool:
        """Connect, set the prices of the shows and follow the room."""
        if not self.connect(Role.MODEL, self.room):
            return False
        rates = {CONFIG.show_kind: RateView(CONFIG.show_rate_minor)}
        set_rates = self.ws(
            "set_rates", lambda client: client.set_rates(rates, timeout_s=CONFIG.timeout_s)
        )
        subscribed = self.ws(
            "subscribe", lambda client: client.subscribe(self.room, timeout_s=CONFIG.timeout_s)
        )
        if set_rates is None or subscribed is None or isinstance(subscribed, Refused):
            self.drop()
            return False
        ROOMS.set_online(self.room, True)
        return True

    @task
    def listen(self) -> None:
        """Receive the room's events for a while."""
        if self.client is None and not self.go_online():
            time.sleep(RECONNECT_PAUSE_S)
            return
        deadline = time.monotonic() + LISTEN_SLICE_S
        while (left_s := deadline - time.monotonic()) > 0:
            client = self.client
            if client is None:
                return
            try:
                message = client.next_message(left_s)
            except (TipmeterError, OSError) as exc:
                self.report("push", "tip_delivered", 0, failure_code(exc))
                ROOMS.set_online(self.room, False)
                self.drop()
                return
            if isinstance(message, RoomEvent):
                self.received(message)

    def received(self, event: RoomEvent) -> None:
        """Count a room event; report a tip's delivery latency."""
        TALLY[f"room event: {event.event}"] += 1
        at_ms = event.data.get("at_ms")
        if event.event == "tip" and type(at_ms) is int:
            latency_ms = max(time.time_ns() / 1e6 - at_ms, 0.0)
            self.report("push", "tip_delivered", latency_ms)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
