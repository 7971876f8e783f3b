/**
 * The model console: the room's live tip feed, her earnings, the shows running in her room
 * (which she can stop), her prices, and a link for the broadcast overlay.
 *
 * It follows the room from the events of the last HISTORY_MS, so a console opened mid-show
 * still lists the shows running and the latest tips; after a reconnect the client follows on
 * from the last event it saw, so nothing is listed twice or missed.
 *
 * Earnings: the welcome carries the total so far in each currency; each later event of a tip
 * or an ended show carries the new total (`earned_total_minor`). An event older than the
 * welcome is already in the welcome's total, so only newer events move the figure.
 */

import { eventIdAt, formatMinor, parseMinor } from "/js/tipmeter.js";
import { $, backend, clock, el, fatal, openPage, pageClient } from "/pages/common.js";
import { say, ticketProvider, trim } from "/pages/common.js";
import { startMenuEditor } from "/pages/model-menu.js";

/** Entries kept in the feed. */
const FEED_ITEMS_MAX = 50;
/** How far back the console reads the room's events when it opens. */
const HISTORY_MS = 12 * 60 * 60 * 1000;
/** Running shows listed at most (a tab funds a few; a room has a bounded audience). */
const SESSIONS_MAX = 200;
/** The longest minimum duration the form offers (the server has its own bound). */
const MINIMUM_S_MAX = 3_600;

const END_REASONS = {
  cap_reached: "the viewer's cap was reached",
  viewer_left: "the viewer left",
  model_left: "you left",
  settling: "the viewer's tab is settling",
  stopped: "stopped",
  owner_lost: "the billing server went away",
};

const page = {
  config: null,
  client: null,
  room: "",
  /** Currency → earnings in minor units. */
  earnings: new Map(),
  /** The server's clock at the latest welcome: events before it are in its earnings. */
  welcomeMs: 0,
  /** Session id → the show as its session_started event described it. */
  sessions: new Map(),
};

function eventMs(eventId) {
  return Number(eventId.slice(0, eventId.indexOf("-")));
}

function renderEarnings() {
  const items = [...page.earnings].map(([currency, amount]) =>
    el(
      "li",
      { dataset: { currency, minor: String(amount) } },
      el("span", { class: "what" }, currency),
      el("span", { class: "amount big" }, formatMinor(amount, currency)),
    ),
  );
  $("earnings").replaceChildren(...items);
  $("earnings-empty").hidden = items.length > 0;
}

function renderSessions() {
  const rows = [...page.sessions].map(([id, show]) =>
    el(
      "tr",
      { dataset: { sessionId: id } },
      el("td", { title: id }, `${show.kind[0].toUpperCase()}${show.kind.slice(1)}`),
      el("td", {}, clock(show.started_at_ms)),
      el("td", { class: "num" }, `${formatMinor(show.rate_per_minute_minor, show.currency)}/min`),
      el(
        "td",
        {},
        el(
          "button",
          { type: "button", class: "secondary", "aria-label": `Stop show ${id}`, onclick: () => stop(id) },
          "Stop",
        ),
      ),
    ),
  );
  $("sessions").querySelector("tbody").replaceChildren(...rows);
  $("sessions-empty").hidden = rows.length > 0;
}

function addFeed(event, text, amount = null) {
  const item = el(
    "li",
    { dataset: { eventId: event.id, event: event.event } },
    el("span", { class: "what" }, text),
  );
  if (amount !== null) {
    item.append(el("span", { class: "amount" }, amount));
  }
  $("feed").prepend(item);
  trim($("feed"), FEED_ITEMS_MAX);
  $("feed-empty").hidden = true;
}

function onEvent(e) {
  const event = e.detail;
  const data = event.data;
  switch (event.event) {
    case "tip": {
      const money = (amount) => formatMinor(amount, data.currency);
      const who = data.anonymous || !data.name ? "Anonymous" : data.name;
      const share = data.share_minor === undefined ? "" : ` · your share ${money(data.share_minor)}`;
      const message = data.message ? ` “${data.message}”` : "";
      addFeed(event, `${who} tipped${message}${share}`, money(data.amount_minor));
      break;
    }
    case "purchase": {
      // A catalog purchase (issue 17): a request earns her its share once she marks it done.
      const who = data.anonymous || !data.name ? "Anonymous" : data.name;
      const message = data.message ? ` “${data.message}”` : "";
      const what = data.kind === "unlock" ? "unlocked" : "asked for";
      const amount = formatMinor(data.amount_minor, data.currency);
      addFeed(event, `${who} ${what} ${data.item_name}${message}`, amount);
      break;
    }
    case "session_started":
      if (page.sessions.size < SESSIONS_MAX) {
        page.sessions.set(data.session_id, data);
      }
      addFeed(
        event,
        `A ${data.kind} show started at ${formatMinor(data.rate_per_minute_minor, data.currency)}/min`,
      );
      renderSessions();
      break;
    case "session_ended":
      page.sessions.delete(data.session_id);
      addFeed(
        event,
        `A ${data.kind} show ended after ${data.seconds} s ` +
          `(${END_REASONS[data.end_reason] ?? data.end_reason})`,
        formatMinor(data.amount_minor, data.currency),
      );
      renderSessions();
      break;
    default:
      break;
  }
  if (Number.isSafeInteger(data.earned_total_minor) && eventMs(event.id) >= page.welcomeMs) {
    page.earnings.set(data.currency, data.earned_total_minor);
    renderEarnings();
  }
}

function onWelcome(e) {
  const welcome = e.detail;
  page.welcomeMs = welcome.server_time_ms;
  page.earnings = new Map(Object.entries(welcome.earnings ?? {}));
  renderEarnings();
}

const REFUND_REASONS = {
  customer_request: "the viewer asks",
  show_not_delivered: "the show was not delivered",
  technical_problem: "a technical problem",
  duplicate: "charged twice",
  fraud: "fraud",
  goodwill: "goodwill",
  other: "other",
};

/** The refunds waiting for her answer: the server sends the whole list each time. */
function onRefundsWaiting(e) {
  // `refunds`: refund id → the refund, oldest first; its `lines`: line id → amount.
  const rows = Object.entries(e.detail.refunds ?? {}).map(([refundId, refund]) => {
    const lines = Object.entries(refund.lines ?? {})
      .map(([lineId, amount]) => `${lineId.replace(/^tip:/, "tip ").replace(/^sess:/, "show ")} ${formatMinor(amount, refund.currency)}`)
      .join(", ");
    const why = REFUND_REASONS[refund.reason] ?? refund.reason;
    const accept = el("button", { type: "button", dataset: { answer: "accept" } }, "Accept");
    const decline = el("button", { type: "button", class: "secondary", dataset: { answer: "decline" } }, "Decline");
    accept.addEventListener("click", () => answer(refundId, true, [accept, decline]));
    decline.addEventListener("click", () => answer(refundId, false, [accept, decline]));
    return el(
      "tr",
      { dataset: { refundId } },
      el("td", {}, clock(refund.requested_at_ms)),
      el("td", {}, refund.note ? `${why}: “${refund.note}”` : why),
      el("td", {}, lines),
      el("td", { class: "num", dataset: { minor: String(refund.amount_minor) } }, formatMinor(refund.amount_minor, refund.currency)),
      el("td", {}, clock(refund.answer_by_ms)),
      el("td", {}, accept, " ", decline),
    );
  });
  $("refunds").querySelector("tbody").replaceChildren(...rows);
  $("refunds-empty").hidden = rows.length > 0;
}

async function answer(refundId, accept, buttons) {
  for (const button of buttons) {
    button.disabled = true;
  }
  try {
    await page.client.answerRefund(refundId, accept);
    say($("refunds-status"), accept ? "Refund accepted." : "Refund declined.", "ok");
  } catch (error) {
    say($("refunds-status"), error.message, "bad");
    for (const button of buttons) {
      button.disabled = false;
    }
  }
}

async function stop(sessionId) {
  try {
    await page.client.stopSession(sessionId);
    say($("sessions-status"), "Show stopped.", "ok");
  } catch (error) {
    say($("sessions-status"), error.message, "bad");
  }
}

async function saveRates(event) {
  event.preventDefault();
  const currency = page.config.currency;
  const { rate_min_minor: low, rate_max_minor: high } = page.config;
  const rates = {};
  for (const kind of ["private", "spy", "cam2cam"]) {
    const rate = parseMinor($(`rate-${kind}`).value, currency);
    if (rate === null || rate < low || rate > high) {
      say(
        $("rates-status"),
        `The ${kind} price must be between ${formatMinor(low, currency)} and ` +
          `${formatMinor(high, currency)} a minute.`,
        "bad",
      );
      return;
    }
    rates[kind] = { rate_per_minute_minor: rate, minimum_s: 0 };
  }
  const minimum = Number($("rate-minimum").value);
  if (!Number.isSafeInteger(minimum) || minimum < 0 || minimum > MINIMUM_S_MAX) {
    say($("rates-status"), `The minimum is a whole number of seconds up to ${MINIMUM_S_MAX}.`, "bad");
    return;
  }
  for (const rate of Object.values(rates)) {
    rate.minimum_s = minimum;
  }
  $("rates-save").disabled = true;
  try {
    await page.client.setRates(rates);
    say($("rates-status"), "Prices saved: later shows use them.", "ok");
    remember(ratesKey(), {
      private: $("rate-private").value,
      spy: $("rate-spy").value,
      cam2cam: $("rate-cam2cam").value,
      minimum: $("rate-minimum").value,
    });
  } catch (error) {
    say($("rates-status"), error.message, "bad");
  } finally {
    $("rates-save").disabled = false;
  }
}

async function makeOverlayLink() {
  try {
    const answer = await backend("POST", `/demo/rooms/${encodeURIComponent(page.room)}/feed-token`);
    const fragment = new URLSearchParams({ room: page.room, token: answer.token });
    const link = $("overlay-link");
    link.value = `${location.origin}/pages/overlay.html#${fragment}`;
    // As tall as the link: all of it shows, however narrow the card.
    link.style.height = "auto";
    link.style.height = `${link.scrollHeight + 2}px`;
    $("overlay-copy").disabled = false;
    say($("overlay-status"), "New link ready; the previous one no longer works.", "ok");
  } catch (error) {
    say($("overlay-status"), error.message, "bad");
  }
}

/** Copy the overlay link (the whole of it: it is long, and a partial link does not work). */
async function copyOverlayLink() {
  const link = $("overlay-link");
  try {
    await navigator.clipboard.writeText(link.value);
  } catch {
    // No clipboard API here (not a secure context, or no permission): copy the selection.
    link.select();
    if (!document.execCommand("copy")) {
      say($("overlay-status"), "Copy it by hand: the link is selected.", "bad");
      return;
    }
  }
  say($("overlay-status"), "Link copied: paste it as an OBS browser source.", "ok");
}

/** The form's last saved prices are kept in this browser, so the form shows them next time
 * (the protocol has no message that reads a room's prices back). */
function ratesKey() {
  return `tipmeter.console.${page.room}.rates`;
}

function remember(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Without storage the form starts from the defaults; the prices themselves are saved.
  }
}

function restoreRates() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(ratesKey()) ?? "null");
  } catch {
    saved = null;
  }
  if (saved === null || typeof saved !== "object") {
    return;
  }
  for (const field of ["private", "spy", "cam2cam", "minimum"]) {
    if (typeof saved[field] === "string") {
      $(`rate-${field}`).value = saved[field];
    }
  }
}

async function main() {
  if ((await openPage(page)) === null) {
    return;
  }
  restoreRates();
  $("rates-form").addEventListener("submit", saveRates);
  $("overlay-create").addEventListener("click", makeOverlayLink);
  $("overlay-copy").addEventListener("click", copyOverlayLink);

  const client = await pageClient(page, ticketProvider("model", page.room));
  client.addEventListener("welcome", onWelcome);
  client.addEventListener("event", onEvent);
  client.addEventListener("refunds_waiting", onRefundsWaiting);
  client.addEventListener("subscribed", (e) => {
    if (e.detail.gap) {
      say($("sessions-status"), "Some older events were trimmed from the room's history.");
    }
  });
  const menuReady = startMenuEditor(client, page.room, page.config.currency); // issue 17
  await client.connect();
  await client.subscribe(page.room, { after: eventIdAt(Date.now() - HISTORY_MS) });
  await menuReady;
  document.body.dataset.ready = "true";
}

main().catch((error) => fatal(`The console could not start: ${error.message}`));
