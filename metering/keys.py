"""Every Redis key name, prefix and lifetime, built in one place.

All keys start with :data:`PREFIX`. Keys that belong to a customer share the hash tag
``{c:<customer>}``, and keys that belong to a model's room share ``{r:<room>}``, so every script
touches the keys of one tag only and runs unchanged on Redis Cluster. Work that crosses two tags
(a tip paid from a customer's tab into a model's room) is two steps, the second idempotent by
the first one's id (see :mod:`metering.rooms`).

=======================================  ======  =============================================
key                                      type    what it holds
=======================================  ======  =============================================
``tm:{c:C}:tab:T``                        hash    tab T of customer C (cap, accrued, state …)
``tm:{c:C}:tab:T:lines``                  hash    line id → itemized line (msgpack)
``tm:{c:C}:open:CUR``                     string  id of C's open tab in currency CUR
``tm:{c:C}:op:ID``                        hash    result of applied operation ID (idempotency)
``tm:{c:C}:outbox``                       stream  C's room events not yet relayed to rooms
``tm:{c:C}:live``                         channel sharded pub/sub: C's tab balances as they change
``tm:{c:C}:devices``                      hash    server process → its count of C's connections
``tm:{c:C}:sess:S``                       hash    session S of customer C (billed seconds, lease …)
``tm:{r:R}:events``                       stream  room R's events, bounded, ids are cursors
``tm:{r:R}:relayed``                      zset    event keys already relayed into R (dedupe)
``tm:{r:R}:earnings``                     hash    R's model earnings per currency
``tm:{r:R}:profile``                      hash    R's payout rate and session prices
``tm:{r:R}:live``                         channel sharded pub/sub: R's events as they land
``tm:{r:R}:sessions``                     set     "C/S" of R's sessions (to end them if she leaves)
``tm:{r:R}:present``                      zset    R's model connections → presence expiry (ms)
``tm:{ix:N}:tabs``                        zset    tab index shard N: "C/T" → next check time
``tm:{settle}:queue``                     stream  tabs to settle (consumer group ``workers``)
``tm:{own:O}:sessions``                   set     "C/S/T" of the sessions process O bills
``tm:{owners}:beats``                     zset    billing process → last heartbeat (ms)
``tm:{own:O}:reaper``                     string  lock of the process reaping dead owner O
``tm:{t:J}:used``                         string  ticket J was used (until it expires; own tag)
``tm:{settle}:dead``                      stream  settlement entries given up on (dead letters)
``tm:{hooks}:events``                     hash    webhook event id → signed-later body (JSON)
``tm:{hooks}:attempts``                   hash    webhook event id → delivery attempts so far
``tm:{hooks}:due``                        zset    webhook event id → next delivery time (ms)
``tm:{hooks}:sent``                       zset    webhook event ids delivered (dedupe window)
``tm:{hooks}:dead``                       stream  webhook events given up on
``tm:{c:C}:buy:P``                        hash    purchase P of C: tab, item, amount, state …
``tm:{r:R}:catalog``                      hash    R's catalog: item id → item (JSON)
``tm:{r:R}:requests``                     zset    "C/T/P" of R's pending requests → deadline (ms)
``tm:{c:C}:entitled``                     hash    C's unlocks: "<room>/<what>" → entitled until (ms)
``tm:{r:R}:resolved``                     zset    "C/T/P" of R's last resolved requests (bounded)
``tm:{r:R}:sold``                         hash    R's limit counters per viewer and per show
``tm:{buys}:due``                         zset    "R/C/P" of pending requests → deadline (ms)
``tm:{buys}:refunds``                     zset    "R/C/P" voided after the freeze → next refund try
=======================================  ======  =============================================
"""

from __future__ import annotations

import zlib
from typing import Final

from clients import ids
from metering.errors import InvalidArgument

PREFIX: Final = "tm"

#: How long the result of an applied tip is kept for idempotent retries. A retry after this
#: would be applied again, so it is far longer than any client's retry horizon.
OP_TTL_MS: Final = 7 * 24 * 3600 * 1000

#: How many shards the tab index has. Spreads the sweeper's index over the cluster.
TAB_INDEX_SHARDS: Final = 16

#: Customer ids, room ids, tab ids and operation ids: what may appear inside a key name
#: (:data:`clients.ids.ID_PATTERN`, shared with the wire protocol and the HTTP API).
ID_PATTERN: Final = ids.ID_PATTERN


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a well-formed id; raise :class:`InvalidArgument` otherwise."""
    if type(value) is not str or ID_PATTERN.fullmatch(value) is None:
        raise InvalidArgument(f"{kind} must match {ID_PATTERN.pattern}, got {value!r}")
    return value


def is_id(value: object) -> bool:
    """Tell whether ``value`` is a well-formed id (see :data:`ID_PATTERN`)."""
    return type(value) is str and ID_PATTERN.fullmatch(value) is not None


def customer_tag(customer: str) -> str:
    """The hash tag shared by every key of ``customer``."""
    return f"{{c:{customer}}}"


def room_tag(room: str) -> str:
    """The hash tag shared by every key of ``room``."""
    return f"{{r:{room}}}"


def tab(customer: str, tab_id: str) -> str:
    """The hash holding tab ``tab_id`` of ``customer``."""
    return f"{PREFIX}:{customer_tag(customer)}:tab:{tab_id}"


def tab_lines(customer: str, tab_id: str) -> str:
    """The hash of itemized lines of a tab, keyed by line id."""
    return f"{PREFIX}:{customer_tag(customer)}:tab:{tab_id}:lines"


def open_tab(customer: str, currency: str) -> str:
    """The string naming ``customer``'s open tab in ``currency`` (absent when there is none)."""
    return f"{PREFIX}:{customer_tag(customer)}:open:{currency}"


def op(customer: str, op_id: str) -> str:
    """The record of an applied operation (a tip), kept :data:`OP_TTL_MS` for retries."""
    return f"{PREFIX}:{customer_tag(customer)}:op:{op_id}"


def outbox(customer: str) -> str:
    """The stream of ``customer``'s room events waiting to be relayed into their rooms."""
    return f"{PREFIX}:{customer_tag(customer)}:outbox"


def customer_channel(customer: str) -> str:
    """The sharded pub/sub channel on which ``customer``'s tab balances are announced."""
    return f"{PREFIX}:{customer_tag(customer)}:live"


def customer_devices(customer: str) -> str:
    """How many of ``customer``'s connections each server process holds (process id → count):
    a tip's new balance is announced on the live channel only if another device may want it."""
    return f"{PREFIX}:{customer_tag(customer)}:devices"


def room_events(room: str) -> str:
    """The bounded stream of ``room``'s events; its entry ids are the resume cursors."""
    return f"{PREFIX}:{room_tag(room)}:events"


def room_relayed(room: str) -> str:
    """The sorted set of event keys already relayed into ``room``, scored by relay time."""
    return f"{PREFIX}:{room_tag(room)}:relayed"


def room_earnings(room: str) -> str:
    """The hash of ``room``'s model earnings, one field per currency and kind."""
    return f"{PREFIX}:{room_tag(room)}:earnings"


def room_profile(room: str) -> str:
    """The hash of ``room``'s settings: payout rate, session prices."""
    return f"{PREFIX}:{room_tag(room)}:profile"


def room_channel(room: str) -> str:
    """The sharded pub/sub channel on which ``room``'s new events are announced."""
    return f"{PREFIX}:{room_tag(room)}:live"


def tab_index_shard(customer: str) -> int:
    """The tab index shard that lists ``customer``'s tabs (stable across processes)."""
    return zlib.crc32(customer.encode()) % TAB_INDEX_SHARDS


def tab_index(shard: int) -> str:
    """Tab index shard ``shard``: members ``customer/tab_id``, scores next check time (ms)."""
    return f"{PREFIX}:{{ix:{shard}}}:tabs"


def tab_index_member(customer: str, tab_id: str) -> str:
    """The member naming a tab in the tab index (``/`` never occurs in ids)."""
    return f"{customer}/{tab_id}"


def settle_queue() -> str:
    """The stream of tabs waiting for the settlement worker."""
    return f"{PREFIX}:{{settle}}:queue"


def session(customer: str, session_id: str) -> str:
    """The hash of session ``session_id`` (it lives under its customer's tag, like the tab)."""
    return f"{PREFIX}:{customer_tag(customer)}:sess:{session_id}"


def room_sessions(room: str) -> str:
    """The set of ``customer/session`` of ``room``'s sessions (a room may end them all)."""
    return f"{PREFIX}:{room_tag(room)}:sessions"


def room_presence(room: str) -> str:
    """The sorted set of ``room``'s model connections, scored by when their presence lapses."""
    return f"{PREFIX}:{room_tag(room)}:present"


def owner_sessions(owner: str) -> str:
    """The set of ``customer/session/tab`` that billing process ``owner`` holds leases on."""
    return f"{PREFIX}:{{own:{owner}}}:sessions"


def owners() -> str:
    """The sorted set of billing processes, scored by their last heartbeat (ms)."""
    return f"{PREFIX}:{{owners}}:beats"


def owner_reaper(owner: str) -> str:
    """A short lock: the process reaping dead owner ``owner``'s sessions."""
    return f"{PREFIX}:{{own:{owner}}}:reaper"


def used_ticket(ticket_id: str) -> str:
    """The key recording that ticket ``ticket_id`` was used (its own hash tag: spread out)."""
    return f"{PREFIX}:{{t:{ticket_id}}}:used"


def settle_dead_letters() -> str:
    """The stream of settlement entries given up on after too many deliveries."""
    return f"{PREFIX}:{{settle}}:dead"


def webhook_events() -> str:
    """The hash of webhook events waiting for delivery: event id → JSON body."""
    return f"{PREFIX}:{{hooks}}:events"


def webhook_attempts() -> str:
    """The hash of delivery attempts made so far per waiting webhook event."""
    return f"{PREFIX}:{{hooks}}:attempts"


def webhook_due() -> str:
    """The sorted set of waiting webhook events, scored by their next delivery time (ms)."""
    return f"{PREFIX}:{{hooks}}:due"


def webhook_sent() -> str:
    """The sorted set of delivered webhook event ids, scored by delivery time (dedupe window)."""
    return f"{PREFIX}:{{hooks}}:sent"


def webhook_dead_letters() -> str:
    """The stream of webhook events given up on after the last attempt."""
    return f"{PREFIX}:{{hooks}}:dead"


# -- Purchases from a model's catalog (docs/purchases.md) ------------------------------------


def purchase(customer: str, purchase_id: str) -> str:
    """The record of purchase ``purchase_id`` (its idempotency record and its live state)."""
    return f"{PREFIX}:{customer_tag(customer)}:buy:{purchase_id}"


def room_catalog(room: str) -> str:
    """The hash of ``room``'s catalog items, item id → JSON."""
    return f"{PREFIX}:{room_tag(room)}:catalog"


def room_requests(room: str) -> str:
    """The sorted set of ``room``'s pending requests (``customer/tab/purchase``) by deadline."""
    return f"{PREFIX}:{room_tag(room)}:requests"


def entitlements(customer: str) -> str:
    """The hash of ``customer``'s unlocks: ``room/what`` → entitled until (ms)."""
    return f"{PREFIX}:{customer_tag(customer)}:entitled"


def room_sold(room: str) -> str:
    """The hash of ``room``'s catalog limit counters (per viewer, and per show)."""
    return f"{PREFIX}:{room_tag(room)}:sold"


def requests_due() -> str:
    """The sorted set of every pending request (``room/customer/purchase``) by deadline (ms)."""
    return f"{PREFIX}:{{buys}}:due"


def purchase_refunds_due() -> str:
    """The sorted set of every request declined or expired after its tab froze
    (``room/customer/purchase``), by when to try its refund next (ms)."""
    return f"{PREFIX}:{{buys}}:refunds"


def room_resolved(room: str) -> str:
    """The sorted set of ``room``'s most recently resolved requests (``customer/tab/purchase``),
    so that a model's repeated answer finds the request it answered (bounded)."""
    return f"{PREFIX}:{room_tag(room)}:resolved"
