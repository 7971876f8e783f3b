/**
 * tipmeter.js — the browser client of tipmeter's WebSocket protocol, version 1
 * (docs/protocol.md). One ES module, no dependencies, no build step.
 *
 * Theory of operation. A TipmeterClient keeps one WebSocket open. When it drops (the network,
 * a deploy that said `drain`, a dead server, a heartbeat that got no answer), the client waits
 * a random delay between 0 and a bound that doubles from 0.2 s to 15 s (full jitter; a
 * `drain` names its own delay), asks the ticket provider for a fresh ticket (tickets open one
 * connection each) and connects again. On every new connection it
 *
 *   1. follows each of its rooms again after the id of the last event it received from it,
 *      so no event is missed, and drops any event at or before that id, so none is repeated;
 *   2. sends again every state-changing message still waiting for its answer, with the same
 *      client-minted id, so the server applies it at most once (the answer to a repeat is
 *      `duplicate` with the original outcome).
 *
 * An operation's id is minted before its first send and kept until the answer comes, however
 * many connections that takes. Every collection is bounded: operations waiting for an answer
 * (`pendingMax`), rooms followed (the server's `subscriptions_max`), retries (`RETRIES_MAX`).
 *
 * Money is an integer number of minor units (cents) below 2**53, never a float: a tip whose
 * amount is not such an integer is refused here, before anything is sent. `formatMinor` turns
 * an amount into text for display only, with integer arithmetic.
 *
 * Events (a TipmeterClient is an EventTarget; each event is a CustomEvent whose `detail` is the
 * server's message, or what the name says):
 *
 *   state     {state, previous}  "connecting" | "open" | "waiting" | "closed"
 *   welcome   the welcome message of each connection
 *   tab       the viewer's tab, when a newer version arrives (welcome, result, error, push)
 *   warning   low credit: {tab_id, seconds_left, threshold_s}
 *   session   a session the viewer started ended: {session: {…, end_reason}}
 *   event     one event of a followed room: {room, id, event, data}
 *   subscribed the answer to a subscribe (gap: true when events were lost to the room's bound)
 *   drain     the server is going away; the client reconnects after reconnect_after_ms
 *   error     an error the server sent that answers no waiting operation
 *   resent    {count}: operations sent again after a reconnect
 *   closed    {code, reason}: the client stopped for good (close(), or close code 4029)
 */

export const PROTOCOL_VERSION = 1;
export const JSON_SUBPROTOCOL = "tipmeter.v1.json";
export const MSGPACK_SUBPROTOCOL = "tipmeter.v1.msgpack";

/** Reconnect delays: full jitter between 0 and a bound that doubles from MIN to MAX. */
export const BACKOFF_MS_MIN = 200;
export const BACKOFF_MS_MAX = 15_000;
/** Operations waiting for an answer at most; more are refused at once (code `busy`). */
export const PENDING_MAX = 1_000;
/** Times an operation is sent again after a retryable error (rate_limited, busy, unavailable). */
export const RETRIES_MAX = 5;
/** A ping every interval; no pong within the timeout means the connection is dead. */
export const HEARTBEAT_INTERVAL_MS = 15_000;
export const HEARTBEAT_TIMEOUT_MS = 10_000;
/** Longest wait for a connection to open and send its welcome. */
export const OPEN_TIMEOUT_MS = 10_000;
/** Every amount is an integer strictly below this bound (2**53). */
export const AMOUNT_LIMIT_MINOR = 2 ** 53;
/** Error codes after which the same message (same id) may be sent again later. */
export const RETRYABLE_CODES = Object.freeze(["rate_limited", "busy", "unavailable"]);
/** The close code after which the client must not reconnect (it kept sending bad frames). */
export const CLOSE_TOO_MANY_ERRORS = 4029;

const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const EVENT_ID_PATTERN = /^([0-9]{1,20})-([0-9]{1,20})$/;
/** Digits after the decimal point of the currencies the pages show (ISO-4217 exponents). */
const MINOR_DIGITS = Object.freeze({ BHD: 3, JPY: 0, KRW: 0, KWD: 3, OMR: 3, TND: 3 });
const SYMBOLS = Object.freeze({ EUR: "€", GBP: "£", JPY: "¥", USD: "$" });

/** Mint an operation id: the prefix and 96 random bits (keep it until the answer comes). */
export function newId(prefix = "op") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  const text = btoa(String.fromCharCode(...bytes));
  return `${prefix}-${text.replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "")}`;
}

/** Tell whether `value` is a protocol id (`[A-Za-z0-9_.-]{1,64}`). */
export function isId(value) {
  return typeof value === "string" && ID_PATTERN.test(value);
}

/** Tell whether `value` is an amount the protocol accepts: an integer in 1 … 2**53 - 1. */
export function isAmountMinor(value) {
  return Number.isSafeInteger(value) && value > 0;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): full jitter, a random whole
 * number of milliseconds in [0, min(maxMs, minMs · 2**attempt)).
 */
export function backoffDelayMs(
  attempt,
  { minMs = BACKOFF_MS_MIN, maxMs = BACKOFF_MS_MAX, random = Math.random } = {},
) {
  const bound = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}

/** Compare two event ids (`<ms>-<seq>`): negative, zero or positive, like a sort comparator. */
export function compareEventIds(a, b) {
  const x = EVENT_ID_PATTERN.exec(a);
  const y = EVENT_ID_PATTERN.exec(b);
  if (x === null || y === null) {
    throw new TypeError(`not an event id: ${x === null ? a : b}`);
  }
  // Parts may exceed 2**53, so they are compared as BigInts.
  const ms = BigInt(x[1]) - BigInt(y[1]);
  const seq = ms === 0n ? BigInt(x[2]) - BigInt(y[2]) : ms;
  return seq < 0n ? -1 : seq > 0n ? 1 : 0;
}

/** The event id for "everything since `ms` milliseconds after the epoch" (a subscribe cursor). */
export function eventIdAt(ms) {
  return `${Math.max(0, Math.floor(ms))}-0`;
}

/** The WebSocket URL with `ticket` as its query parameter. */
export function withTicket(url, ticket) {
  return `${url}${url.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`;
}

/** Digits after the decimal point of `currency` (2 unless listed). */
export function minorDigits(currency) {
  return MINOR_DIGITS[currency] ?? 2;
}

/**
 * `amountMinor` as text for display ("$1,234.50", "-€0.05", "1,000 CHF"), by integer and string
 * arithmetic only. Never parse its output back into an amount: keep the integer.
 */
export function formatMinor(amountMinor, currency) {
  if (!Number.isSafeInteger(amountMinor)) {
    throw new TypeError(`an amount is an integer number of minor units, not ${amountMinor}`);
  }
  const digits = minorDigits(currency);
  const sign = amountMinor < 0 ? "-" : "";
  const text = String(Math.abs(amountMinor)).padStart(digits + 1, "0");
  const whole = text.slice(0, text.length - digits).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const number = digits ? `${whole}.${text.slice(text.length - digits)}` : whole;
  const symbol = SYMBOLS[currency];
  return symbol === undefined ? `${sign}${number} ${currency}` : `${sign}${symbol}${number}`;
}

/**
 * What a person typed ("5", "12.50", "1,000.5") as an integer number of minor units of
 * `currency`, or null when it is not a plain non-negative amount with at most the currency's
 * digits after the point. The digits are joined as text, so no float is ever involved.
 */
export function parseMinor(text, currency) {
  const digits = minorDigits(currency);
  const match = /^\s*(\d{1,3}(?:,\d{3})*|\d+)(?:\.(\d*))?\s*$/.exec(String(text));
  if (match === null) {
    return null;
  }
  const fraction = match[2] ?? "";
  if (fraction.length > digits) {
    return null;
  }
  const joined = `${match[1].replaceAll(",", "")}${fraction.padEnd(digits, "0")}`;
  if (joined.length > 16) {
    return null;
  }
  const value = Number(joined);
  return Number.isSafeInteger(value) ? value : null;
}

/** A refusal from the server (or from the client's own bounds): `code` is the protocol's. */
export class RefusedError extends Error {
  constructor(code, message, { id = null, tab = null, neededMinor = null, retryAfterMs = null } = {}) {
    super(message || code);
    this.name = "RefusedError";
    this.code = code;
    this.id = id;
    this.tab = tab;
    this.neededMinor = neededMinor;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The client was closed (or may not reconnect) before the operation got its answer. */
export class DisconnectedError extends Error {
  constructor(message) {
    super(message);
    this.name = "DisconnectedError";
  }
}

const JSON_CODEC = Object.freeze({
  subprotocol: JSON_SUBPROTOCOL,
  encode: (message) => JSON.stringify(message),
  decode: (frame) => {
    if (typeof frame !== "string") {
      throw new TypeError("a JSON connection carries text frames");
    }
    return JSON.parse(frame);
  },
});

function msgpackCodec(msgpack) {
  if (typeof msgpack?.encode !== "function" || typeof msgpack?.decode !== "function") {
    throw new TypeError("encoding 'msgpack' needs the msgpack option: the @msgpack/msgpack module");
  }
  return Object.freeze({
    subprotocol: MSGPACK_SUBPROTOCOL,
    encode: (message) => msgpack.encode(message),
    decode: (frame) => {
      if (!(frame instanceof ArrayBuffer)) {
        throw new TypeError("a msgpack connection carries binary frames");
      }
      return msgpack.decode(new Uint8Array(frame));
    },
  });
}

/**
 * One viewer's, model's or broadcast tool's connection to tipmeter, kept open across failures.
 *
 *   const client = new TipmeterClient("wss://tips.example/ws", fetchTicket);
 *   client.addEventListener("tab", (e) => render(e.detail));
 *   await client.connect();
 *   const result = await client.tip("alice", 500, "USD", { message: "hi" });
 *
 * `ticket` is an async function returning a fresh ticket from your backend (called once per
 * connection), or a string for a single connection.
 */
export class TipmeterClient extends EventTarget {
  constructor(
    url,
    ticket,
    {
      encoding = "json",
      msgpack = null,
      reconnect = true,
      pendingMax = PENDING_MAX,
      backoffMinMs = BACKOFF_MS_MIN,
      backoffMaxMs = BACKOFF_MS_MAX,
      heartbeatIntervalMs = HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs = HEARTBEAT_TIMEOUT_MS,
      openTimeoutMs = OPEN_TIMEOUT_MS,
      random = Math.random,
      watchOnline = true,
    } = {},
  ) {
    super();
    if (encoding !== "json" && encoding !== "msgpack") {
      throw new TypeError("encoding is 'json' or 'msgpack'");
    }
    this.url = url;
    this._ticket = typeof ticket === "function" ? ticket : () => ticket;
    this._singleTicket = typeof ticket !== "function";
    this._codec = encoding === "msgpack" ? msgpackCodec(msgpack) : JSON_CODEC;
    this.reconnect = reconnect;
    this.pendingMax = pendingMax;
    this._backoff = { minMs: backoffMinMs, maxMs: backoffMaxMs, random };
    this._heartbeat = { intervalMs: heartbeatIntervalMs, timeoutMs: heartbeatTimeoutMs };
    this._openTimeoutMs = openTimeoutMs;
    this._watchOnline = watchOnline;
    /** "idle" until connect(), then "connecting" | "open" | "waiting", and "closed" at the end. */
    this.state = "idle";
    /** The welcome of the current (or last) connection. */
    this.welcome = null;
    /** The viewer's tab as last seen (null for models, or while the viewer has none). */
    this.tab = null;
    /** Rooms followed → id of the last event received from each (null: none yet). */
    this.cursors = new Map();
    /** Counters of what happened, for tests and dashboards. */
    this.stats = { connects: 0, reconnects: 0, resent: 0, duplicateEvents: 0, ticketFailures: 0 };
    this._pending = new Map();
    this._ws = null;
    this._generation = 0;
    this._attempt = 0;
    this._drainDelayMs = null;
    this._wakeUp = null;
    this._timers = new Set();
    this._connected = null;
    this._abandonCurrent = null;
    this._heartbeatId = null;
    this._onOnline = () => this._wake();
    this._onOffline = () => this._abandon("the browser went offline");
  }

  // -- lifecycle ------------------------------------------------------------------------------

  /**
   * Open the connection and keep it open; resolves with the first welcome. Rejects if the
   * client is closed first. Failed attempts are retried with backoff, so this waits as long as
   * the server is unreachable.
   */
  connect() {
    if (this.state !== "idle") {
      throw new Error("connect() is called once; the client reconnects by itself");
    }
    if (this._watchOnline && typeof window !== "undefined") {
      window.addEventListener("online", this._onOnline);
      window.addEventListener("offline", this._onOffline);
    }
    this._connected = deferred();
    this._run();
    return this._connected.promise;
  }

  /** Close for good; operations still waiting fail with DisconnectedError. */
  close() {
    this._stop(1000, "closed by the client");
  }

  /** Skip the rest of the current backoff delay and try to connect now. */
  reconnectNow() {
    this._wake();
  }

  _setState(state) {
    const previous = this.state;
    if (previous !== state) {
      this.state = state;
      this._emit("state", { state, previous });
    }
  }

  _stop(code, reason) {
    if (this.state === "closed") {
      return;
    }
    this._setState("closed");
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
    }
    for (const timer of this._timers) {
      clearTimeout(timer);
    }
    this._timers.clear();
    // End the connection in progress (its promise resolves, so the run loop can return).
    this._abandonCurrent?.(reason, 1000);
    this._wake();
    const error = new DisconnectedError(`the client is closed: ${reason}`);
    for (const pending of this._pending.values()) {
      pending.reject(error);
    }
    this._pending.clear();
    this._connected?.reject(error);
    this._emit("closed", { code, reason });
  }

  async _run() {
    while (this.state !== "closed") {
      this._setState("connecting");
      const outcome = await this._connectOnce();
      if (this.state === "closed") {
        return;
      }
      if (outcome.code === CLOSE_TOO_MANY_ERRORS || !this.reconnect || this._singleTicket) {
        this._stop(outcome.code, outcome.reason || "the connection closed");
        return;
      }
      let delayMs = this._drainDelayMs;
      this._drainDelayMs = null;
      if (delayMs === null) {
        delayMs = backoffDelayMs(this._attempt, this._backoff);
        this._attempt += 1;
      }
      this._setState("waiting");
      await this._sleep(delayMs);
    }
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._timers.delete(timer);
        this._wakeUp = null;
        resolve();
      }, ms);
      this._timers.add(timer);
      this._wakeUp = () => {
        clearTimeout(timer);
        this._timers.delete(timer);
        this._wakeUp = null;
        resolve();
      };
    });
  }

  _wake() {
    this._wakeUp?.();
  }

  _later(ms, fn) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, ms);
    this._timers.add(timer);
    return timer;
  }

  _cancel(timer) {
    clearTimeout(timer);
    this._timers.delete(timer);
  }

  /** One connection, from ticket to close: resolves with {code, reason} when it is over. */
  async _connectOnce() {
    let ticket;
    try {
      ticket = await this._ticket();
    } catch (error) {
      this.stats.ticketFailures += 1;
      return { code: 0, reason: `no ticket: ${error?.message ?? error}` };
    }
    if (this.state === "closed") {
      return { code: 1000, reason: "closed" };
    }
    const generation = ++this._generation;
    let ws;
    try {
      ws = new WebSocket(withTicket(this.url, ticket), [this._codec.subprotocol]);
    } catch (error) {
      return { code: 0, reason: `cannot connect: ${error?.message ?? error}` };
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    return new Promise((resolve) => {
      let welcomed = false;
      let heartbeat = null;
      let awaitingPong = null;
      let finished = false;
      const finish = (code, reason) => {
        if (finished) {
          return;
        }
        finished = true;
        this._cancel(openTimer);
        this._cancel(heartbeat);
        this._cancel(awaitingPong);
        if (this._ws === ws) {
          this._ws = null;
        }
        detach(ws);
        this._abandonCurrent = null;
        resolve({ code, reason });
      };
      const beat = () => {
        heartbeat = this._later(this._heartbeat.intervalMs, () => {
          const id = newId("hb");
          this._heartbeatId = id;
          this._sendRaw({ type: "ping", id });
          awaitingPong = this._later(this._heartbeat.timeoutMs, () => {
            abandon("no pong within the heartbeat timeout");
          });
        });
      };
      const abandon = (reason, code = 3000) => {
        // A dead network may never deliver the close handshake: stop waiting for it.
        detach(ws);
        try {
          ws.close(code, reason.slice(0, 120));
        } catch {
          // The socket is already closing.
        }
        finish(code === 1000 ? 1000 : 1006, reason);
      };
      this._abandonCurrent = abandon;
      const openTimer = this._later(this._openTimeoutMs, () => {
        if (!welcomed) {
          abandon("no welcome within the open timeout");
        }
      });
      ws.onmessage = (frame) => {
        let message;
        try {
          message = this._codec.decode(frame.data);
        } catch (error) {
          this._emit("error", { type: "error", code: "malformed_frame", message: String(error) });
          return;
        }
        if (message === null || typeof message !== "object") {
          return;
        }
        if (!welcomed) {
          if (message.type !== "welcome") {
            abandon(`expected a welcome, got ${message.type}`);
            return;
          }
          welcomed = true;
          this._cancel(openTimer);
          this._onWelcome(message, generation);
          beat();
          return;
        }
        if (message.type === "pong" && message.id === this._heartbeatId) {
          this._cancel(awaitingPong);
          beat();
          return;
        }
        this._handle(message);
      };
      ws.onclose = (event) => finish(event.code, event.reason);
      ws.onerror = () => {
        // The close event follows with the details; nothing to do here.
      };
    });
  }

  /** Drop the current connection as dead (the reconnect logic takes over). */
  _abandon(reason) {
    this._abandonCurrent?.(reason);
  }

  _onWelcome(welcome, generation) {
    this.welcome = welcome;
    this.stats.connects += 1;
    if (this.stats.connects > 1) {
      this.stats.reconnects += 1;
    }
    this._attempt = 0;
    if (welcome.tab) {
      this._seeTab(welcome.tab);
    }
    this._setState("open");
    this._emit("welcome", welcome);
    // Follow the rooms again after the last event seen; a room whose subscribe is still
    // waiting is covered by sending that subscribe again (built with the current cursor).
    const waiting = new Set();
    for (const pending of this._pending.values()) {
      if (pending.room !== undefined) {
        waiting.add(pending.room);
      }
    }
    for (const room of this.cursors.keys()) {
      if (!waiting.has(room)) {
        this._resubscribe(room);
      }
    }
    let resent = 0;
    for (const pending of this._pending.values()) {
      if (pending.sentOn !== generation) {
        // sentOn 0: queued while disconnected, so this is its first send, not a repeat.
        resent += pending.sentOn === 0 ? 0 : 1;
        pending.sentOn = generation;
        this._sendRaw(pending.build());
      }
    }
    if (resent) {
      this.stats.resent += resent;
      this._emit("resent", { count: resent });
    }
    this._connected?.resolve(welcome);
    this._connected = null;
  }

  _resubscribe(room) {
    const id = newId("resub");
    this._request(id, () => this._subscribeMessage(room, id), { room }).catch((error) => {
      this._forget(room, error);
      this._emit("error", { type: "error", id, code: error.code ?? "disconnected", message: error.message });
    });
  }

  // -- receiving ------------------------------------------------------------------------------

  _handle(message) {
    switch (message.type) {
      case "result":
      case "subscribed":
      case "unsubscribed":
      case "pong": {
        if (message.tab) {
          this._seeTab(message.tab);
        }
        const pending = message.id ? this._pending.get(message.id) : undefined;
        if (pending !== undefined) {
          this._pending.delete(message.id);
          pending.resolve(message);
        }
        if (message.type === "subscribed") {
          this._emit("subscribed", message);
        }
        break;
      }
      case "error":
        this._onError(message);
        break;
      case "event":
        this._onEvent(message);
        break;
      case "tab":
        this._seeTab(message.tab);
        break;
      case "warning":
        this._emit("warning", message);
        break;
      case "session":
        this._emit("session", message);
        break;
      case "refunds_waiting":
        // To a model: the whole list of refunds waiting for her consent (it replaces the last).
        this._emit("refunds_waiting", message);
        break;
      case "subscription":
        // To a viewer: one of her memberships, whole (issue 16); the newest has the highest
        // `updated_at_ms`.
        this._emit("subscription", message.subscription);
        break;
      case "drain":
        // The server spreads its clients over a few seconds; never wait longer than the cap.
        this._drainDelayMs = Number.isSafeInteger(message.reconnect_after_ms)
          ? Math.min(Math.max(0, message.reconnect_after_ms), this._backoff.maxMs)
          : null;
        this._emit("drain", message);
        break;
      default:
        // A newer server may send types this client does not know: ignore them.
        break;
    }
  }

  _onEvent(message) {
    if (!this.cursors.has(message.room)) {
      return; // a late event of a room this client stopped following
    }
    const cursor = this.cursors.get(message.room);
    if (cursor !== null && compareEventIds(message.id, cursor) <= 0) {
      this.stats.duplicateEvents += 1;
      return;
    }
    this.cursors.set(message.room, message.id);
    this._emit("event", message);
  }

  _onError(error) {
    if (error.tab) {
      this._seeTab(error.tab);
    }
    const pending = error.id ? this._pending.get(error.id) : undefined;
    if (pending === undefined) {
      this._emit("error", error);
      return;
    }
    if (RETRYABLE_CODES.includes(error.code) && pending.retries < RETRIES_MAX) {
      pending.retries += 1;
      const delayMs = Number.isSafeInteger(error.retry_after_ms)
        ? error.retry_after_ms
        : backoffDelayMs(pending.retries, this._backoff);
      this._later(delayMs, () => {
        if (this._pending.get(error.id) === pending && this.state === "open") {
          this._sendRaw(pending.build());
        }
      });
      return;
    }
    this._pending.delete(error.id);
    pending.reject(
      new RefusedError(error.code, error.message, {
        id: error.id,
        tab: error.tab ?? null,
        neededMinor: error.needed_minor ?? null,
        retryAfterMs: error.retry_after_ms ?? null,
      }),
    );
  }

  _seeTab(tab) {
    const current = this.tab;
    const newer =
      current === null ||
      (tab.tab_id === current.tab_id
        ? tab.version > current.version
        : tab.state === "open" || current.state !== "open");
    if (newer) {
      this.tab = tab;
      this._emit("tab", tab);
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // -- sending --------------------------------------------------------------------------------

  _sendRaw(message) {
    const ws = this._ws;
    if (ws !== null && ws.readyState === WebSocket.OPEN && this.state === "open") {
      ws.send(this._codec.encode(message));
      return true;
    }
    return false;
  }

  /**
   * Keep an operation until its answer: send it now if connected, and again with the same id
   * on every new connection until the answer comes.
   */
  _request(id, build, extra = {}) {
    if (this.state === "closed") {
      return Promise.reject(new DisconnectedError("the client is closed"));
    }
    if (this._pending.has(id)) {
      return Promise.reject(new Error(`operation ${id} is already waiting for its answer`));
    }
    if (this._pending.size >= this.pendingMax) {
      return Promise.reject(
        new RefusedError("busy", `more than ${this.pendingMax} operations are waiting`, { id }),
      );
    }
    return new Promise((resolve, reject) => {
      const pending = { build, resolve, reject, retries: 0, sentOn: 0, ...extra };
      this._pending.set(id, pending);
      if (this._sendRaw(build())) {
        pending.sentOn = this._generation;
      }
    });
  }

  /** The operations waiting for their answer: id → message (a copy, for display). */
  pending() {
    return new Map([...this._pending].map(([id, pending]) => [id, pending.build()]));
  }

  /**
   * Tip `amountMinor` (an integer of minor units) of `currency` to `room`'s model. Resolves
   * with the `result` (status `applied`, or `duplicate` after a resend); rejects with a
   * RefusedError (`over_cap`, `no_open_tab` …). Pass `id` to retry a tip whose answer you lost.
   */
  tip(room, amountMinor, currency, { message = "", anonymous = false, id = newId("tip") } = {}) {
    if (!isAmountMinor(amountMinor)) {
      return Promise.reject(
        new TypeError(`amountMinor must be an integer in 1 … 2**53 - 1, not ${amountMinor}`),
      );
    }
    if (!isId(id) || !isId(room)) {
      return Promise.reject(new TypeError("ids and rooms match [A-Za-z0-9_.-]{1,64}"));
    }
    const frame = { type: "tip", id, room, amount_minor: amountMinor, currency };
    if (message) {
      frame.message = message;
    }
    if (anonymous) {
      frame.anonymous = true;
    }
    return this._request(id, () => frame);
  }

  /** Start a metered show (`private`, `spy` or `cam2cam`) with `room`'s model (viewers). */
  startSession(room, kind, { id = newId("show") } = {}) {
    return this._request(id, () => ({ type: "session_start", id, room, kind }));
  }

  /** Stop a session: the viewer who started it, or the room's model. */
  stopSession(sessionId, { id = newId("stop") } = {}) {
    return this._request(id, () => ({ type: "session_stop", id, session_id: sessionId }));
  }

  /**
   * Accept (`accept` true) or decline a refund waiting for the model's consent (models only;
   * `refundId` from a `refunds_waiting` message). Resolves with the `result`.
   */
  answerRefund(refundId, accept, { id = newId("refund") } = {}) {
    if (typeof refundId !== "string" || typeof accept !== "boolean") {
      return Promise.reject(new TypeError("answerRefund(refundId: string, accept: boolean)"));
    }
    return this._request(id, () => ({ type: "refund_answer", id, refund_id: refundId, accept }));
  }

  /**
   * Set the room's prices (models): `{private: {rate_per_minute_minor, minimum_s}, …}`, each
   * rate an integer number of minor units a minute.
   */
  setRates(rates, { id = newId("rates") } = {}) {
    for (const [kind, rate] of Object.entries(rates)) {
      if (!isAmountMinor(rate?.rate_per_minute_minor)) {
        return Promise.reject(new TypeError(`rates.${kind}.rate_per_minute_minor is not an amount`));
      }
    }
    return this._request(id, () => ({ type: "set_rates", id, rates }));
  }

  /**
   * Follow `room`'s events after the event id `after` (null: from now on). Events arrive as
   * `event` events, each once; after a reconnect the client follows again from the last one.
   */
  subscribe(room, { after = null } = {}) {
    this.cursors.set(room, after);
    const id = newId("sub");
    return this._request(id, () => this._subscribeMessage(room, id), { room }).catch((error) => {
      this._forget(room, error);
      throw error;
    });
  }

  /** A room the server refused to follow is not followed again on the next connection. */
  _forget(room, error) {
    if (error instanceof RefusedError && !this._pendingFor(room)) {
      this.cursors.delete(room);
    }
  }

  _pendingFor(room) {
    for (const pending of this._pending.values()) {
      if (pending.room === room) {
        return true;
      }
    }
    return false;
  }

  _subscribeMessage(room, id) {
    const cursor = this.cursors.get(room) ?? null;
    const message = { type: "subscribe", id, room };
    if (cursor !== null) {
      message.after = cursor;
    }
    return message;
  }

  /** Stop following `room`. */
  unsubscribe(room) {
    this.cursors.delete(room);
    const id = newId("unsub");
    return this._request(id, () => ({ type: "unsubscribe", id, room }));
  }

  /** A round trip through the server; resolves with the `pong`. */
  ping() {
    const id = newId("ping");
    return this._request(id, () => ({ type: "ping", id }));
  }
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  // connect()'s caller may not wait; a rejection nobody awaits must not be reported as unhandled.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function detach(ws) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}
