"""Settings: every ``TIPMETER_*`` environment variable, read into one typed, frozen object.

Each setting is declared once, as a field of :class:`Settings` whose default is
:func:`server.setting.setting` (default, parser with its bounds, help); the environment is read,
and the README's configuration table rendered (``tipmeter config --markdown``), from those
declarations, and a test keeps the README equal to them. Rules that tie several settings
together live in :meth:`Settings.validate`. A malformed value stops the program with a
:class:`ConfigError` naming the variable, the value and what is expected.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from metering.clock import Clock, SystemClock
from metering.limits import Limits
from metering.store import ACK_WAIT_MS_DEFAULT, RedisTarget, Replication
from server.catalog import REQUEST_TTL_S_DEFAULT, parse_site_unlocks  # purchases (issue 17)
from server.errors import ConfigError
from server.setting import (
    PREFIX,
    choice,
    comma_list,
    integer,
    networks,
    path,
    render_table,
    seconds_list,
    secret_list,
    setting,
    text,
    url,
    variables,
)
from settlement.collection.collector import CollectionConfig
from settlement.collection.timer import SWEEP_INTERVAL_MS_DEFAULT
from settlement.config import SettlementConfig
from settlement.errors import SettlementMisuse
from settlement.ledger.db import DatabaseConfig
from settlement.notify.base import Channel, Notifier
from settlement.notify.log import LogNotifier
from settlement.notify.routing import ChannelNotifier
from settlement.notify.sms import HttpSmsNotifier, SmsConfig
from settlement.notify.smtp import SmtpConfig, SmtpNotifier
from settlement.processors.registry import LEGACY_KINDS, ProcessorRegistry, kind_fields
from settlement.processors.settings import (
    LIST_VARIABLE,
    ProcessorSpec,
    legacy_processor,
    parse_processors,
)
from settlement.processors.settings import PREFIX as PROCESSOR_PREFIX
from settlement.refunds.policy import (
    CONSENT_TIMEOUT_S_DEFAULT,
    SHOW_FULL_REFUND_S_DEFAULT,
    WINDOW_S_DEFAULT,
    RefundPolicy,
    Unanswered,
)
from settlement.webhooks import WebhookConfig

#: The largest amount of money a setting may name, in minor units.
MINOR_MAX: Final = 900_000_000_000
#: The single-gateway settings that a named list of processors replaces.
SINGLE_GATEWAY_FIELDS: Final = frozenset({"gateway", "gateway_url", "stripe_api_key"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server, worker and tools can be configured with.

    To add a setting, add a field here with :func:`setting` (see the README's "Adding a
    setting"); a rule tying it to other settings goes into :meth:`validate`.
    """

    host: str = setting(
        "127.0.0.1",
        text,
        "Address the HTTP and WebSocket server listens on.",
    )
    port: int = setting(
        8000,
        integer(1, 65535),
        "Port the server listens on.",
    )
    redis_url: str | None = setting(
        None,
        text,
        "One Redis node (`redis://host:port/0`, `rediss://…`, `unix:///path`). "
        "Unset (with no cluster nodes): the server starts its own private redis-server.",
    )
    redis_cluster_nodes: tuple[str, ...] = setting(
        (),
        comma_list,
        "Redis Cluster startup nodes, `host:port,host:port`. Exclusive with the URL.",
    )
    redis_connections_max: int = setting(
        64,
        integer(1, 10_000),
        "Connections one process opens to Redis at most (per node on a cluster).",
    )
    ack_replicas: int = setting(
        0,
        integer(0, 16),
        "Replicas that must hold a tip before it is acknowledged (Redis WAIT; 0: off). See "
        "docs/server.md, 'What an acknowledged tip survives'.",
    )
    ack_wait_ms: int = setting(
        ACK_WAIT_MS_DEFAULT,
        integer(1, 10_000),
        "How long a tip's acknowledgement waits for those replicas before it is answered "
        "unavailable (retryable), in milliseconds.",
    )
    redis_server_bin: str = setting(
        "redis-server",
        text,
        "The redis-server binary of the embedded default (a name on PATH or a path).",
    )
    data_dir: Path = setting(
        Path(".tipmeter"),
        path,
        "Folder of the embedded redis-server's append-only file and socket.",
    )
    log_level: str = setting(
        "info",
        choice("debug", "info", "warning", "error"),
        "Least severe level written to the JSON log on standard error.",
    )
    tip_min_minor: int = setting(
        1,
        integer(1, MINOR_MAX),
        "Smallest tip, in minor units (cents).",
    )
    tip_max_minor: int = setting(
        100_000,
        integer(1, MINOR_MAX),
        "Largest tip, in minor units.",
    )
    cap_min_minor: int = setting(
        100,
        integer(1, MINOR_MAX),
        "Smallest cap a tab may be opened with, in minor units.",
    )
    cap_max_minor: int = setting(
        1_000_000,
        integer(1, MINOR_MAX),
        "Largest cap a tab may reach, in minor units (at most 900,000,000,000).",
    )
    tab_lines_max: int = setting(
        10_000,
        integer(1, 1_000_000),
        "Itemized lines (tips and sessions) one tab may hold.",
    )
    room_events_max: int = setting(
        10_000,
        integer(100, 10_000_000),
        "Events kept in each room's stream (older ones are trimmed).",
    )
    payout_bp_default: int = setting(
        6_000,
        integer(0, 10_000),
        "Model's share of each charge in basis points, where the room sets none (6000 = 60%).",
    )
    message_chars_max: int = setting(
        255,
        integer(0, 255),
        "Longest tip message, in characters (the protocol allows 255).",
    )
    public_url: str | None = setting(
        None,
        url,
        "URL clients reach this server at (for links such as the event feed's `nextUrl`). "
        "Unset: `http://HOST:PORT`.",
    )
    ticket_secrets: tuple[str, ...] = setting(
        (),
        secret_list,
        "Secrets that sign connection tickets, comma-separated, 32+ characters each; the first "
        "signs, all verify (rotation). Every process must share them. Unset with the embedded "
        "Redis: generated once and kept in the data folder.",
    )
    ticket_issuers: tuple[str, ...] = setting(
        ("tipmeter",),
        comma_list,
        "Issuers whose tickets are accepted; the first names tickets the HTTP API mints.",
    )
    ticket_ttl_s_max: int = setting(
        300,
        integer(5, 3_600),
        "Longest life of a ticket (exp - iat), in seconds: the HTTP API mints none longer, "
        "and the WebSocket endpoint refuses longer ones (ticket_lifetime_too_long).",
    )
    api_keys: tuple[str, ...] = setting(
        (),
        secret_list,
        "Keys of the cam-site backend for the HTTP API (`Authorization: Bearer KEY`), "
        "comma-separated, 32+ characters each. Unset with the embedded Redis: generated once "
        "and kept in the data folder.",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        comma_list,
        "Browser origins allowed to open a WebSocket. Unset: this server's own pages only. "
        "Clients that send no Origin (not browsers) are not affected.",
    )
    frame_bytes_max: int = setting(
        4_096,
        integer(256, 1_048_576),
        "Largest WebSocket frame a client may send; larger ones close the connection (1009).",
    )
    tips_per_s_max: int = setting(
        10,
        integer(1, 10_000),
        "Tips one connection may send per second on average (token bucket).",
    )
    tips_burst_max: int = setting(
        20,
        integer(1, 100_000),
        "Tips one connection may send in a burst (the bucket's size).",
    )
    frames_per_s_max: int = setting(
        50,
        integer(1, 100_000),
        "Frames of any kind one connection may send per second (bucket of twice that).",
    )
    send_queue_frames_max: int = setting(
        256,
        integer(8, 100_000),
        "Frames waiting to be sent to one connection; a client that falls further behind is "
        "disconnected (4008) so it never slows anyone else.",
    )
    subscriptions_max: int = setting(
        8,
        integer(1, 1_000),
        "Rooms one connection may follow at once.",
    )
    connections_max: int = setting(
        15_000,
        integer(1, 1_000_000),
        "WebSocket connections one process accepts; more are refused with HTTP 503.",
    )
    ping_interval_s: int = setting(
        20,
        integer(1, 3_600),
        "Seconds between WebSocket pings the server sends.",
    )
    ping_timeout_s: int = setting(
        20,
        integer(1, 3_600),
        "Seconds without a pong before the server drops a connection.",
    )
    metrics_clients: tuple[str, ...] = setting(
        ("127.0.0.0/8", "::1/128"),
        networks,
        "IP networks allowed to read /metrics (others get 403 metrics_not_allowed); "
        "0.0.0.0/0,::/0 for anyone.",
    )
    show_ping_interval_ms: int = setting(
        1_000,
        integer(100, 60_000),
        "Milliseconds between pings to a viewer whose connection funds a running show, and to "
        "a model console.",
    )
    show_ping_timeout_ms: int = setting(
        3_000,
        integer(100, 60_000),
        "Milliseconds without a pong before such a connection is dropped and its shows end.",
    )
    drain_delay_s: int = setting(
        2,
        integer(0, 600),
        "On SIGTERM: seconds /readyz answers 503 before clients are told to reconnect.",
    )
    drain_s_max: int = setting(
        30,
        integer(1, 3_600),
        "On SIGTERM: seconds after which the process exits whatever remains.",
    )
    feed_timeout_s_max: int = setting(
        60,
        integer(0, 600),
        "Longest wait of the long-poll event feed (`?timeout=`), in seconds.",
    )
    feed_minor_per_token: int = setting(
        1,
        integer(1, 1_000_000),
        "Minor units per token in the event feed's `tokens` (rounded down).",
    )
    tick_ms: int = setting(
        1_000,
        integer(100, 10_000),
        "How often each process bills the sessions it owns, in milliseconds.",
    )
    session_lease_ms: int = setting(
        3_000,
        integer(1_000, 60_000),
        "A billing process's lease on its sessions; a session whose owner stopped renewing is "
        "ended (`owner_lost`) within about this plus one tick.",
    )
    warning_seconds: tuple[int, ...] = setting(
        (60, 10),
        seconds_list,
        "Low-credit warnings: seconds left at the tab's burn rate, comma-separated.",
    )
    rate_min_minor: int = setting(
        1,
        integer(1, 1_000_000),
        "Lowest per-minute price of a show a model may set, in minor units.",
    )
    rate_max_minor: int = setting(
        100_000,
        integer(1, 1_000_000),
        "Highest per-minute price of a show a model may set, in minor units.",
    )
    session_minimum_s_max: int = setting(
        3_600,
        integer(0, 86_400),
        "Longest minimum duration (charged at the start) a model may set, in seconds.",
    )
    sessions_per_tab_max: int = setting(
        4,
        integer(1, 100),
        "Sessions one tab may fund at the same time.",
    )
    settle_idle_timeout_ms: int = setting(
        900_000,
        integer(1_000, 30 * 86_400_000),
        "An open tab on which nothing was spent for this long is settled (trigger `idle`).",
    )
    settle_hold_margin_ms: int = setting(
        86_400_000,
        integer(0, 30 * 86_400_000),
        "An open tab whose card hold expires within this margin is settled (`hold_expiring`).",
    )
    settle_cap_grace_ms: int = setting(
        120_000,
        integer(0, 86_400_000),
        "Time a viewer has to raise an exhausted cap before the tab is settled (`cap_reached`).",
    )
    settle_capture_guard_ms: int = setting(
        60_000,
        integer(0, 86_400_000),
        "No capture is attempted on a hold expiring within this time; the tab is `expired`.",
    )
    settle_recheck_max_ms: int = setting(
        300_000,
        integer(1_000, 86_400_000),
        "The sweeper looks at every unsettled tab at least this often.",
    )
    settle_claim_idle_ms: int = setting(
        60_000,
        integer(1_000, 86_400_000),
        "A settlement a worker has not finished for this long is taken over by another "
        "(must exceed the gateway timeout).",
    )
    settle_deliveries_max: int = setting(
        8,
        integer(1, 1_000),
        "Attempts at one queue entry before it goes to the dead-letter stream.",
    )
    settle_concurrency_max: int = setting(
        16,
        integer(1, 10_000),
        "Tabs one worker settles at once.",
    )
    gateway: str = setting(
        "sandbox",
        choice(*LEGACY_KINDS),
        "Payment gateway of the worker: `sandbox` (in-process), `sandbox-http` "
        "(a `tipmeter sandbox-gateway` process) or `stripe`.",
    )
    gateway_url: str | None = setting(
        None,
        text,
        "Base URL of the `sandbox-http` gateway, e.g. `http://127.0.0.1:8100` (for `stripe`: "
        "the API's base URL, for emulators; unset: Stripe's).",
    )
    gateway_timeout_ms: int = setting(
        20_000,
        integer(100, 600_000),
        "Bound on one gateway call; past it the call is retried later with the same key.",
    )
    stripe_api_key: str | None = setting(
        None,
        text,
        "Secret key of the `stripe` gateway.",
    )
    processor_names: tuple[str, ...] = setting(
        (),
        comma_list,
        "Names of the processors serving this deployment (e.g. `eu,us,segpay`); each one is "
        "set by `TIPMETER_PROCESSOR_<NAME>_<FIELD>` variables (`KIND`, `CURRENCIES`, "
        "`COUNTRIES`, `PRODUCTS`, `WEIGHT`, the kind's own: docs/processors.md). Unset: the "
        "`TIPMETER_GATEWAY` settings describe the one processor.",
        variable="TIPMETER_PROCESSORS",
    )
    #: Read from ``TIPMETER_PROCESSOR_<NAME>_<FIELD>`` (see settlement.processors.settings).
    processors: tuple[ProcessorSpec, ...] = ()
    processors_cascade_max: int = setting(
        0,
        integer(0, 31),
        "Further eligible processors a hold is tried at after a soft decline (never after a "
        "hard one). 0: no cascading.",
    )
    webhook_url: str | None = setting(
        None,
        text,
        "Where `tab.settled` and `tab.settlement_failed` are POSTed. Unset: no webhooks.",
    )
    webhook_secret: str | None = setting(
        None,
        text,
        "Shared secret that signs webhooks (HMAC-SHA256, `Tipmeter-Signature` header).",
    )
    paylink_secret: str | None = setting(
        None,
        text,
        "Secret that signs collection pay links (docs/collection.md). Unset: derived from the "
        "first ticket secret.",
    )
    smtp_host: str | None = setting(
        None,
        text,
        "Mail server that sends pay links by e-mail. Unset: e-mails are only logged (without "
        "the link).",
    )
    smtp_port: int = setting(
        25,
        integer(1, 65535),
        "The mail server's port.",
    )
    smtp_sender: str = setting(
        "tipmeter@localhost",
        text,
        "The From address of those e-mails.",
    )
    sms_url: str | None = setting(
        None,
        text,
        "HTTP SMS provider that sends pay links by SMS (docs/collection.md). Unset: SMS are "
        "only logged (without the link).",
    )
    sms_api_key: str = setting(
        "",
        text,
        "The SMS provider's API key.",
    )
    webhook_attempts_max: int = setting(
        10,
        integer(1, 100),
        "Delivery attempts per webhook (exponential backoff from 1 s, at most 1 h apart) "
        "before it goes to the dead-letter stream.",
    )
    collection_sweep_interval_ms: int = setting(
        SWEEP_INTERVAL_MS_DEFAULT,
        integer(100, 86_400_000),
        "How often each settlement worker sweeps collection (opens cases, runs due retries, "
        "closes spent cases; one worker at a time). Its webhooks are relayed every second.",
    )
    sandbox_port: int = setting(
        8100,
        integer(1, 65535),
        "Port `tipmeter sandbox-gateway` listens on (on TIPMETER_HOST).",
    )
    sandbox_latency_ms: int = setting(
        0,
        integer(0, 60_000),
        "Delay the sandbox gateway adds to every call (for load and crash tests).",
    )
    worker: str = setting(
        "auto",
        choice("auto", "on", "off"),
        "Run a settlement worker inside the server process. `auto`: in the embedded default only "
        "(`make run` settles tabs by itself); `on`: also with a configured Redis; `off`: run "
        "`tipmeter worker` processes instead (production).",
    )
    database_url: str | None = setting(
        None,
        text,
        "The ledger's PostgreSQL (`postgresql://user@host/db`, libpq's URL form). Unset: the "
        "server starts its own private PostgreSQL in the data folder.",
    )
    database_connections_max: int = setting(
        10,
        integer(1, 1_000),
        "Connections one process opens to the ledger database at most.",
    )
    postgres_bin_dir: str | None = setting(
        None,
        text,
        "Folder of the embedded PostgreSQL's `postgres` and `initdb`. Unset: the newest "
        "`/usr/lib/postgresql/<version>/bin`, else `PATH`.",
    )
    redis_retention_s: int = setting(
        86_400,
        integer(1, 30 * 86_400),
        "How long a settled (or failed, voided, expired) tab's Redis keys live once the ledger "
        "holds its outcome; the ledger answers after that.",
    )
    demo_api: str = setting(
        "auto",
        choice("auto", "on", "off"),
        "The web pages' demo backend (`/demo/…`: tickets, tabs, statements and settling for "
        "`demo-` customers and rooms, with no API key). `auto`: on in the embedded default only; "
        "`on`: also with a configured Redis (for tests; never in production); `off`: never.",
    )
    # Refunds and disputes (settlement.refunds, docs/refunds.md).
    support_api_keys: tuple[str, ...] = setting(
        (),
        secret_list,
        "Keys of support staff (`Tipmeter-Support-Key` header, with the API key): overriding "
        "the refund policy, clearing a customer's dispute flag. Comma-separated, 32+ characters.",
    )
    refund_window_s: int = setting(
        WINDOW_S_DEFAULT,
        integer(0, 366 * 86_400),
        "How long after the capture a refund may be asked for, in seconds.",
    )
    refund_show_full_s: int = setting(
        SHOW_FULL_REFUND_S_DEFAULT,
        integer(0, 86_400),
        "Watched seconds of a private or cam2cam show up to which it is refunded in full; "
        "beyond, the part billed for those first seconds (the rest needs the model's consent).",
    )
    refund_spy: str = setting(
        "off",
        choice("on", "off"),
        "Whether spy shows are refundable by the policy.",
    )
    refund_consent: str = setting(
        "on",
        choice("on", "off"),
        "Whether tips and shows beyond the policy may be refunded with the model's consent.",
    )
    refund_consent_timeout_s: int = setting(
        CONSENT_TIMEOUT_S_DEFAULT,
        integer(1, 30 * 86_400),
        "How long a refund waits for the model's answer, in seconds.",
    )
    refund_consent_unanswered: str = setting(
        "decline",
        choice("decline", "escalate"),
        "A refund the model did not answer in time: `decline` it, or `escalate` it (it waits "
        "for support, who may override the policy).",
    )
    dispute_flag: str = setting(
        "on",
        choice("on", "off"),
        "Whether a dispute flags the customer (no new tab until support clears the flag).",
    )
    dispute_ratio_alert_bp: int = setting(
        150,
        integer(1, 10_000),
        "Dispute ratio (disputes / captured settlements per processor and calendar month, in "
        "basis points) above which the ratio API raises its alert; 150 is Visa's VAMP "
        "excessive level from April 2026.",
    )
    dispute_secrets: tuple[str, ...] = setting(
        (),
        comma_list,
        "Secrets processors sign dispute notices with, `processor=secret`, comma-separated "
        "(Stripe's webhook signing secret for a Stripe processor).",
    )
    dispute_model_share: str = setting(
        "take_back",
        choice("take_back", "hold"),
        "What a dispute does with the model's share of the disputed lines while it is open: "
        "`take_back` (at once; a won dispute gives it back) or `hold` (kept in her `model_held` "
        "account, not payable; given back if won, forfeited if lost).",
    )
    # -- Purchases from a model's catalog (issue 17, docs/purchases.md) ---------------------
    site_unlocks: str = setting(
        "",
        text,
        "Site-wide unlocks every room sells, as a JSON list of objects with `item_id` (sold "
        "as `site.<item_id>`), `name`, `prices` ({currency: minor units}) and `duration_s` "
        "(e.g. moderator status, a restricted channel, HD for the current show). Unset: none.",
    )
    request_ttl_s: int = setting(
        REQUEST_TTL_S_DEFAULT,
        integer(1, 7 * 24 * 3600),
        "Time a model has to do a catalog request whose item names none; past it the request "
        "expires and costs the viewer nothing (voided, or refunded if the tab was settled).",
    )

    @property
    def base_url(self) -> str:
        """Where clients reach this server (``TIPMETER_PUBLIC_URL``, else host and port)."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def metrics_allowed(self, host: str | None) -> bool:
        """Tell whether a client at ``host`` may read ``/metrics`` (``TIPMETER_METRICS_CLIENTS``:
        by default this machine only, as Prometheus exporters usually are)."""
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net) for net in self.metrics_clients)

    @property
    def origins(self) -> tuple[str, ...]:
        """Browser origins allowed to open WebSockets (default: this server's own pages)."""
        if self.allowed_origins:
            return self.allowed_origins
        own = {self.base_url, f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}"}
        return tuple(sorted(own))

    @property
    def embedded_postgres(self) -> bool:
        """True when no database is configured: the server starts its own PostgreSQL."""
        return self.database_url is None

    def database_config(self) -> DatabaseConfig:
        """Where the ledger is. Raises ConfigError in the embedded default (no URL yet)."""
        if self.database_url is None:
            raise ConfigError("no database configured: start the embedded one first")
        return DatabaseConfig(url=self.database_url, connections_max=self.database_connections_max)

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis is configured: the server then starts its own."""
        return self.redis_url is None and not self.redis_cluster_nodes

    def worker_in_process(self, *, embedded: bool) -> bool:
        """Tell whether the server runs a settlement worker itself: ``TIPMETER_WORKER``, where
        ``auto`` means only in the embedded default (``embedded``)."""
        if self.worker == "auto":
            return embedded
        return self.worker == "on"

    def limits(self) -> Limits:
        """The money core's bounds, from these settings."""
        return Limits(
            tip_min_minor=self.tip_min_minor,
            tip_max_minor=self.tip_max_minor,
            cap_min_minor=self.cap_min_minor,
            cap_max_minor=self.cap_max_minor,
            tab_lines_max=self.tab_lines_max,
            room_events_max=self.room_events_max,
            payout_bp_default=self.payout_bp_default,
            message_chars_max=self.message_chars_max,
            rate_min_minor=self.rate_min_minor,
            rate_max_minor=self.rate_max_minor,
            session_minimum_s_max=self.session_minimum_s_max,
            sessions_per_tab_max=self.sessions_per_tab_max,
            lease_ms=self.session_lease_ms,
        )

    def settlement_config(self) -> SettlementConfig:
        """The settlement worker's bounds and timings, from these settings."""
        return SettlementConfig(
            idle_timeout_ms=self.settle_idle_timeout_ms,
            hold_margin_ms=self.settle_hold_margin_ms,
            cap_grace_ms=self.settle_cap_grace_ms,
            capture_guard_ms=self.settle_capture_guard_ms,
            recheck_max_ms=self.settle_recheck_max_ms,
            claim_idle_ms=self.settle_claim_idle_ms,
            deliveries_max=self.settle_deliveries_max,
            concurrency_max=self.settle_concurrency_max,
            gateway_timeout_s=self.gateway_timeout_ms / 1_000,
            retention_ms=self.redis_retention_s * 1_000,
        )

    def processor_specs(self) -> tuple[ProcessorSpec, ...]:
        """The processors serving this deployment: the named list, or else the one the
        single-gateway settings describe."""
        if self.processors:
            return self.processors
        return (
            legacy_processor(
                self.gateway, url=self.gateway_url, stripe_api_key=self.stripe_api_key
            ),
        )

    def processor_registry(self, clock: Clock, *, durable: bool = False) -> ProcessorRegistry:
        """Build every processor (one registry per process: the in-process sandbox keeps its
        holds in this process, so the API and the worker of one process must share it).
        ``durable``: in-process sandboxes keep their record in the data folder (a process
        that serves; a check of the settings opens no file)."""
        return ProcessorRegistry.build(
            self.processor_specs(),
            clock=clock,
            timeout_s=self.gateway_timeout_ms / 1_000,
            cascade_max=self.processors_cascade_max,
            data_dir=self.data_dir if durable else None,
        )

    def refund_policy(self) -> RefundPolicy:
        """The site's refund policy."""
        return RefundPolicy(
            window_s=self.refund_window_s,
            show_full_refund_s=self.refund_show_full_s,
            spy_refundable=self.refund_spy == "on",
            consent_enabled=self.refund_consent == "on",
            consent_timeout_s=self.refund_consent_timeout_s,
            unanswered=Unanswered(self.refund_consent_unanswered),
        )

    def dispute_secret(self, processor: str) -> str:
        """The secret ``processor`` signs its dispute notices with ("" if none is set)."""
        for item in self.dispute_secrets:
            name, _, secret = item.partition("=")
            if name == processor:
                return secret
        return ""

    def webhook_config(self) -> WebhookConfig:
        """Where settlement webhooks go (off without a URL)."""
        return WebhookConfig(
            url=self.webhook_url,
            secret=self.webhook_secret or "",
            attempts_max=self.webhook_attempts_max,
        )

    def collection_config(self) -> CollectionConfig:
        """Collection's settings: the link secret."""
        return CollectionConfig(link_secret=self.paylink_key())

    def notifier(self) -> ChannelNotifier:
        """Who sends pay links: SMTP and the SMS provider where configured, else the log."""
        fallback = LogNotifier()
        email: Notifier = fallback
        sms: Notifier = fallback
        if self.smtp_host:
            email = SmtpNotifier(SmtpConfig(self.smtp_host, self.smtp_port, self.smtp_sender))
        if self.sms_url:
            sms = HttpSmsNotifier(SmsConfig(self.sms_url, self.sms_api_key))
        return ChannelNotifier({Channel.EMAIL: email, Channel.SMS: sms})

    def paylink_key(self) -> str:
        """The secret pay links are signed with (derived from the first ticket secret when
        ``TIPMETER_PAYLINK_SECRET`` is unset, so a link is never signed with a known key)."""
        if self.paylink_secret:
            return self.paylink_secret
        if not self.ticket_secrets:
            return ""
        key = self.ticket_secrets[0].encode()
        return hmac.new(key, b"tipmeter paylink", hashlib.sha256).hexdigest()

    def redis_target(self) -> RedisTarget:
        """Where Redis is. Raises ConfigError in the embedded default (no URL is known yet)."""
        if self.embedded_redis:
            raise ConfigError("no Redis configured: start the embedded one first (tipmeter serve)")
        return RedisTarget(
            url=self.redis_url,
            cluster_nodes=self.redis_cluster_nodes,
            connections_max=self.redis_connections_max,
            replication=Replication(self.ack_replicas, self.ack_wait_ms),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read every ``TIPMETER_*`` variable of ``env``; unknown ones are an error."""
        values: dict[str, Any] = {}
        known = {var.name for var in VARIABLES}
        unknown = sorted(
            k
            for k in env
            if k.startswith(PREFIX) and k not in known and not k.startswith(PROCESSOR_PREFIX)
        )
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; see README.md")
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None or raw == "":
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var.name}={raw!r}: {exc}") from None
        try:
            values["processors"] = parse_processors(env, kind_fields())
        except SettlementMisuse as exc:
            raise ConfigError(str(exc)) from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self, *, serving: bool = False) -> None:
        """Refuse combinations of settings that cannot work, naming the settings: every rule
        that ties one setting to another lives here. ``serving``: also those only ``tipmeter
        serve`` cannot work with (the sandbox process or ``migrate`` may use them)."""
        single = [
            var.name
            for var in VARIABLES
            if var.field in SINGLE_GATEWAY_FIELDS and getattr(self, var.field) != var.default
        ]
        if self.processors and single:
            raise ConfigError(
                f"{LIST_VARIABLE} and {', '.join(single)} are exclusive: name the processors "
                "(each with its own URL and key), or configure the one gateway"
            )
        try:
            # Build them once now, so a missing or malformed field stops the start, naming it.
            self.processor_registry(SystemClock())
        except SettlementMisuse as exc:
            raise ConfigError(str(exc)) from None
        if self.tips_burst_max < self.tips_per_s_max:
            raise ConfigError(f"{PREFIX}TIPS_BURST_MAX must be at least {PREFIX}TIPS_PER_S_MAX")
        if self.redis_url is not None and self.redis_cluster_nodes:
            raise ConfigError(
                f"{PREFIX}REDIS_URL and {PREFIX}REDIS_CLUSTER_NODES are exclusive; set one"
            )
        try:
            # The money core's and the worker's own checks (bounds in order, claim after the
            # gateway timeout) speak of their fields; the settings are named alike.
            self.limits()
            self.settlement_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            parse_site_unlocks(self.site_unlocks, self.limits())  # purchases (issue 17)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}SITE_UNLOCKS: {exc}") from None
        if self.webhook_url is not None and not self.webhook_secret:
            raise ConfigError(f"{PREFIX}WEBHOOK_URL needs {PREFIX}WEBHOOK_SECRET to sign with")
        if self.session_lease_ms < 2 * self.tick_ms:
            raise ConfigError(
                f"{PREFIX}SESSION_LEASE_MS ({self.session_lease_ms}) must be at least twice "
                f"{PREFIX}TICK_MS ({self.tick_ms}): a lease renewed once a tick would lapse "
                "between two ticks, and live shows would end as owner_lost"
            )
        if self.ack_replicas and self.embedded_redis:
            raise ConfigError(
                f"{PREFIX}ACK_REPLICAS needs a Redis with replicas ({PREFIX}REDIS_URL or "
                f"{PREFIX}REDIS_CLUSTER_NODES); the embedded redis-server has none, so every tip "
                "would be refused"
            )
        if serving:
            self._validate_serving()

    def _validate_serving(self) -> None:
        in_process = any(spec.kind == "sandbox" for spec in self.processor_specs())
        if in_process and not self.worker_in_process(embedded=self.embedded_redis):
            raise ConfigError(
                f"{PREFIX}GATEWAY=sandbox keeps its holds inside this process, so a separate "
                f"worker ({PREFIX}WORKER={self.worker} with {PREFIX}REDIS_URL or "
                f"{PREFIX}REDIS_CLUSTER_NODES set) could never capture them: set "
                f"{PREFIX}WORKER=on, "
                f"or use {PREFIX}GATEWAY=sandbox-http (a shared `tipmeter sandbox-gateway`) "
                "or a real processor"
            )


#: Every variable, in the order of the fields that declare them.
VARIABLES: Final = tuple(variables(Settings))


def render_markdown() -> str:
    """The README's configuration table, rendered from the declarations of :class:`Settings`."""
    return render_table(iter(VARIABLES))
