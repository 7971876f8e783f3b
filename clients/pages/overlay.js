/**
 * The broadcast overlay, for an OBS browser source: `overlay.html#room=ROOM&token=TOKEN`, where
 * TOKEN is the room's event-feed token (the model console makes the link). The fragment never
 * reaches a server log or a referrer; the page trades the token for a one-connection
 * `broadcast` ticket (`POST /overlay/ticket`) each time it connects.
 *
 * Alerts appear once each, in order. The id of the last event shown is kept in localStorage,
 * so when the connection drops, or OBS reloads the source, the overlay follows the room again
 * right after it: what happened meanwhile is shown, nothing is shown twice. The queue of alerts
 * waiting their turn is bounded; past ALERT_QUEUE_MAX the extra tips are summed into one alert.
 *
 * A catalog purchase (issue 17) shows as a tip whose message names the item.
 *
 * Optional fragment parameters: `seconds` (how long an alert stays, 2–30, default 7).
 */

import { compareEventIds, formatMinor } from "/js/tipmeter.js";
import { $, backend, el, makeClient } from "/pages/common.js";

/** Alerts on screen at once, alerts waiting their turn, and alerts kept in the hidden log. */
const ALERTS_VISIBLE_MAX = 3;
const ALERT_QUEUE_MAX = 100;
const ALERT_LOG_MAX = 100;
/** How long an alert stays (seconds, from the fragment within these bounds), and its exit. */
const ALERT_SECONDS_DEFAULT = 7;
const ALERT_SECONDS_MIN = 2;
const ALERT_SECONDS_MAX = 30;
const LEAVE_MS = 600;
const EVENT_ID = /^[0-9]{1,20}-[0-9]{1,20}$/;

const fragment = new URLSearchParams(location.hash.slice(1));
const room = fragment.get("room") ?? "";
const token = fragment.get("token") ?? "";
const seconds = Number(fragment.get("seconds") ?? ALERT_SECONDS_DEFAULT);
const showMs =
  1000 *
  (Number.isSafeInteger(seconds)
    ? Math.min(ALERT_SECONDS_MAX, Math.max(ALERT_SECONDS_MIN, seconds))
    : ALERT_SECONDS_DEFAULT);
const cursorKey = `tipmeter.overlay.${room}.after`;

/** Events waiting their turn: {id, tip} (tip null for events that only move the cursor). */
const queue = [];
/** Tips past the queue's bound, summed by currency: the summary alert shows them. */
let overflow = { count: 0, byCurrency: new Map(), lastId: null };
let visible = 0;

function problem(text) {
  $("problem").textContent = text;
  $("problem").hidden = false;
}

function storedCursor() {
  try {
    const value = localStorage.getItem(cursorKey);
    return value !== null && EVENT_ID.test(value) ? value : null;
  } catch {
    return null; // storage may be off in some sources; then the overlay starts from now
  }
}

function remember(eventId) {
  try {
    const current = localStorage.getItem(cursorKey);
    if (current === null || !EVENT_ID.test(current) || compareEventIds(eventId, current) > 0) {
      localStorage.setItem(cursorKey, eventId);
    }
  } catch {
    // Without storage a reload starts from now; the live connection still resumes exactly.
  }
}

function logAlert(id, text) {
  const log = $("alert-log");
  log.append(el("li", { dataset: { eventId: id } }, text));
  while (log.children.length > ALERT_LOG_MAX) {
    log.firstElementChild.remove();
  }
  document.body.dataset.alertsShown = String(Number(document.body.dataset.alertsShown ?? 0) + 1);
}

function showAlert(node, id, text) {
  visible += 1;
  node.dataset.eventId = id;
  $("alerts").append(node);
  logAlert(id, text);
  setTimeout(() => {
    node.classList.add("leaving");
    setTimeout(() => {
      node.remove();
      visible -= 1;
      pump();
    }, LEAVE_MS);
  }, showMs);
}

function tipAlert(id, tip) {
  const who = tip.anonymous || !tip.name ? "Anonymous" : tip.name;
  const amount = formatMinor(tip.amount_minor, tip.currency);
  const node = el(
    "div",
    { class: "alert" },
    el("span", { class: "amount" }, amount),
    el("span", { class: "who" }, `${who} tipped!`),
    el("span", { class: "message" }, tip.message ?? ""),
  );
  showAlert(node, id, `${who} tipped ${amount}${tip.message ? `: ${tip.message}` : ""}`);
}

function summaryAlert() {
  const { count, byCurrency, lastId } = overflow;
  overflow = { count: 0, byCurrency: new Map(), lastId: null };
  const amounts = [...byCurrency].map(([currency, sum]) => formatMinor(sum, currency)).join(" + ");
  const node = el(
    "div",
    { class: "alert summary" },
    el("span", { class: "amount" }, amounts),
    el("span", { class: "who" }, `${count} more tips!`),
    el("span", { class: "message" }, "Thank you all"),
  );
  remember(lastId);
  showAlert(node, lastId, `${count} more tips: ${amounts}`);
}

/** Show what waits, in order, as room on screen allows; move the kept cursor as we go. */
function pump() {
  while (visible < ALERTS_VISIBLE_MAX) {
    const next = queue.shift();
    if (next === undefined) {
      if (overflow.count) {
        summaryAlert();
        continue;
      }
      return;
    }
    remember(next.id);
    if (next.tip !== null) {
      tipAlert(next.id, next.tip);
    }
  }
}

/**
 * The tip an event shows, or null: a tip, or a catalog purchase shown as a tip whose message
 * names the item ("Dance: the slow one"), as the event feed shows it (docs/purchases.md).
 */
function tipOf(event) {
  if (event.event === "tip") {
    return event.data;
  }
  if (event.event === "purchase") {
    const { item_name: item, message } = event.data;
    return { ...event.data, message: message ? `${item}: ${message}` : item };
  }
  return null;
}

function onEvent(e) {
  const event = e.detail;
  const tip = tipOf(event);
  if (queue.length >= ALERT_QUEUE_MAX) {
    if (tip !== null) {
      overflow.count += 1;
      overflow.byCurrency.set(tip.currency, (overflow.byCurrency.get(tip.currency) ?? 0) + tip.amount_minor);
    }
    overflow.lastId = event.id;
    return;
  }
  queue.push({ id: event.id, tip });
  pump();
}

async function main() {
  if (!room || !token) {
    problem("This overlay link is incomplete: make one in the model console.");
    return;
  }
  let client = null;
  let revoked = false;
  const ticket = async () => {
    try {
      return (await backend("POST", "/overlay/ticket", { body: { room, token } })).ticket;
    } catch (error) {
      if (error.code === "invalid_token") {
        // A revoked link never works again: stop instead of retrying forever.
        revoked = true;
        problem("This overlay link no longer works: make a new one in the model console.");
        client?.close();
      }
      throw error;
    }
  };
  client = await makeClient(ticket);
  window.tipmeter = { client };
  client.addEventListener("state", (e) => {
    document.body.dataset.state = e.detail.state;
  });
  client.addEventListener("event", onEvent);
  try {
    await client.connect();
  } catch (error) {
    if (revoked) {
      return; // the page already says why
    }
    throw error;
  }
  await client.subscribe(room, { after: storedCursor() });
  document.body.dataset.ready = "true";
}

main().catch((error) => problem(`The overlay could not start: ${error.message}`));
