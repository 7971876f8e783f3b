/**
 * Tests of clients/js/tipmeter.js that run inside Chromium (tests/pages/test_client.py runs
 * each export as one pytest test). They talk to the real server; when a test needs the network
 * to fail, it asks the Python side (window.tipmeterTest) to cut or silence the TCP proxy that
 * sits between the client and the server.
 */

import * as msgpack from "/js/vendor/msgpack/index.mjs";
import {
  DisconnectedError,
  RefusedError,
  TipmeterClient,
  backoffDelayMs,
  compareEventIds,
  eventIdAt,
  formatMinor,
  isAmountMinor,
  newId,
  parseMinor,
  withTicket,
} from "/js/tipmeter.js";

function check(condition, what) {
  if (!condition) {
    throw new Error(`check failed: ${what}`);
  }
}

function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) {
    throw new Error(`${what}: expected ${e}, got ${a}`);
  }
}

async function until(predicate, what, timeoutMs = 8_000) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await predicate()) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

async function post(path, body, headers = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  check(response.ok, `${path} answered ${response.status}: ${JSON.stringify(data)}`);
  return data;
}

/** A ticket source that counts its calls and, while `gate.closed`, holds them back. */
function tickets(role, subject) {
  const source = {
    calls: 0,
    closed: false,
    release: () => {},
    fetch: async () => {
      source.calls += 1;
      while (source.closed) {
        await new Promise((resolve) => {
          source.release = resolve;
        });
      }
      return (await post("/demo/tickets", { role, subject, name: subject })).ticket;
    },
    open() {
      source.closed = false;
      source.release();
    },
  };
  return source;
}

async function openTab(customer, capMinor = 100_000) {
  return post(
    "/demo/tabs",
    { customer, cap_minor: capMinor, payment_method: "tok_visa" },
    { "Idempotency-Key": newId("open") },
  );
}

const control = (action, args = {}) => window.tipmeterTest(action, args);

// -- pure helpers ---------------------------------------------------------------------------

export async function helpersKeepMoneyInIntegers() {
  same(
    [0, 1, 123, 100_000, 123_456_789, -5].map((a) => formatMinor(a, "USD")),
    ["$0.00", "$0.01", "$1.23", "$1,000.00", "$1,234,567.89", "-$0.05"],
    "formatMinor USD",
  );
  same(
    [formatMinor(1_500, "JPY"), formatMinor(1_234, "BHD"), formatMinor(250, "CHF")],
    ["¥1,500", "1.234 BHD", "2.50 CHF"],
    "formatMinor of other exponents",
  );
  same(formatMinor(2 ** 53 - 1, "USD"), "$90,071,992,547,409.91", "the largest amount");
  let threw = false;
  try {
    formatMinor(1.5, "USD");
  } catch (error) {
    threw = error instanceof TypeError;
  }
  check(threw, "formatMinor refuses a float");
  same(
    ["5", "12.5", "12.50", "0.01", " 1,000.25 ", "1000"].map((t) => parseMinor(t, "USD")),
    [500, 1_250, 1_250, 1, 100_025, 100_000],
    "parseMinor of good input",
  );
  same(
    ["", "1.234", "-5", "1e3", "abc", "1,00", "0x10", "5.", "99999999999999999"].map((t) =>
      parseMinor(t, "USD"),
    ),
    [null, null, null, null, null, null, null, 500, null],
    "parseMinor of bad input",
  );
  same(parseMinor("1500", "JPY"), 1_500, "parseMinor JPY");
  same(parseMinor("0.1", "USD"), 10, "0.1 is ten cents, exactly");
  same(
    [1, 500, 2 ** 53 - 1, 0, -1, 1.5, 2 ** 53, "500", true, Number.NaN, null].map(isAmountMinor),
    [true, true, true, false, false, false, false, false, false, false, false],
    "isAmountMinor",
  );
}

export async function backoffIsFullJitterAndBounded() {
  const bounds = [];
  for (let attempt = 0; attempt < 12; attempt += 1) {
    same(backoffDelayMs(attempt, { random: () => 0 }), 0, "the lowest delay is 0");
    bounds.push(backoffDelayMs(attempt, { random: () => 0.999_999_9 }) + 1);
  }
  same(
    bounds,
    [200, 400, 800, 1_600, 3_200, 6_400, 12_800, 15_000, 15_000, 15_000, 15_000, 15_000],
    "the bound doubles from 200 ms up to 15 s",
  );
  same(backoffDelayMs(1_000, { random: () => 0.5 }), 7_500, "a huge attempt stays at the cap");
  const spread = new Set(Array.from({ length: 200 }, () => backoffDelayMs(3)));
  check(spread.size > 50, "delays are spread over the whole range");
  check([...spread].every((d) => Number.isInteger(d) && d >= 0 && d < 1_600), "within [0, bound)");
}

export async function idsAndCursors() {
  const ids = new Set(Array.from({ length: 100 }, () => newId("tip")));
  same(ids.size, 100, "ids are unique");
  check([...ids].every((id) => /^tip-[A-Za-z0-9_-]{16}$/.test(id)), "ids match the protocol");
  same(
    [
      compareEventIds("1-0", "1-0"),
      compareEventIds("1-1", "1-0"),
      compareEventIds("2-0", "10-0"),
      compareEventIds("18446744073709551615-0", "18446744073709551614-9"),
      compareEventIds("9007199254740993-0", "9007199254740992-0"),
    ],
    [0, 1, -1, 1, 1],
    "compareEventIds (numbers beyond 2**53 included)",
  );
  same(eventIdAt(1_700_000_000_000.7), "1700000000000-0", "eventIdAt");
  same(withTicket("ws://h/ws", "v1.a+b/c"), "ws://h/ws?ticket=v1.a%2Bb%2Fc", "withTicket");
  same(withTicket("ws://h/ws?x=1", "t"), "ws://h/ws?x=1&ticket=t", "withTicket after a query");
}

export async function refusesFloatsBeforeSending() {
  const client = new TipmeterClient("ws://127.0.0.1:9/ws", async () => "never used");
  for (const amount of [5.5, 500.0000001, 2 ** 53, "500", true, Number.NaN, -1, 0]) {
    const error = await rejection(client.tip("room", amount, "USD"));
    check(error instanceof TypeError, `a tip of ${String(amount)} is refused`);
  }
  const rates = await rejection(client.setRates({ private: { rate_per_minute_minor: 6.5, minimum_s: 0 } }));
  check(rates instanceof TypeError, "a float rate is refused");
  same(client.pending().size, 0, "nothing waits to be sent");
  same(client.state, "idle", "nothing connected");
}

export async function keepsTheNewestTabAndDropsRepeatedEvents() {
  const client = new TipmeterClient("ws://127.0.0.1:9/ws", async () => "never used");
  const seen = [];
  client.addEventListener("tab", (e) => seen.push(`${e.detail.tab_id}@${e.detail.version}`));
  const tab = (id, version, state = "open") => ({ type: "tab", tab: { tab_id: id, version, state } });
  const pushes = [tab("a", 2), tab("a", 1), tab("a", 2), tab("a", 3), tab("b", 1), tab("a", 9, "settling")];
  for (const message of pushes) {
    client._handle(message);
  }
  same(seen, ["a@2", "a@3", "b@1"], "older versions and a closed old tab are ignored");
  const events = [];
  client.addEventListener("event", (e) => events.push(e.detail.id));
  client.cursors.set("r", "5-0");
  for (const id of ["4-9", "5-0", "5-1", "5-1", "6-0"]) {
    client._handle({ type: "event", room: "r", id, event: "tip", data: {} });
  }
  client._handle({ type: "event", room: "other", id: "7-0", event: "tip", data: {} });
  same(events, ["5-1", "6-0"], "events at or before the cursor, and of rooms not followed, are dropped");
  same(client.cursors.get("r"), "6-0", "the cursor follows");
  same(client.stats.duplicateEvents, 3, "repeats are counted");
}

// -- against the real server ----------------------------------------------------------------

export async function resumesRoomEventsAfterTheLastOne({ proxiedWs, directWs, room, customer }) {
  await openTab(customer);
  const source = tickets("model", room);
  const model = new TipmeterClient(proxiedWs, source.fetch, { backoffMaxMs: 400 });
  const received = [];
  model.addEventListener("event", (e) => received.push(e.detail.data.tip_id));
  await model.connect();
  await model.subscribe(room);
  const viewer = new TipmeterClient(directWs, tickets("viewer", customer).fetch);
  await viewer.connect();
  try {
    for (const id of ["t-a", "t-b"]) {
      await viewer.tip(room, 100, "USD", { id });
    }
    await until(() => received.length === 2, "the first two events");
    source.closed = true; // the reconnect waits for its ticket until the tips below are in
    await control("cut");
    await until(() => model.state !== "open", "the model client to notice the cut");
    for (const id of ["t-c", "t-d"]) {
      await viewer.tip(room, 100, "USD", { id });
    }
    source.open();
    await until(() => received.length >= 4, "the events made during the outage");
    await new Promise((resolve) => setTimeout(resolve, 300)); // any repeat would arrive now
    same(received, ["t-a", "t-b", "t-c", "t-d"], "every event once, in order");
    same(source.calls, 2, "one fresh ticket per connection");
    same(model.stats.reconnects, 1, "one reconnect");
    return model.stats;
  } finally {
    model.close();
    viewer.close();
  }
}

export async function forgetsARoomItMayNotFollow({ directWs, room }) {
  const model = new TipmeterClient(directWs, tickets("model", room).fetch);
  await model.connect();
  try {
    const refused = await rejection(model.subscribe("demo-someone-else"));
    check(refused instanceof RefusedError && refused.code === "not_allowed", "a model follows her room");
    same([...model.cursors.keys()], [], "the refused room is not followed");
    same((await model.subscribe(room)).type, "subscribed", "her own room");
    same([...model.cursors.keys()], [room], "followed");
  } finally {
    model.close();
  }
}

export async function resendsAnUnansweredTipWithTheSameId({ proxiedWs, customer, room }) {
  const tab = await openTab(customer);
  const viewer = new TipmeterClient(proxiedWs, tickets("viewer", customer).fetch);
  await viewer.connect();
  try {
    await control("swallow", { on: true });
    const answer = viewer.tip(room, 700, "USD", { id: "lost-answer" });
    await until(
      async () => (await control("tab", { customer, tab_id: tab.tab_id })).accrued_minor === 700,
      "the server to apply the tip",
    );
    await control("swallow", { on: false });
    await control("cut");
    const result = await answer;
    same([result.id, result.status], ["lost-answer", "duplicate"], "the repeat's answer");
    same(result.tab.accrued_minor, 700, "applied once");
    same(viewer.stats.resent, 1, "sent again once");
    const lines = (await control("tab", { customer, tab_id: tab.tab_id })).lines;
    same(lines.map((l) => l.line_id), ["tip:lost-answer"], "one line");
  } finally {
    viewer.close();
  }
}

export async function queuesWhileDisconnectedWithinBounds({ directWs, customer, room }) {
  await openTab(customer);
  const source = tickets("viewer", customer);
  source.closed = true;
  const viewer = new TipmeterClient(directWs, source.fetch, { pendingMax: 2 });
  const connected = viewer.connect();
  const first = viewer.tip(room, 100, "USD");
  const second = viewer.tip(room, 200, "USD");
  const third = await rejection(viewer.tip(room, 300, "USD"));
  check(third instanceof RefusedError && third.code === "busy", "the third waits nowhere");
  same(viewer.pending().size, 2, "two wait");
  source.open();
  await connected;
  same([(await first).status, (await second).status], ["applied", "applied"], "sent once connected");
  same(viewer.stats.resent, 0, "a first send is not a resend");
  // Closing fails what still waits (the pong cannot arrive before close() runs).
  const late = viewer.ping();
  viewer.close();
  check((await rejection(late)) instanceof DisconnectedError, "close() fails what waits");
  same(viewer.state, "closed", "closed for good");
  check((await rejection(viewer.tip(room, 100, "USD"))) instanceof DisconnectedError, "no sends after close");
  await new Promise((resolve) => setTimeout(resolve, 400));
  same(source.calls, 1, "no connection is attempted after close()");
}

export async function followsADrainToAnotherServer({ drainingWs, customer, room }) {
  await openTab(customer);
  const source = tickets("viewer", customer);
  const viewer = new TipmeterClient(drainingWs, source.fetch);
  const drains = [];
  viewer.addEventListener("drain", (e) => drains.push(e.detail.reconnect_after_ms));
  const first = await viewer.connect();
  try {
    await window.tipmeterDrain(); // the proxy now leads elsewhere; this server drains
    await until(() => drains.length === 1, "the drain message");
    check(drains[0] >= 0 && drains[0] <= 5_000, "the server's delay");
    await until(() => viewer.state === "open" && viewer.stats.reconnects === 1, "a reconnect", 9_000);
    check(viewer.welcome.connection_id !== first.connection_id, "a new connection");
    same((await viewer.tip(room, 250, "USD")).status, "applied", "the new server applies tips");
    same(source.calls, 2, "one ticket per connection");
  } finally {
    viewer.close();
  }
}

export async function aSilentConnectionIsDetectedAndReplaced({ proxiedWs, room }) {
  const model = new TipmeterClient(proxiedWs, tickets("model", room).fetch, {
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 300,
    openTimeoutMs: 1_000,
    backoffMaxMs: 300,
  });
  await model.connect();
  try {
    await control("swallow", { on: true }); // the TCP connection stays up, but nothing arrives
    await until(() => model.state !== "open", "the heartbeat to give up", 3_000);
    await control("swallow", { on: false });
    await until(() => model.state === "open", "a new connection", 8_000);
    const pong = await model.ping();
    check(Number.isSafeInteger(pong.server_time_ms), "the new connection answers");
    check(model.stats.reconnects >= 1, "it reconnected");
  } finally {
    model.close();
  }
}

export async function speaksMessagePack({ directWs, customer, room }) {
  await openTab(customer, 5_000);
  const viewer = new TipmeterClient(directWs, tickets("viewer", customer).fetch, {
    encoding: "msgpack",
    msgpack,
  });
  const welcome = await viewer.connect();
  try {
    same([welcome.protocol, welcome.role, welcome.tab.cap_minor], [1, "viewer", 5_000], "welcome");
    const result = await viewer.tip(room, 1_234, "USD", { message: "binary" });
    same([result.status, result.tab.accrued_minor], ["applied", 1_234], "the tip");
    check(Number.isSafeInteger(result.tab.remaining_minor), "amounts decode as integers");
    const refused = await rejection(viewer.tip(room, 10_000, "USD"));
    check(refused instanceof RefusedError && refused.code === "over_cap", "over the cap");
    same(refused.tab.remaining_minor, 5_000 - 1_234, "the refusal carries the tab");
  } finally {
    viewer.close();
  }
}
