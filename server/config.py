"""Settings: every ``TIPMETER_*`` environment variable, read into one typed, frozen object.

Each variable is declared once in :data:`VARIABLES` with its parser and help text; the README's
configuration table is rendered from that declaration (``tipmeter config --markdown``) and a test
keeps the two equal. A malformed value stops the program with a :class:`ConfigError` naming the
variable, the value and what is expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from metering.clock import Clock, SystemClock
from metering.limits import Limits
from metering.store import RedisTarget
from server.catalog import REQUEST_TTL_S_DEFAULT, parse_site_unlocks  # purchases (issue 17)
from server.errors import ConfigError
from settlement.config import CrashPoint, SettlementConfig
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

PREFIX: Final = "TIPMETER_"
#: The single-gateway settings that a named list of processors replaces.
SINGLE_GATEWAY_VARIABLES: Final = ("GATEWAY", "GATEWAY_URL", "STRIPE_API_KEY")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server, worker and tools can be configured with."""

    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    redis_cluster_nodes: tuple[str, ...] = ()
    redis_connections_max: int = 64
    redis_server_bin: str = "redis-server"
    data_dir: Path = Path(".tipmeter")
    log_level: str = "info"
    tip_min_minor: int = 1
    tip_max_minor: int = 100_000
    cap_min_minor: int = 100
    cap_max_minor: int = 1_000_000
    tab_lines_max: int = 10_000
    room_events_max: int = 10_000
    payout_bp_default: int = 6_000
    message_chars_max: int = 255
    public_url: str | None = None
    ticket_secrets: tuple[str, ...] = ()
    ticket_issuers: tuple[str, ...] = ("tipmeter",)
    ticket_ttl_s_max: int = 300
    api_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    frame_bytes_max: int = 4_096
    tips_per_s_max: int = 10
    tips_burst_max: int = 20
    frames_per_s_max: int = 50
    send_queue_frames_max: int = 256
    subscriptions_max: int = 8
    connections_max: int = 15_000
    ping_interval_s: int = 20
    ping_timeout_s: int = 20
    show_ping_interval_ms: int = 1_000
    show_ping_timeout_ms: int = 3_000
    metrics_clients: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    drain_delay_s: int = 2
    drain_s_max: int = 30
    feed_timeout_s_max: int = 60
    feed_minor_per_token: int = 1
    tick_ms: int = 1_000
    session_lease_ms: int = 3_000
    warning_seconds: tuple[int, ...] = (60, 10)
    rate_min_minor: int = 1
    rate_max_minor: int = 100_000
    session_minimum_s_max: int = 3_600
    sessions_per_tab_max: int = 4
    demo_api: str = "auto"
    worker: str = "auto"
    database_url: str | None = None
    database_connections_max: int = 10
    postgres_bin_dir: str | None = None
    redis_retention_s: int = 86_400

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

    settle_idle_timeout_ms: int = 900_000
    settle_hold_margin_ms: int = 86_400_000
    settle_cap_grace_ms: int = 120_000
    settle_capture_guard_ms: int = 60_000
    settle_recheck_max_ms: int = 300_000
    settle_claim_idle_ms: int = 60_000
    settle_deliveries_max: int = 8
    settle_concurrency_max: int = 16
    settle_crash_point: str | None = None
    gateway: str = "sandbox"
    gateway_url: str | None = None
    gateway_timeout_ms: int = 20_000
    stripe_api_key: str | None = None
    processor_names: tuple[str, ...] = ()
    processors_cascade_max: int = 0
    #: Read from ``TIPMETER_PROCESSOR_<NAME>_<FIELD>`` (see settlement.processors.settings).
    processors: tuple[ProcessorSpec, ...] = ()
    webhook_url: str | None = None
    webhook_secret: str | None = None
    paylink_secret: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "tipmeter@localhost"
    sms_url: str | None = None
    sms_api_key: str = ""
    webhook_attempts_max: int = 10
    sandbox_port: int = 8100
    sandbox_latency_ms: int = 0
    # Refunds and disputes (settlement.refunds, docs/refunds.md).
    support_api_keys: tuple[str, ...] = ()
    refund_window_s: int = WINDOW_S_DEFAULT
    refund_show_full_s: int = SHOW_FULL_REFUND_S_DEFAULT
    refund_spy: str = "off"
    refund_consent: str = "on"
    refund_consent_timeout_s: int = CONSENT_TIMEOUT_S_DEFAULT
    refund_consent_unanswered: str = "decline"
    dispute_flag: str = "on"
    dispute_ratio_alert_bp: int = 150
    dispute_secrets: tuple[str, ...] = ()
    # -- Purchases from a model's catalog (issue 17, docs/purchases.md) -- one block --------
    site_unlocks: str = ""
    request_ttl_s: int = REQUEST_TTL_S_DEFAULT
    # -- end of the purchases block --------------------------------------------------------

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
            crash_point=CrashPoint(self.settle_crash_point) if self.settle_crash_point else None,
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
        single = [
            f"{PREFIX}{name}" for name in SINGLE_GATEWAY_VARIABLES if env.get(f"{PREFIX}{name}")
        ]
        if values["processors"] and single:
            raise ConfigError(
                f"{LIST_VARIABLE} and {', '.join(single)} are exclusive: name the processors "
                "(each with its own URL and key), or configure the one gateway"
            )
        settings = cls(**values)
        try:
            # Build them once now, so a missing or malformed field stops the start, naming it.
            settings.processor_registry(SystemClock())
        except SettlementMisuse as exc:
            raise ConfigError(str(exc)) from None
        if settings.tips_burst_max < settings.tips_per_s_max:
            raise ConfigError(f"{PREFIX}TIPS_BURST_MAX must be at least {PREFIX}TIPS_PER_S_MAX")
        if settings.redis_url is not None and settings.redis_cluster_nodes:
            raise ConfigError(
                f"{PREFIX}REDIS_URL and {PREFIX}REDIS_CLUSTER_NODES are exclusive; set one"
            )
        try:
            parse_site_unlocks(settings.site_unlocks, settings.limits())  # purchases (issue 17)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}SITE_UNLOCKS: {exc}") from None
        try:
            settings.limits()
            settings.settlement_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if settings.webhook_url is not None and not settings.webhook_secret:
            raise ConfigError(f"{PREFIX}WEBHOOK_URL needs {PREFIX}WEBHOOK_SECRET to sign with")
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations of settings that cannot work, naming the settings."""
        if self.session_lease_ms < 2 * self.tick_ms:
            raise ConfigError(
                f"{PREFIX}SESSION_LEASE_MS ({self.session_lease_ms}) must be at least twice "
                f"{PREFIX}TICK_MS ({self.tick_ms}): a lease renewed once a tick would lapse "
                "between two ticks, and live shows would end as owner_lost"
            )

    def check_serving(self) -> None:
        """Refuse, before ``tipmeter serve`` starts anything, settings it cannot serve with."""
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


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: the settings field it fills, its parser and its help."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str

    @property
    def default(self) -> Any:
        """The field's default, as the dataclass declares it."""
        f = next(f for f in dataclasses.fields(Settings) if f.name == self.field)
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default


def integer(low: int, high: int) -> Callable[[str], int]:
    """A parser for a decimal integer within ``[low, high]``."""

    def parse(raw: str) -> int:
        if not raw.strip().lstrip("-").isdigit():
            raise ValueError(f"expected an integer in {low}..{high}")
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"expected an integer in {low}..{high}")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    """A parser for one of ``options`` (case-insensitive)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def text(raw: str) -> str:
    """A parser for a non-empty string."""
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def comma_list(raw: str) -> tuple[str, ...]:
    """A parser for a comma-separated list of non-empty items."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ValueError("expected a comma-separated list")
    return items


def networks(raw: str) -> tuple[str, ...]:
    """A parser for a comma-separated list of IP networks (``10.0.0.0/8``) or addresses."""
    items = comma_list(raw)
    try:
        return tuple(str(ipaddress.ip_network(item, strict=False)) for item in items)
    except ValueError:
        raise ValueError("expected comma-separated IP networks, e.g. 10.0.0.0/8,::1") from None


SECRET_CHARS_MIN: Final = 32


def secret_list(raw: str) -> tuple[str, ...]:
    """A parser for a comma-separated list of secrets, each at least 32 characters long."""
    items = comma_list(raw)
    if any(len(item) < SECRET_CHARS_MIN for item in items):
        raise ValueError(f"every secret must be at least {SECRET_CHARS_MIN} characters long")
    return items


def seconds_list(raw: str) -> tuple[int, ...]:
    """A parser for comma-separated whole seconds, returned largest first."""
    items = comma_list(raw)
    if not all(item.isdigit() and 0 < int(item) <= 86_400 for item in items):
        raise ValueError("expected whole seconds between 1 and 86400, comma-separated")
    return tuple(sorted({int(item) for item in items}, reverse=True))


def url(raw: str) -> str:
    """A parser for an http(s) URL."""
    value = text(raw)
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


MINOR_MAX: Final = 900_000_000_000

VARIABLES: Final = (
    Variable("TIPMETER_HOST", "host", text, "Address the HTTP and WebSocket server listens on."),
    Variable("TIPMETER_PORT", "port", integer(1, 65535), "Port the server listens on."),
    Variable(
        "TIPMETER_REDIS_URL",
        "redis_url",
        text,
        "One Redis node (`redis://host:port/0`, `rediss://…`, `unix:///path`). "
        "Unset (with no cluster nodes): the server starts its own private redis-server.",
    ),
    Variable(
        "TIPMETER_REDIS_CLUSTER_NODES",
        "redis_cluster_nodes",
        comma_list,
        "Redis Cluster startup nodes, `host:port,host:port`. Exclusive with the URL.",
    ),
    Variable(
        "TIPMETER_REDIS_CONNECTIONS_MAX",
        "redis_connections_max",
        integer(1, 10_000),
        "Connections one process opens to Redis at most (per node on a cluster).",
    ),
    Variable(
        "TIPMETER_REDIS_SERVER_BIN",
        "redis_server_bin",
        text,
        "The redis-server binary of the embedded default (a name on PATH or a path).",
    ),
    Variable(
        "TIPMETER_DATA_DIR",
        "data_dir",
        lambda raw: Path(text(raw)),
        "Folder of the embedded redis-server's append-only file and socket.",
    ),
    Variable(
        "TIPMETER_LOG_LEVEL",
        "log_level",
        choice("debug", "info", "warning", "error"),
        "Least severe level written to the JSON log on standard error.",
    ),
    Variable(
        "TIPMETER_TIP_MIN_MINOR",
        "tip_min_minor",
        integer(1, MINOR_MAX),
        "Smallest tip, in minor units (cents).",
    ),
    Variable(
        "TIPMETER_TIP_MAX_MINOR",
        "tip_max_minor",
        integer(1, MINOR_MAX),
        "Largest tip, in minor units.",
    ),
    Variable(
        "TIPMETER_CAP_MIN_MINOR",
        "cap_min_minor",
        integer(1, MINOR_MAX),
        "Smallest cap a tab may be opened with, in minor units.",
    ),
    Variable(
        "TIPMETER_CAP_MAX_MINOR",
        "cap_max_minor",
        integer(1, MINOR_MAX),
        "Largest cap a tab may reach, in minor units (at most 900,000,000,000).",
    ),
    Variable(
        "TIPMETER_TAB_LINES_MAX",
        "tab_lines_max",
        integer(1, 1_000_000),
        "Itemized lines (tips and sessions) one tab may hold.",
    ),
    Variable(
        "TIPMETER_ROOM_EVENTS_MAX",
        "room_events_max",
        integer(100, 10_000_000),
        "Events kept in each room's stream (older ones are trimmed).",
    ),
    Variable(
        "TIPMETER_PAYOUT_BP_DEFAULT",
        "payout_bp_default",
        integer(0, 10_000),
        "Model's share of each charge in basis points, where the room sets none (6000 = 60%).",
    ),
    Variable(
        "TIPMETER_MESSAGE_CHARS_MAX",
        "message_chars_max",
        integer(0, 255),
        "Longest tip message, in characters (the protocol allows 255).",
    ),
    Variable(
        "TIPMETER_PUBLIC_URL",
        "public_url",
        url,
        "URL clients reach this server at (for links such as the event feed's `nextUrl`). "
        "Unset: `http://HOST:PORT`.",
    ),
    Variable(
        "TIPMETER_TICKET_SECRETS",
        "ticket_secrets",
        secret_list,
        "Secrets that sign connection tickets, comma-separated, 32+ characters each; the first "
        "signs, all verify (rotation). Every process must share them. Unset with the embedded "
        "Redis: generated once and kept in the data folder.",
    ),
    Variable(
        "TIPMETER_TICKET_ISSUERS",
        "ticket_issuers",
        comma_list,
        "Issuers whose tickets are accepted; the first names tickets the HTTP API mints.",
    ),
    Variable(
        "TIPMETER_TICKET_TTL_S_MAX",
        "ticket_ttl_s_max",
        integer(5, 3_600),
        "Longest life of a ticket (exp - iat), in seconds: the HTTP API mints none longer, "
        "and the WebSocket endpoint refuses longer ones (ticket_lifetime_too_long).",
    ),
    Variable(
        "TIPMETER_API_KEYS",
        "api_keys",
        secret_list,
        "Keys of the cam-site backend for the HTTP API (`Authorization: Bearer KEY`), "
        "comma-separated, 32+ characters each. Unset with the embedded Redis: generated once "
        "and kept in the data folder.",
    ),
    Variable(
        "TIPMETER_ALLOWED_ORIGINS",
        "allowed_origins",
        comma_list,
        "Browser origins allowed to open a WebSocket. Unset: this server's own pages only. "
        "Clients that send no Origin (not browsers) are not affected.",
    ),
    Variable(
        "TIPMETER_FRAME_BYTES_MAX",
        "frame_bytes_max",
        integer(256, 1_048_576),
        "Largest WebSocket frame a client may send; larger ones close the connection (1009).",
    ),
    Variable(
        "TIPMETER_TIPS_PER_S_MAX",
        "tips_per_s_max",
        integer(1, 10_000),
        "Tips one connection may send per second on average (token bucket).",
    ),
    Variable(
        "TIPMETER_TIPS_BURST_MAX",
        "tips_burst_max",
        integer(1, 100_000),
        "Tips one connection may send in a burst (the bucket's size).",
    ),
    Variable(
        "TIPMETER_FRAMES_PER_S_MAX",
        "frames_per_s_max",
        integer(1, 100_000),
        "Frames of any kind one connection may send per second (bucket of twice that).",
    ),
    Variable(
        "TIPMETER_SEND_QUEUE_FRAMES_MAX",
        "send_queue_frames_max",
        integer(8, 100_000),
        "Frames waiting to be sent to one connection; a client that falls further behind is "
        "disconnected (4008) so it never slows anyone else.",
    ),
    Variable(
        "TIPMETER_SUBSCRIPTIONS_MAX",
        "subscriptions_max",
        integer(1, 1_000),
        "Rooms one connection may follow at once.",
    ),
    Variable(
        "TIPMETER_CONNECTIONS_MAX",
        "connections_max",
        integer(1, 1_000_000),
        "WebSocket connections one process accepts; more are refused with HTTP 503.",
    ),
    Variable(
        "TIPMETER_PING_INTERVAL_S",
        "ping_interval_s",
        integer(1, 3_600),
        "Seconds between WebSocket pings the server sends.",
    ),
    Variable(
        "TIPMETER_PING_TIMEOUT_S",
        "ping_timeout_s",
        integer(1, 3_600),
        "Seconds without a pong before the server drops a connection.",
    ),
    Variable(
        "TIPMETER_METRICS_CLIENTS",
        "metrics_clients",
        networks,
        "IP networks allowed to read /metrics (others get 403 metrics_not_allowed); "
        "0.0.0.0/0,::/0 for anyone.",
    ),
    Variable(
        "TIPMETER_SHOW_PING_INTERVAL_MS",
        "show_ping_interval_ms",
        integer(100, 60_000),
        "Milliseconds between pings to a viewer whose connection funds a running show, and to "
        "a model console.",
    ),
    Variable(
        "TIPMETER_SHOW_PING_TIMEOUT_MS",
        "show_ping_timeout_ms",
        integer(100, 60_000),
        "Milliseconds without a pong before such a connection is dropped and its shows end.",
    ),
    Variable(
        "TIPMETER_DRAIN_DELAY_S",
        "drain_delay_s",
        integer(0, 600),
        "On SIGTERM: seconds /readyz answers 503 before clients are told to reconnect.",
    ),
    Variable(
        "TIPMETER_DRAIN_S_MAX",
        "drain_s_max",
        integer(1, 3_600),
        "On SIGTERM: seconds after which the process exits whatever remains.",
    ),
    Variable(
        "TIPMETER_FEED_TIMEOUT_S_MAX",
        "feed_timeout_s_max",
        integer(0, 600),
        "Longest wait of the long-poll event feed (`?timeout=`), in seconds.",
    ),
    Variable(
        "TIPMETER_FEED_MINOR_PER_TOKEN",
        "feed_minor_per_token",
        integer(1, 1_000_000),
        "Minor units per token in the event feed's `tokens` (rounded down).",
    ),
    Variable(
        "TIPMETER_TICK_MS",
        "tick_ms",
        integer(100, 10_000),
        "How often each process bills the sessions it owns, in milliseconds.",
    ),
    Variable(
        "TIPMETER_SESSION_LEASE_MS",
        "session_lease_ms",
        integer(1_000, 60_000),
        "A billing process's lease on its sessions; a session whose owner stopped renewing is "
        "ended (`owner_lost`) within about this plus one tick.",
    ),
    Variable(
        "TIPMETER_WARNING_SECONDS",
        "warning_seconds",
        seconds_list,
        "Low-credit warnings: seconds left at the tab's burn rate, comma-separated.",
    ),
    Variable(
        "TIPMETER_RATE_MIN_MINOR",
        "rate_min_minor",
        integer(1, 1_000_000),
        "Lowest per-minute price of a show a model may set, in minor units.",
    ),
    Variable(
        "TIPMETER_RATE_MAX_MINOR",
        "rate_max_minor",
        integer(1, 1_000_000),
        "Highest per-minute price of a show a model may set, in minor units.",
    ),
    Variable(
        "TIPMETER_SESSION_MINIMUM_S_MAX",
        "session_minimum_s_max",
        integer(0, 86_400),
        "Longest minimum duration (charged at the start) a model may set, in seconds.",
    ),
    Variable(
        "TIPMETER_SESSIONS_PER_TAB_MAX",
        "sessions_per_tab_max",
        integer(1, 100),
        "Sessions one tab may fund at the same time.",
    ),
    Variable(
        "TIPMETER_SETTLE_IDLE_TIMEOUT_MS",
        "settle_idle_timeout_ms",
        integer(1_000, 30 * 86_400_000),
        "An open tab on which nothing was spent for this long is settled (trigger `idle`).",
    ),
    Variable(
        "TIPMETER_SETTLE_HOLD_MARGIN_MS",
        "settle_hold_margin_ms",
        integer(0, 30 * 86_400_000),
        "An open tab whose card hold expires within this margin is settled (`hold_expiring`).",
    ),
    Variable(
        "TIPMETER_SETTLE_CAP_GRACE_MS",
        "settle_cap_grace_ms",
        integer(0, 86_400_000),
        "Time a viewer has to raise an exhausted cap before the tab is settled (`cap_reached`).",
    ),
    Variable(
        "TIPMETER_SETTLE_CAPTURE_GUARD_MS",
        "settle_capture_guard_ms",
        integer(0, 86_400_000),
        "No capture is attempted on a hold expiring within this time; the tab is `expired`.",
    ),
    Variable(
        "TIPMETER_SETTLE_RECHECK_MAX_MS",
        "settle_recheck_max_ms",
        integer(1_000, 86_400_000),
        "The sweeper looks at every unsettled tab at least this often.",
    ),
    Variable(
        "TIPMETER_SETTLE_CLAIM_IDLE_MS",
        "settle_claim_idle_ms",
        integer(1_000, 86_400_000),
        "A settlement a worker has not finished for this long is taken over by another "
        "(must exceed the gateway timeout).",
    ),
    Variable(
        "TIPMETER_SETTLE_DELIVERIES_MAX",
        "settle_deliveries_max",
        integer(1, 1_000),
        "Attempts at one queue entry before it goes to the dead-letter stream.",
    ),
    Variable(
        "TIPMETER_SETTLE_CONCURRENCY_MAX",
        "settle_concurrency_max",
        integer(1, 10_000),
        "Tabs one worker settles at once.",
    ),
    Variable(
        "TIPMETER_SETTLE_CRASH_POINT",
        "settle_crash_point",
        choice(*(point.value for point in CrashPoint)),
        "Crash tests only: the worker kills itself (SIGKILL) at this point. Never set it "
        "in production.",
    ),
    Variable(
        "TIPMETER_GATEWAY",
        "gateway",
        choice(*LEGACY_KINDS),
        "Payment gateway of the worker: `sandbox` (in-process), `sandbox-http` "
        "(a `tipmeter sandbox-gateway` process) or `stripe`.",
    ),
    Variable(
        "TIPMETER_GATEWAY_URL",
        "gateway_url",
        text,
        "Base URL of the `sandbox-http` gateway, e.g. `http://127.0.0.1:8100` (for `stripe`: "
        "the API's base URL, for emulators; unset: Stripe's).",
    ),
    Variable(
        "TIPMETER_GATEWAY_TIMEOUT_MS",
        "gateway_timeout_ms",
        integer(100, 600_000),
        "Bound on one gateway call; past it the call is retried later with the same key.",
    ),
    Variable(
        "TIPMETER_STRIPE_API_KEY",
        "stripe_api_key",
        text,
        "Secret key of the `stripe` gateway.",
    ),
    Variable(
        "TIPMETER_PROCESSORS",
        "processor_names",
        comma_list,
        "Names of the processors serving this deployment (e.g. `eu,us,segpay`); each one is "
        "set by `TIPMETER_PROCESSOR_<NAME>_<FIELD>` variables (`KIND`, `CURRENCIES`, "
        "`COUNTRIES`, `PRODUCTS`, `WEIGHT`, the kind's own: docs/processors.md). Unset: the "
        "`TIPMETER_GATEWAY` settings describe the one processor.",
    ),
    Variable(
        "TIPMETER_PROCESSORS_CASCADE_MAX",
        "processors_cascade_max",
        integer(0, 31),
        "Further eligible processors a hold is tried at after a soft decline (never after a "
        "hard one). 0: no cascading.",
    ),
    Variable(
        "TIPMETER_WEBHOOK_URL",
        "webhook_url",
        text,
        "Where `tab.settled` and `tab.settlement_failed` are POSTed. Unset: no webhooks.",
    ),
    Variable(
        "TIPMETER_WEBHOOK_SECRET",
        "webhook_secret",
        text,
        "Shared secret that signs webhooks (HMAC-SHA256, `Tipmeter-Signature` header).",
    ),
    Variable(
        "TIPMETER_PAYLINK_SECRET",
        "paylink_secret",
        text,
        "Secret that signs collection pay links (docs/collection.md). Unset: derived from the "
        "first ticket secret.",
    ),
    Variable(
        "TIPMETER_SMTP_HOST",
        "smtp_host",
        text,
        "Mail server that sends pay links by e-mail. Unset: e-mails are only logged (without "
        "the link).",
    ),
    Variable("TIPMETER_SMTP_PORT", "smtp_port", integer(1, 65535), "The mail server's port."),
    Variable("TIPMETER_SMTP_SENDER", "smtp_sender", text, "The From address of those e-mails."),
    Variable(
        "TIPMETER_SMS_URL",
        "sms_url",
        text,
        "HTTP SMS provider that sends pay links by SMS (docs/collection.md). Unset: SMS are "
        "only logged (without the link).",
    ),
    Variable("TIPMETER_SMS_API_KEY", "sms_api_key", text, "The SMS provider's API key."),
    Variable(
        "TIPMETER_WEBHOOK_ATTEMPTS_MAX",
        "webhook_attempts_max",
        integer(1, 100),
        "Delivery attempts per webhook (exponential backoff from 1 s, at most 1 h apart) "
        "before it goes to the dead-letter stream.",
    ),
    Variable(
        "TIPMETER_SANDBOX_PORT",
        "sandbox_port",
        integer(1, 65535),
        "Port `tipmeter sandbox-gateway` listens on (on TIPMETER_HOST).",
    ),
    Variable(
        "TIPMETER_SANDBOX_LATENCY_MS",
        "sandbox_latency_ms",
        integer(0, 60_000),
        "Delay the sandbox gateway adds to every call (for load and crash tests).",
    ),
    Variable(
        "TIPMETER_WORKER",
        "worker",
        choice("auto", "on", "off"),
        "Run a settlement worker inside the server process. `auto`: in the embedded default only "
        "(`make run` settles tabs by itself); `on`: also with a configured Redis; `off`: run "
        "`tipmeter worker` processes instead (production).",
    ),
    Variable(
        "TIPMETER_DATABASE_URL",
        "database_url",
        text,
        "The ledger's PostgreSQL (`postgresql://user@host/db`, libpq's URL form). Unset: the "
        "server starts its own private PostgreSQL in the data folder.",
    ),
    Variable(
        "TIPMETER_DATABASE_CONNECTIONS_MAX",
        "database_connections_max",
        integer(1, 1_000),
        "Connections one process opens to the ledger database at most.",
    ),
    Variable(
        "TIPMETER_POSTGRES_BIN_DIR",
        "postgres_bin_dir",
        text,
        "Folder of the embedded PostgreSQL's `postgres` and `initdb`. Unset: the newest "
        "`/usr/lib/postgresql/<version>/bin`, else `PATH`.",
    ),
    Variable(
        "TIPMETER_REDIS_RETENTION_S",
        "redis_retention_s",
        integer(1, 30 * 86_400),
        "How long a settled (or failed, voided, expired) tab's Redis keys live once the ledger "
        "holds its outcome; the ledger answers after that.",
    ),
    Variable(
        "TIPMETER_DEMO_API",
        "demo_api",
        choice("auto", "on", "off"),
        "The web pages' demo backend (`/demo/…`: tickets, tabs, statements and settling for "
        "`demo-` customers and rooms, with no API key). `auto`: on in the embedded default only; "
        "`on`: also with a configured Redis (for tests; never in production); `off`: never.",
    ),
    Variable(
        "TIPMETER_SUPPORT_API_KEYS",
        "support_api_keys",
        secret_list,
        "Keys of support staff (`Tipmeter-Support-Key` header, with the API key): overriding "
        "the refund policy, clearing a customer's dispute flag. Comma-separated, 32+ characters.",
    ),
    Variable(
        "TIPMETER_REFUND_WINDOW_S",
        "refund_window_s",
        integer(0, 366 * 86_400),
        "How long after the capture a refund may be asked for, in seconds.",
    ),
    Variable(
        "TIPMETER_REFUND_SHOW_FULL_S",
        "refund_show_full_s",
        integer(0, 86_400),
        "Watched seconds of a private or cam2cam show up to which it is refunded in full; "
        "beyond, the part billed for those first seconds (the rest needs the model's consent).",
    ),
    Variable(
        "TIPMETER_REFUND_SPY",
        "refund_spy",
        choice("on", "off"),
        "Whether spy shows are refundable by the policy.",
    ),
    Variable(
        "TIPMETER_REFUND_CONSENT",
        "refund_consent",
        choice("on", "off"),
        "Whether tips and shows beyond the policy may be refunded with the model's consent.",
    ),
    Variable(
        "TIPMETER_REFUND_CONSENT_TIMEOUT_S",
        "refund_consent_timeout_s",
        integer(1, 30 * 86_400),
        "How long a refund waits for the model's answer, in seconds.",
    ),
    Variable(
        "TIPMETER_REFUND_CONSENT_UNANSWERED",
        "refund_consent_unanswered",
        choice("decline", "escalate"),
        "A refund the model did not answer in time: `decline` it, or `escalate` it (it waits "
        "for support, who may override the policy).",
    ),
    Variable(
        "TIPMETER_DISPUTE_FLAG",
        "dispute_flag",
        choice("on", "off"),
        "Whether a dispute flags the customer (no new tab until support clears the flag).",
    ),
    Variable(
        "TIPMETER_DISPUTE_RATIO_ALERT_BP",
        "dispute_ratio_alert_bp",
        integer(1, 10_000),
        "Dispute ratio (disputes / captured settlements per processor and calendar month, in "
        "basis points) above which the ratio API raises its alert; 150 is Visa's VAMP "
        "excessive level from April 2026.",
    ),
    Variable(
        "TIPMETER_DISPUTE_SECRETS",
        "dispute_secrets",
        comma_list,
        "Secrets processors sign dispute notices with, `processor=secret`, comma-separated "
        "(Stripe's webhook signing secret for a Stripe processor).",
    ),
    # -- Purchases from a model's catalog (issue 17, docs/purchases.md) -- one block --------
    Variable(
        "TIPMETER_SITE_UNLOCKS",
        "site_unlocks",
        text,
        "Site-wide unlocks every room sells, as a JSON list of objects with `item_id` (sold "
        "as `site.<item_id>`), `name`, `prices` ({currency: minor units}) and `duration_s` "
        "(e.g. moderator status, a restricted channel, HD for the current show). Unset: none.",
    ),
    Variable(
        "TIPMETER_REQUEST_TTL_S",
        "request_ttl_s",
        integer(1, 7 * 24 * 3600),
        "Time a model has to do a catalog request whose item names none; past it the request "
        "expires and costs the viewer nothing (voided, or refunded if the tab was settled).",
    ),
    # -- end of the purchases block --------------------------------------------------------
)


def render_markdown() -> str:
    """The README's configuration table, rendered from :data:`VARIABLES`."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for var in VARIABLES:
        default = var.default
        shown = "unset" if default is None or default == () else f"`{default}`"
        rows.append(f"| `{var.name}` | {shown} | {var.help} |")
    return "\n".join(rows) + "\n"
