/**
 * The model console's menu (docs/purchases.md): she edits her catalog (at most the server's
 * `items_max` items, each validated by the server as the HTTP API validates it) and answers
 * her queue of requests with Done or Decline over her connection.
 *
 * The queue is read from the server when the console opens and again on each purchase event of
 * her room (a new request, one answered from another device, one expired) and a moment after
 * it, so it always shows what the server holds; a declined request costs the viewer nothing.
 */

import { formatMinor, parseMinor } from "/js/tipmeter.js";
import { $, backend, clock, el, say } from "/pages/common.js";

/** Longest a request's time to be done, or an unlock's duration, the form offers (s). */
const DURATION_S_MAX = 7 * 24 * 3600;
/**
 * The server queues a request right after charging it, on other keys than the charge's, so
 * the purchase event can arrive before the queue holds it: the queue is read again this much
 * later too.
 */
const QUEUE_REREAD_MS = 1_000;

const REFUSALS = {
  purchase_not_found: "That request is no longer in your queue.",
  purchase_not_pending: "That request was already answered.",
  tab_not_open: "The viewer's tab is settling: the request will be refunded after the charge.",
  catalog_full: "Your menu is full: remove an item first.",
};

const editor = {
  client: null,
  room: "",
  currency: "USD",
  items: [],
  itemsMax: 0,
  /** A queue read is running; another is wanted after it. */
  reading: false,
  again: false,
};

function roomPath(rest = "") {
  return `/demo/rooms/${encodeURIComponent(editor.room)}${rest}`;
}

function renderItems() {
  const rows = editor.items.map((item) =>
    el(
      "li",
      { dataset: { itemId: item.item_id, kind: item.kind, active: String(item.active) } },
      el("span", { class: "what" }, `${item.name}${item.active ? "" : " (off)"}`),
      el("span", { class: "tag" }, item.kind),
      el(
        "span",
        { class: "amount" },
        item.prices[editor.currency] === undefined
          ? "–"
          : formatMinor(item.prices[editor.currency], editor.currency),
      ),
      el("button", { type: "button", class: "secondary", onclick: () => removeItem(item) }, "Remove"),
    ),
  );
  $("menu-list").replaceChildren(...rows);
  $("menu-count").textContent = `${editor.items.length} of ${editor.itemsMax}`;
}

async function readMenu() {
  const catalog = await backend("GET", roomPath("/catalog"));
  editor.items = catalog.items;
  editor.itemsMax = catalog.items_max;
  renderItems();
}

async function saveItem(event) {
  event.preventDefault();
  const status = $("item-status");
  const itemId = $("item-id").value.trim();
  const price = parseMinor($("item-price").value, editor.currency);
  const durationText = $("item-duration").value.trim();
  const duration = durationText === "" ? null : Number(durationText);
  if (price === null) {
    say(status, "Enter a price, like 5.00.", "bad");
    return;
  }
  if (duration !== null && !(Number.isSafeInteger(duration) && duration > 0 && duration <= DURATION_S_MAX)) {
    say(status, `The duration is a whole number of seconds, 1 to ${DURATION_S_MAX}.`, "bad");
    return;
  }
  const body = {
    name: $("item-name").value.trim(),
    kind: $("item-kind").value,
    prices: { [editor.currency]: price },
    active: $("item-active").checked,
  };
  if (duration !== null) {
    body.duration_s = duration;
  }
  try {
    await backend("PUT", roomPath(`/catalog/${encodeURIComponent(itemId)}`), { body });
    say(status, `${body.name} saved.`, "ok");
    $("item-form").reset();
    $("item-active").checked = true;
    await readMenu();
  } catch (error) {
    say(status, REFUSALS[error.code] ?? `Not saved: ${error.message}`, "bad");
  }
}

async function removeItem(item) {
  try {
    await backend("DELETE", roomPath(`/catalog/${encodeURIComponent(item.item_id)}`));
    say($("item-status"), `${item.name} removed.`, "ok");
    await readMenu();
  } catch (error) {
    say($("item-status"), `Not removed: ${error.message}`, "bad");
  }
}

function renderQueue(requests) {
  const rows = requests.map((request) => {
    const who = request.viewer_name || "Anonymous";
    return el(
      "li",
      { dataset: { purchaseId: request.purchase_id } },
      el("span", { class: "what" }, `${request.item_name} for ${who}`),
      el("span", { class: "amount" }, formatMinor(request.amount_minor, request.currency)),
      el("span", { class: "muted" }, request.message ? `“${request.message}”` : ""),
      el("span", { class: "muted" }, `by ${clock(request.until_ms)}`),
      el("button", { type: "button", class: "done", onclick: () => answer(request, true) }, "Done"),
      el(
        "button",
        { type: "button", class: "secondary decline", onclick: () => answer(request, false) },
        "Decline",
      ),
    );
  });
  $("request-queue").replaceChildren(...rows);
  $("queue-empty").hidden = rows.length > 0;
}

/** Read the queue again (one read at a time; events arriving meanwhile ask for one more). */
async function readQueue() {
  if (editor.reading) {
    editor.again = true;
    return;
  }
  editor.reading = true;
  try {
    do {
      editor.again = false;
      const queue = await backend("GET", roomPath("/requests"));
      renderQueue(queue.requests);
    } while (editor.again);
  } catch (error) {
    say($("queue-status"), `The queue could not be read: ${error.message}`, "bad");
  } finally {
    editor.reading = false;
  }
}

async function answer(request, done) {
  const status = $("queue-status");
  try {
    if (done) {
      await editor.client.fulfil(request.purchase_id);
      say(status, `${request.item_name}: done.`, "ok");
    } else {
      await editor.client.decline(request.purchase_id);
      say(status, `${request.item_name}: declined; the viewer is not charged.`, "ok");
    }
  } catch (error) {
    say(status, REFUSALS[error.code] ?? `Not answered: ${error.message}`, "bad");
  }
  await readQueue();
}

/**
 * Start the menu editor and the request queue of `room` on the console's `client` (before it
 * connects). `currency`: the currency prices are entered in.
 */
export async function startMenuEditor(client, room, currency) {
  editor.client = client;
  editor.room = room;
  editor.currency = currency;
  $("item-form").addEventListener("submit", saveItem);
  client.addEventListener("event", (e) => {
    if (e.detail.event.startsWith("purchase")) {
      readQueue();
      setTimeout(readQueue, QUEUE_REREAD_MS);
    }
  });
  try {
    await readMenu();
  } catch (error) {
    say($("item-status"), `The menu could not be read: ${error.message}`, "bad");
  }
  await readQueue();
}
