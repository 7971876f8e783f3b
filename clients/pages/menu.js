/**
 * The viewer page's menu (docs/purchases.md): the model's catalog items and the site's unlocks
 * with their price in the tab's currency, bought from the open tab with a client-minted id
 * (the client keeps it until the answer, so a retry never buys twice).
 *
 * Each purchase is listed with its state, kept live from the room's events: a request waits
 * for the model (`pending`), then is done (`fulfilled`) or declined (`voided`: it costs
 * nothing, and the tab's push frees the cap in the meter above), or refunded after the
 * capture (`refunded`); an unlock is `granted` at once and counts down to its end. The remaining
 * cap follows through the meter (every answer and void carries the tab). Buying needs an open
 * tab; the purchases stay listed once it closes, since a request declined after the tab froze
 * is refunded after the capture.
 */

import { formatMinor } from "/js/tipmeter.js";
import { $, backend, el, say } from "/pages/common.js";

/** Purchases listed at most (the oldest go first). */
const PURCHASES_SHOWN_MAX = 50;
/** How often an unlock's countdown is redrawn. */
const COUNTDOWN_MS = 1_000;

/** A purchase's state, in the viewer's words: [text, tone]. */
const STATES = {
  pending: ["waiting for the model", "warn"],
  fulfilled: ["done", "ok"],
  voided: ["declined: not charged", ""],
  granted: ["unlocked", "ok"],
  refunded: ["refunded", "ok"],
};

/** The state each room event moves a purchase to. */
const EVENT_STATES = {
  purchase_fulfilled: "fulfilled",
  purchase_voided: "voided",
  purchase_refunded: "refunded",
};

const REFUSALS = {
  item_not_found: "That item is no longer on the menu.",
  item_inactive: "That item is not on sale right now.",
  price_missing: "That item has no price in your tab's currency.",
  limit_reached: "That item's limit is reached.",
  over_cap: "That does not fit under your cap.",
  no_open_tab: "Open a tab first.",
  tab_not_open: "Your tab is being settled.",
  rate_limited: "Too many purchases at once; try again in a moment.",
};

const menu = {
  client: null,
  room: "",
  /** Items as the catalog lists them (room items, then site unlocks). */
  items: [],
  /** Purchase id → {purchase, node}. */
  bought: new Map(),
  subscribed: false,
};

function currency() {
  return menu.client.tab?.currency ?? "USD";
}

function remaining(untilMs) {
  const left = Math.max(0, Math.ceil((untilMs - Date.now()) / 1000));
  const minutes = Math.floor(left / 60);
  return `${minutes}:${String(left % 60).padStart(2, "0")} left`;
}

function renderItems() {
  const cur = currency();
  const rows = menu.items
    .filter((item) => item.active && Number.isSafeInteger(item.prices[cur]))
    .map((item) =>
      el(
        "li",
        { dataset: { itemId: item.item_id, kind: item.kind } },
        el("span", { class: "what" }, item.name),
        el("span", { class: "amount" }, formatMinor(item.prices[cur], cur)),
        el(
          "button",
          { type: "button", dataset: { itemId: item.item_id }, onclick: () => buy(item) },
          item.kind === "unlock" ? "Unlock" : "Ask",
        ),
      ),
    );
  $("menu-items").replaceChildren(...rows);
  $("menu-empty").hidden = rows.length > 0;
}

function renderPurchase(entry) {
  const { purchase } = entry;
  const [text, tone] = STATES[purchase.state] ?? [purchase.state, ""];
  const left = purchase.state === "granted" ? ` (${remaining(purchase.until_ms)})` : "";
  const node = el(
    "li",
    {
      dataset: {
        purchaseId: purchase.purchase_id,
        state: purchase.state,
        kind: purchase.kind,
        untilMs: String(purchase.until_ms),
      },
    },
    el("span", { class: "what" }, purchase.item_name),
    el("span", { class: "amount" }, formatMinor(purchase.amount_minor, currency())),
    el("span", { class: `tag ${tone}`.trim() }, `${text}${left}`),
  );
  if (entry.node) {
    entry.node.replaceWith(node);
  } else {
    $("purchase-log").prepend(node);
    while ($("purchase-log").children.length > PURCHASES_SHOWN_MAX) {
      const last = $("purchase-log").lastElementChild;
      menu.bought.delete(last.dataset.purchaseId);
      last.remove();
    }
  }
  entry.node = node;
}

async function buy(item) {
  const status = $("menu-status");
  const message = item.kind === "request" ? $("menu-message").value.trim() : "";
  say(status, `Buying ${item.name}…`);
  try {
    const result = await menu.client.buy(menu.room, item.item_id, { message });
    const entry = menu.bought.get(result.purchase.purchase_id) ?? { node: null };
    entry.purchase = result.purchase;
    menu.bought.set(result.purchase.purchase_id, entry);
    renderPurchase(entry);
    say(status, item.kind === "unlock" ? `${item.name} unlocked.` : `${item.name} asked for.`, "ok");
    $("menu-message").value = "";
  } catch (error) {
    say(status, REFUSALS[error.code] ?? `Not bought: ${error.message}`, "bad");
  }
}

function onEvent(e) {
  const { event, data } = e.detail;
  const state = EVENT_STATES[event];
  const entry = state === undefined ? undefined : menu.bought.get(data.purchase_id);
  if (entry === undefined) {
    return;
  }
  entry.purchase = {
    ...entry.purchase,
    state,
    amount_minor: state === "voided" ? 0 : entry.purchase.amount_minor,
  };
  renderPurchase(entry);
}

async function readMenu() {
  try {
    const catalog = await backend("GET", `/demo/rooms/${encodeURIComponent(menu.room)}/catalog`);
    menu.items = [...catalog.items, ...catalog.site_unlocks];
    renderItems();
  } catch (error) {
    say($("menu-status"), `The menu could not be read: ${error.message}`, "bad");
  }
}

function tick() {
  for (const entry of menu.bought.values()) {
    if (entry.purchase.state === "granted") {
      renderPurchase(entry);
    }
  }
}

/**
 * Start the menu of `room` on the viewer page's `client` (before it connects): shown while a
 * tab is open, following the room's events for the purchases' states.
 */
export function startMenu(client, room) {
  menu.client = client;
  menu.room = room;
  client.addEventListener("tab", (e) => {
    const open = e.detail !== null && e.detail.state === "open";
    const shown = !$("menu-buy").hidden && !$("menu-card").hidden;
    // Buying needs an open tab; the purchases stay listed after it (a refund may follow).
    $("menu-buy").hidden = !open;
    $("menu-card").hidden = !open && menu.bought.size === 0;
    if (open && !shown) {
      readMenu();
    }
  });
  client.addEventListener("welcome", () => {
    if (!menu.subscribed) {
      menu.subscribed = true;
      client.subscribe(room).catch((error) => {
        menu.subscribed = false;
        say($("menu-status"), `The purchases' states cannot follow: ${error.message}`, "bad");
      });
    }
  });
  client.addEventListener("event", onEvent);
  setInterval(tick, COUNTDOWN_MS);
}
