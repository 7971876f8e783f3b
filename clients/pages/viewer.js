/**
 * The viewer page: open a Post Pay tab with a sandbox card, watch it live, tip, run a private
 * show, raise the cap when credit runs low, and read the itemized statement after settling,
 * with how the settlement ended (the charge and its capture id, or why the card declined it).
 *
 * Every amount is an integer of minor units from the server (or from `parseMinor` of what the
 * viewer typed); `formatMinor` only renders. The tab shown is always the client's newest
 * version (`client.tab`), so late or repeated pushes never move the meter backwards.
 */

import { formatMinor, newId, parseMinor } from "/js/tipmeter.js";
import {
  $,
  backend,
  clock,
  el,
  fatal,
  openPage,
  pageClient,
  param,
  say,
  ticketProvider,
  trim,
} from "/pages/common.js";
import { startMenu } from "/pages/menu.js";

/** The one-click tips, in minor units. */
const TIP_PRESETS_MINOR = [100, 500, 1_000, 2_500];
/** What the raise-cap prompt offers to add to the cap, in minor units. */
const RAISE_STEPS_MINOR = [500, 2_000, 5_000];
/** Tips kept in the page's log. */
const TIP_LOG_MAX = 50;
/**
 * While a statement is `settling`, the server's `tab` message announces the outcome and the
 * statement is read again at once. In case that message cannot arrive (the connection is
 * down), the statement is also read again this often, at most this many times.
 */
const STATEMENT_POLL_MS = 5_000;
const STATEMENT_POLLS_MAX = 12;
/**
 * While a refund of the statement shown waits (for the model's answer, for the processor), its
 * state is read again this often, at most this many times.
 */
const REFUNDS_POLL_MS = 2_000;
const REFUNDS_POLLS_MAX = 150;
/** What a viewer may attach to a refund request (the server checks each file's content). */
const REFUND_FILES_MAX = 3;
const REFUND_FILE_BYTES_MAX = 1_048_576;

const END_REASONS = {
  cap_reached: "The show ended: your cap was reached. Raise it to start again.",
  viewer_left: "The show ended: you left.",
  model_left: "The show ended: the model left.",
  settling: "The show ended: your tab is being settled.",
  stopped: "The show was stopped.",
  owner_lost: "The show ended: the server billing it went away. Nothing was billed after that.",
};

const ERRORS = {
  attachment_refused: "A file cannot be attached: only PNG and JPEG images and PDF documents of up to 1 MB are accepted.",
  too_many_attachments: "Attach at most 3 files.",
  id_reused: "This request was already sent differently; send it again.",
  over_cap: "This tip does not fit under your cap.",
  no_open_tab: "You have no open tab.",
  tab_not_open: "Your tab is being settled.",
  amount_out_of_range: "That amount is outside the allowed tip range.",
  rate_limited: "Too many tips at once; try again in a moment.",
  model_offline: "The model is not online right now.",
  sessions_full: "Your tab already funds as many shows as it may.",
  card_declined: "The card was declined",
  tab_already_open: "You already have an open tab.",
  cap_out_of_range: "That cap is outside the allowed range.",
  network_error: "The server is unreachable; try again.",
  gateway_refused: "The payment provider refused this request; try again in a moment.",
  gateway_unavailable: "The payment provider is unreachable; try again in a moment.",
  cap_not_raised: "Your cap is already higher than that.",
  tab_not_found: "This tab no longer exists.",
  unavailable: "The server is busy; try again in a moment.",
  insufficient_cap: "Your cap is too low to start.",
};

const page = {
  config: null,
  client: null,
  customer: "",
  room: "",
  currency: "USD",
  /** The Idempotency-Key of the tab being opened, kept until the server answers. */
  openKey: null,
  /** The running show's id, its price and when it started (for display). */
  show: null,
  /** The statement shown: see `noStatement`. */
  statement: noStatement(null),
  /** The refunds of the statement shown, read again while one waits. */
  refunds: { tabId: null, polls: 0, timer: null, askId: null },
  /** A settled tab the viewer moved on from: its later updates do not bring its statement back. */
  dismissedTabId: null,
};

/**
 * What the page knows of the statement it shows: the tab, the state it shows, the reads
 * started and the newest one rendered (an older read answering late is dropped), the
 * fallback reads done and the timer of the next.
 */
function noStatement(tabId) {
  return { tabId, state: null, reads: 0, rendered: 0, polls: 0, timer: null };
}

function money(amountMinor) {
  return formatMinor(amountMinor, page.currency);
}

/**
 * What a viewer reads about an error: the page's own sentence for its code. A server's or a
 * gateway's message is for developers ("no hold 'auth_…'") and never reaches a viewer; an
 * unknown code gets a general sentence.
 */
function explain(error) {
  const text = ERRORS[error.code] ?? "Something went wrong; try again in a moment.";
  const reason = error.extra?.decline_reason;
  return reason ? `${text}: ${reason.replaceAll("_", " ")}.` : text;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) {
    return "–";
  }
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return minutes ? `${minutes} min ${String(rest).padStart(2, "0")} s` : `${rest} s`;
}

function setMinor(node, amountMinor) {
  node.dataset.minor = String(amountMinor);
  node.textContent = money(amountMinor);
}

// -- the tab --------------------------------------------------------------------------------

function renderTab(tab) {
  const open = tab !== null && tab.state === "open";
  if (open && $("show-card").hidden) {
    showPrice();
  }
  $("open-tab").hidden = open || !$("statement").hidden;
  $("meter-card").hidden = tab === null;
  $("tip-card").hidden = !open;
  $("show-card").hidden = !open;
  if (tab === null) {
    $("raise-cap").hidden = true;
    return;
  }
  if (open && page.statement.tabId !== null && page.statement.tabId !== tab.tab_id) {
    hideStatement();
  }
  rememberTab(tab.tab_id);
  $("tab-state").textContent = tab.state;
  $("tab-state").className = `tag ${open ? "ok" : (STATEMENT_STATES[tab.state]?.[1] ?? "warn")}`.trim();
  setMinor($("accrued"), tab.accrued_minor);
  setMinor($("cap"), tab.cap_minor);
  setMinor($("remaining"), tab.remaining_minor);
  $("seconds-left").textContent = duration(tab.seconds_left);
  const percent = tab.cap_minor ? Math.floor((tab.accrued_minor * 100) / tab.cap_minor) : 0;
  $("spent-bar").setAttribute("aria-valuenow", String(percent));
  // Low: a tenth of the cap or less remains (compared in integers: remaining × 10 ≤ cap).
  $("spent-bar").dataset.level =
    tab.remaining_minor <= 0 ? "out" : tab.remaining_minor * 10 <= tab.cap_minor ? "low" : "ok";
  $("spent-bar").firstElementChild.style.width = `${percent}%`;
  $("burn").textContent = tab.burn_minor_per_minute
    ? `Shows running: ${money(tab.burn_minor_per_minute)} a minute.`
    : "Nothing is running.";
  $("raise-open").disabled = !open;
  $("settle-button").disabled = !open;
  if (page.show !== null) {
    const seconds = Math.max(0, Math.floor((Date.now() - page.show.startedLocalMs) / 1000));
    say($("show-status"), `Show running for ${seconds} s at ${money(page.show.rate)} a minute.`, "ok");
  }
  if (!open) {
    $("raise-cap").hidden = true;
    if (tab.tab_id !== page.dismissedTabId) {
      showStatement(tab.tab_id, "tab", tab.state);
    }
  }
}

async function openTab(event) {
  event.preventDefault();
  const status = $("open-status");
  const cap = parseMinor($("cap-input").value, page.currency);
  const { cap_min_minor: low, cap_max_minor: high } = page.config;
  if (cap === null || cap < low || cap > high) {
    say(status, `Enter a cap between ${money(low)} and ${money(high)}.`, "bad");
    return;
  }
  // The key is minted once and kept until the server answers, so a retry after a lost
  // answer finds the same hold instead of placing a second one.
  page.openKey ??= newId("open");
  $("open-button").disabled = true;
  say(status, "Authorizing…");
  try {
    const tab = await backend("POST", "/demo/tabs", {
      body: { customer: page.customer, cap_minor: cap, payment_method: $("card-select").value },
      headers: { "Idempotency-Key": page.openKey },
    });
    page.openKey = null;
    say(status, `Tab opened with a cap of ${money(tab.cap_minor)}.`, "ok");
    hideStatement();
  } catch (error) {
    if (error.status >= 400 && error.status < 500) {
      page.openKey = null;
    }
    say(status, explain(error), "bad");
  } finally {
    $("open-button").disabled = false;
  }
}

// -- tips -----------------------------------------------------------------------------------

async function sendTip(amountMinor, message = "", anonymous = false) {
  const id = newId("tip");
  const tag = el("span", { class: "tag warn" }, "sending…");
  const item = el(
    "li",
    { dataset: { tipId: id, amountMinor: String(amountMinor), status: "pending" } },
    el("span", { class: "what" }, message ? `Tip: “${message}”` : "Tip"),
    el("span", { class: "amount" }, money(amountMinor)),
    ...(anonymous ? [el("span", { class: "tag anonymous" }, "anonymous")] : []),
    tag,
  );
  if (anonymous) {
    item.dataset.anonymous = "true";
  }
  $("tip-log").prepend(item);
  trim($("tip-log"), TIP_LOG_MAX);
  try {
    const result = await page.client.tip(page.room, amountMinor, page.currency, { message, anonymous, id });
    item.dataset.status = result.status;
    tag.className = "tag ok";
    // `duplicate`: the answer to the first send was lost; it was applied once, before.
    tag.textContent = result.status === "applied" ? "applied" : "applied (confirmed after reconnect)";
  } catch (error) {
    item.dataset.status = "refused";
    item.dataset.code = error.code ?? "error";
    tag.className = "tag bad";
    tag.textContent = explain(error);
    if (error.code === "over_cap") {
      openRaisePrompt(`${ERRORS.over_cap} Raise it to keep tipping?`);
    }
  }
}

function customTip(event) {
  event.preventDefault();
  const amount = parseMinor($("tip-amount").value, page.currency);
  const { tip_min_minor: low, tip_max_minor: high } = page.config;
  if (amount === null || amount < low || amount > high) {
    $("tip-amount").setCustomValidity(`Between ${money(low)} and ${money(high)}`);
    $("tip-amount").reportValidity();
    return;
  }
  $("tip-amount").setCustomValidity("");
  sendTip(amount, $("tip-message").value.trim(), $("tip-anonymous").checked);
  $("tip-amount").value = "";
  $("tip-message").value = "";
}

// -- the private show -----------------------------------------------------------------------

/** Show the private show's price before it starts: read the room's prices (again after a
 * show, in case the model changed them). */
async function showPrice() {
  let rates;
  try {
    rates = await backend("GET", `/demo/rooms/${encodeURIComponent(page.room)}/rates`);
  } catch {
    return; // the price shows once a show starts
  }
  const { rate_per_minute_minor: rate, minimum_s: minimum } = rates.rates.private;
  const price = $("show-price");
  price.dataset.minor = String(rate);
  price.textContent = minimum
    ? `Price: ${money(rate)} a minute, at least ${duration(minimum)} (charged at the start).`
    : `Price: ${money(rate)} a minute.`;
}

async function startShow() {
  const id = newId("show");
  $("show-start").disabled = true;
  $("session-end").hidden = true;
  say($("show-status"), "Starting…");
  try {
    const result = await page.client.startSession(page.room, "private", { id });
    const session = result.session;
    page.show = { id, rate: session.rate_per_minute_minor, startedLocalMs: Date.now() };
    $("show-stop").disabled = false;
    say($("show-status"), `Show running at ${money(session.rate_per_minute_minor)} a minute.`, "ok");
  } catch (error) {
    $("show-start").disabled = false;
    if (error.code === "insufficient_cap" && error.neededMinor) {
      say($("show-status"), `Your cap needs ${money(error.neededMinor)} more to start.`, "bad");
      openRaisePrompt("Raise your cap to start the show?");
    } else {
      say($("show-status"), explain(error), "bad");
    }
  }
}

async function stopShow() {
  if (page.show === null) {
    return;
  }
  $("show-stop").disabled = true;
  try {
    await page.client.stopSession(page.show.id);
  } catch (error) {
    $("show-stop").disabled = false;
    say($("show-status"), explain(error), "bad");
  }
}

function sessionEnded(event) {
  const session = event.detail.session;
  if (page.show !== null && session.session_id === page.show.id) {
    page.show = null;
  }
  say(
    $("show-status"),
    `You watched ${duration(session.seconds)} for ${money(session.amount_minor)}.`,
  );
  showEnd(session.end_reason, END_REASONS[session.end_reason]);
  showPrice();
}

function showEnd(reason, text) {
  $("show-start").disabled = false;
  $("show-stop").disabled = true;
  const end = $("session-end");
  end.dataset.reason = reason ?? "";
  end.textContent = text ?? `The show ended (${reason}).`;
  end.className = `status ${reason === "stopped" ? "" : "bad"}`.trim();
  end.hidden = false;
  $("raise-cap").hidden = true;
}

function reconnected() {
  // The server ends a viewer's shows when her connection closes, and tells only that
  // connection: a show still running here ended when the connection dropped.
  if (page.show !== null) {
    page.show = null;
    say($("show-status"), "");
    showEnd(
      "viewer_left",
      "The show ended when your connection dropped: you paid through the last second begun.",
    );
  }
}

// -- raising the cap ------------------------------------------------------------------------

/** The prompt's title: a warning when credit runs low, plain when the viewer asked for it. */
const RAISE_TITLE_LOW = "Running low";
const RAISE_TITLE_ASKED = "Raise your cap";

function openRaisePrompt(text, title = RAISE_TITLE_LOW) {
  const prompt = $("raise-cap");
  $("raise-title").textContent = title;
  $("raise-text").textContent = text;
  say($("raise-status"), "");
  if (prompt.hidden) {
    prompt.hidden = false;
    prompt.querySelector("button")?.focus();
  }
}

function onWarning(event) {
  const { seconds_left: seconds } = event.detail;
  openRaisePrompt(
    `Only about ${duration(seconds)} left at the current rate. Raise your cap to keep the show going?`,
  );
}

async function raiseBy(stepMinor) {
  const tab = page.client.tab;
  if (tab === null || tab.state !== "open") {
    return;
  }
  const status = $("raise-status");
  const cap = tab.cap_minor + stepMinor;
  say(status, "Asking your card for the higher cap…");
  try {
    await backend(
      "POST",
      `/demo/customers/${encodeURIComponent(page.customer)}/tabs/${encodeURIComponent(tab.tab_id)}/cap`,
      { body: { cap_minor: cap } },
    );
    $("raise-cap").hidden = true;
    say($("tab-status"), `Cap raised to ${money(cap)}.`, "ok");
  } catch (error) {
    say(status, explain(error), "bad");
  }
}

// -- settling and the statement -------------------------------------------------------------

async function settle() {
  const tab = page.client.tab;
  if (tab === null) {
    return;
  }
  $("settle-button").disabled = true;
  try {
    await backend(
      "POST",
      `/demo/customers/${encodeURIComponent(page.customer)}/tabs/${encodeURIComponent(tab.tab_id)}/settle`,
    );
    showStatement(tab.tab_id, "settle");
  } catch (error) {
    $("settle-button").disabled = false;
    say($("tab-status"), explain(error), "bad");
  }
}

function hideStatement() {
  clearTimeout(page.statement.timer);
  clearTimeout(page.refunds.timer);
  page.refunds = { tabId: null, polls: 0, timer: null, askId: null };
  page.statement = noStatement(null);
  $("statement").hidden = true;
}

/**
 * Show the statement of `tabId`, read because of `why`: "settle" (the viewer ended the tab)
 * or "tab" (the server announced the tab's new `state`). A statement already shown is read
 * again when the announced state is not the one it shows: that is how the settlement's
 * outcome appears as soon as the server records it.
 */
function showStatement(tabId, why, state = null) {
  if (page.statement.tabId === tabId) {
    if (state !== null && state !== page.statement.state) {
      readStatement(tabId, why);
    }
    return;
  }
  clearTimeout(page.statement.timer);
  page.statement = noStatement(tabId);
  readStatement(tabId, why);
}

async function readStatement(tabId, why) {
  const read = ++page.statement.reads;
  let statement;
  try {
    statement = await backend(
      "GET",
      `/demo/customers/${encodeURIComponent(page.customer)}/tabs/${encodeURIComponent(tabId)}/statement`,
    );
  } catch (error) {
    if (page.statement.tabId === tabId && why === "restore") {
      // The remembered tab is gone (or not this customer's): offer a new one.
      forgetLastTab();
      hideStatement();
      $("open-tab").hidden = false;
    } else if (page.statement.tabId === tabId) {
      say($("tab-status"), explain(error), "bad");
    }
    return;
  }
  if (page.statement.tabId !== tabId || read <= page.statement.rendered) {
    return; // another tab's, or older than the statement shown
  }
  page.statement.rendered = read;
  page.statement.state = statement.state;
  renderStatement(statement, why);
  clearTimeout(page.statement.timer);
  if (statement.state === "settling" && page.statement.polls < STATEMENT_POLLS_MAX) {
    page.statement.polls += 1;
    page.statement.timer = setTimeout(() => readStatement(tabId, "poll"), STATEMENT_POLL_MS);
  }
}

/** The statement's state as its tag shows it: [text, tone]. */
const STATEMENT_STATES = {
  open: ["open", ""],
  settling: ["settling", "warn"],
  settled: ["settled", "ok"],
  failed: ["payment declined", "bad"],
  voided: ["nothing to pay", "ok"],
  expired: ["hold expired", "bad"],
};

/** How the settlement ended, in the viewer's words: [text, tone]. */
function outcomeText(statement) {
  const total = money(statement.total_minor);
  switch (statement.outcome) {
    case "captured":
      return [`Paid: one charge of ${money(statement.captured_minor)} was taken from your card.`, "ok"];
    case "declined": {
      const reason = statement.decline_reason ? statement.decline_reason.replaceAll("_", " ") : "no reason given";
      return [`Payment declined: ${reason}. Nothing was charged.`, "bad"];
    }
    case "voided":
      return ["Nothing to pay: the hold on your card was released.", "ok"];
    case "expired":
      return [`The hold on your card expired before the charge of ${total} was taken: nothing was charged.`, "bad"];
    default:
      return statement.state === "settling" ? [`Taking one charge of ${total}…`, ""] : ["", ""];
  }
}

/** What happened to the hold on the viewer's card. */
function holdText(statement) {
  const cap = money(statement.cap_minor);
  switch (statement.outcome) {
    case "captured": {
      const released = statement.cap_minor - statement.captured_minor;
      return released > 0
        ? `${cap} was authorized; one charge of ${money(statement.captured_minor)} was taken and ` +
            `${money(released)} of the hold was released.`
        : `${cap} was authorized and charged in full.`;
    }
    case "declined":
      return `${cap} was authorized; the charge of ${money(statement.total_minor)} for the lines below was declined.`;
    case "voided":
      return `${cap} was authorized and nothing was spent.`;
    case "expired":
      return `${cap} was authorized; the hold expired before it could be charged.`;
    default:
      return (
        `${cap} was authorized; one charge of ${money(statement.total_minor)} is being taken ` +
        `and ${money(statement.cap_minor - statement.total_minor)} of the hold will be released.`
      );
  }
}

function renderStatement(statement, why) {
  page.currency = statement.currency;
  const section = $("statement");
  section.dataset.tabId = statement.tab_id;
  section.dataset.state = statement.state;
  section.dataset.outcome = statement.outcome;
  // What made the page read this version: "settle", "tab" (the server's announcement) or "poll".
  section.dataset.readOn = why;
  const [stateText, stateTone] = STATEMENT_STATES[statement.state] ?? [statement.state, ""];
  $("statement-state").textContent = stateText;
  $("statement-state").className = `tag ${stateTone}`.trim();
  setMinor($("statement-total"), statement.total_minor);
  const [outcome, tone] = outcomeText(statement);
  say($("statement-outcome"), outcome, tone);
  $("statement-payment").hidden = statement.outcome === "";
  setMinor($("statement-captured"), statement.captured_minor);
  $("statement-capture-id").textContent = statement.capture_id || "–";
  $("statement-note").textContent = holdText(statement);
  // One charge of exactly the total, or none: the page checks what it shows, in integers.
  if (statement.outcome === "captured" && statement.captured_minor !== statement.total_minor) {
    say($("tab-status"), "The charge differs from the statement's total.", "bad");
  }
  const rows = statement.lines.map((line) =>
    el(
      "tr",
      { dataset: { kind: line.kind, amountMinor: String(line.amount_minor) } },
      el("td", {}, line.seq),
      el("td", {}, clock(line.at_ms)),
      el(
        "td",
        {},
        line.kind === "session"
          ? `Show: ${duration(line.seconds)} at ${money(line.rate_per_minute_minor)} a minute`
          : line.kind === "purchase"
            ? purchaseLabel(line)
            : "Tip",
      ),
      el("td", {}, line.room),
      el("td", { class: "num" }, money(line.amount_minor)),
    ),
  );
  section.querySelector("#statement-lines tbody").replaceChildren(...rows);
  // The lines must add up to the total: the page checks what it shows, in integers.
  const sum = statement.lines.reduce((total, line) => total + line.amount_minor, 0);
  setMinor($("statement-sum"), sum);
  if (sum !== statement.total_minor) {
    say($("tab-status"), "The statement's lines do not add up to its total.", "bad");
  }
  const models = statement.by_model.map((model) =>
    el(
      "tr",
      { dataset: { room: model.room } },
      el("td", {}, model.room),
      el("td", { class: "num" }, money(model.tips_minor)),
      el("td", { class: "num" }, money(model.sessions_minor)),
      el("td", { class: "num" }, model.session_seconds),
      el("td", { class: "num" }, money(model.total_minor)),
    ),
  );
  section.querySelector("#statement-models tbody").replaceChildren(...models);
  section.hidden = false;
  $("open-tab").hidden = true;
  $("refunds-part").hidden = statement.outcome !== "captured";
  if (statement.outcome === "captured" && page.refunds.tabId !== statement.tab_id) {
    page.refunds = { tabId: statement.tab_id, polls: 0, timer: null, askId: null };
    readRefunds(statement.tab_id);
  }
}

// -- refunds of the statement shown ---------------------------------------------------------

/** A refund's state, in the viewer's words: [text, tone]. */
function refundState(refund) {
  switch (refund.status) {
    case "awaiting_consent":
      return refund.escalated ? ["with support", "warn"] : ["waiting for the model", "warn"];
    case "pending":
      return ["being refunded", "warn"];
    case "succeeded":
      return ["refunded", "ok"];
    case "failed":
      return ["refund failed", "bad"];
    case "declined":
      return ["declined", "bad"];
    case "refused":
      return [`refused: ${(refund.refusal ?? "").replaceAll("_", " ")}`, "bad"];
    default:
      return [refund.status, ""];
  }
}

/** A purchase's statement line: its item and state (a declined request reads 0). */
function purchaseLabel(line) {
  const state = line.state === "voided" ? `declined, ${money(line.voided_minor)} not charged` : line.state;
  return state ? `${line.item_name} (${state})` : line.item_name || "Purchase";
}

function lineLabel(line) {
  const what = line.kind === "session" ? `Show, ${duration(line.seconds)}` : "Tip";
  return `${what} to ${line.room}, ${money(line.amount_minor)}`;
}

async function readRefunds(tabId) {
  const path = `/demo/customers/${encodeURIComponent(page.customer)}/tabs/${encodeURIComponent(tabId)}/refunds`;
  let view;
  try {
    view = await backend("GET", path);
  } catch (error) {
    if (page.refunds.tabId === tabId) {
      say($("refund-status"), explain(error), "bad");
    }
    return;
  }
  if (page.refunds.tabId !== tabId) {
    return;
  }
  if (view.recorded === false) {
    // Settled a moment ago: the ledger's record is still being written; read again.
    if (page.refunds.polls < REFUNDS_POLLS_MAX) {
      page.refunds.polls += 1;
      clearTimeout(page.refunds.timer);
      page.refunds.timer = setTimeout(() => readRefunds(tabId), REFUNDS_POLL_MS);
    }
    return;
  }
  renderRefunds(view);
  clearTimeout(page.refunds.timer);
  const waiting = view.refunds.some(
    (r) => (r.status === "awaiting_consent" && !r.escalated) || r.status === "pending",
  );
  if (waiting && page.refunds.polls < REFUNDS_POLLS_MAX) {
    page.refunds.polls += 1;
    page.refunds.timer = setTimeout(() => readRefunds(tabId), REFUNDS_POLL_MS);
  }
}

function renderRefunds(view) {
  const byId = new Map(view.lines.map((line) => [line.line_id, line]));
  const rows = view.refunds.map((refund) => {
    const [text, tone] = refundState(refund);
    const what = refund.lines.map((l) => (byId.has(l.line_id) ? lineLabel(byId.get(l.line_id)) : l.line_id));
    return el(
      "tr",
      { dataset: { refundId: refund.refund_id, status: refund.status } },
      el("td", {}, new Date(refund.requested_at).toLocaleTimeString()),
      el("td", {}, what.join("; ") || "the whole tab"),
      el("td", { class: "num", dataset: { minor: String(refund.amount_minor) } }, money(refund.amount_minor)),
      el("td", {}, el("span", { class: `tag ${tone}`.trim() }, text)),
    );
  });
  $("refund-list").querySelector("tbody").replaceChildren(...rows);
  $("refund-list-empty").hidden = rows.length > 0;
  const boxes = view.lines
    .filter((line) => line.refundable_minor > 0)
    .map((line) => {
      const box = el("input", { type: "checkbox", value: line.line_id, id: `refund-line-${line.line_id}` });
      return el("label", { class: "check" }, box, ` ${lineLabel(line)}`);
    });
  const fieldset = $("refund-lines");
  fieldset.replaceChildren(fieldset.querySelector("legend"), ...boxes);
  $("refund-ask").hidden = boxes.length === 0;
}

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function askRefund(event) {
  event.preventDefault();
  const tabId = page.refunds.tabId;
  const lines = [...$("refund-lines").querySelectorAll("input:checked")].map((box) => box.value);
  if (tabId === null || lines.length === 0) {
    say($("refund-status"), "Choose the charges to refund.", "bad");
    return;
  }
  const files = [...$("refund-files").files];
  if (files.length > REFUND_FILES_MAX || files.some((f) => f.size > REFUND_FILE_BYTES_MAX)) {
    say($("refund-status"), `Attach at most ${REFUND_FILES_MAX} files of 1 MB each.`, "bad");
    return;
  }
  const attachments = [];
  for (const file of files) {
    attachments.push({ filename: file.name, content_base64: toBase64(new Uint8Array(await file.arrayBuffer())) });
  }
  // One id per request, kept until it is answered: sending it again never asks twice.
  page.refunds.askId ??= newId("rq");
  $("refund-send").disabled = true;
  try {
    await backend(
      "POST",
      `/demo/customers/${encodeURIComponent(page.customer)}/tabs/${encodeURIComponent(tabId)}/refund-requests`,
      {
        body: {
          refund_id: page.refunds.askId,
          reason: $("refund-reason").value,
          note: $("refund-note").value,
          lines,
          attachments,
        },
      },
    );
    page.refunds.askId = null;
    $("refund-form").reset();
    say($("refund-status"), "Your request was sent.", "ok");
    page.refunds.polls = 0;
    await readRefunds(tabId);
  } catch (error) {
    if (error.status >= 400 && error.status < 500) {
      page.refunds.askId = null; // refused as sent: a corrected request is a new one
    }
    say($("refund-status"), explain(error), "bad");
  } finally {
    $("refund-send").disabled = false;
  }
}

function newTab() {
  page.dismissedTabId = page.statement.tabId;
  forgetLastTab();
  hideStatement();
  $("open-tab").hidden = false;
  $("cap-input").focus();
}

// -- the last tab, across reloads ------------------------------------------------------------

/**
 * The server's `welcome` carries only an open tab: a tab that is settling, or settled while the
 * page was closed (or the server restarting), would vanish on a reload, and the page would offer
 * a new one as if nothing had happened. The page keeps the id of the last tab it showed in this
 * browser and, with no open tab, shows that tab's statement first; "Open a new tab" moves on.
 */
function lastTabKey() {
  return `tipmeter.viewer.${page.customer}.last-tab`;
}

function rememberTab(tabId) {
  try {
    localStorage.setItem(lastTabKey(), tabId);
  } catch {
    // storage refused (private mode): the page works, without this memory
  }
}

function forgetLastTab() {
  try {
    localStorage.removeItem(lastTabKey());
  } catch {
    // as above
  }
}

function lastTab() {
  try {
    return localStorage.getItem(lastTabKey());
  } catch {
    return null;
  }
}

// -- start ----------------------------------------------------------------------------------

async function main() {
  const config = await openPage(page);
  if (config === null) {
    return;
  }
  page.customer = param("customer", config.customer);
  page.currency = config.currency;
  const name = param("name", "Demo Viewer");
  $("who").textContent = `${name} (${page.customer})`;
  $("card-select").replaceChildren(
    ...config.cards.map((card) => el("option", { value: card.token }, `${card.label} (${card.token})`)),
  );
  $("tip-buttons").replaceChildren(
    ...TIP_PRESETS_MINOR.map((amount) =>
      el(
        "button",
        { type: "button", dataset: { amountMinor: String(amount) }, onclick: () => sendTip(amount) },
        money(amount),
      ),
    ),
  );
  $("raise-buttons").replaceChildren(
    ...RAISE_STEPS_MINOR.map((step) =>
      el("button", { type: "button", onclick: () => raiseBy(step) }, `+ ${money(step)}`),
    ),
  );
  $("open-form").addEventListener("submit", openTab);
  $("custom-tip").addEventListener("submit", customTip);
  $("show-start").addEventListener("click", startShow);
  $("show-stop").addEventListener("click", stopShow);
  $("raise-open").addEventListener("click", () =>
    openRaisePrompt("How much more may this tab spend?", RAISE_TITLE_ASKED),
  );
  $("raise-dismiss").addEventListener("click", () => {
    $("raise-cap").hidden = true;
  });
  $("settle-button").addEventListener("click", settle);
  $("new-tab").addEventListener("click", newTab);
  $("refund-form").addEventListener("submit", askRefund);

  const client = await pageClient(page, ticketProvider("viewer", page.customer, name));
  client.addEventListener("welcome", (event) => {
    if (client.stats.connects > 1) {
      reconnected();
    }
    if (event.detail.tab === null && client.tab === null) {
      renderTab(null);
      const last = lastTab();
      if (last !== null && last !== page.dismissedTabId && page.statement.tabId === null) {
        showStatement(last, "restore");
      } else if (page.statement.tabId === null) {
        $("open-tab").hidden = false;
      }
    }
  });
  client.addEventListener("tab", (event) => renderTab(event.detail));
  startMenu(client, page.room); // the model's menu (issue 17)
  client.addEventListener("warning", onWarning);
  client.addEventListener("session", sessionEnded);
  await client.connect();
}

main().catch((error) => fatal(`The page could not start: ${error.message}`));
