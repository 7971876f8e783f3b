/**
 * What the demo pages share: the demo backend's routes (it plays the cam site's backend, so
 * the browser never holds an API key), building a client, and small DOM helpers.
 *
 * Text from the network (names, tip messages) only ever goes into `textContent`, never into
 * HTML, so a message cannot inject markup.
 */

import { TipmeterClient } from "/js/tipmeter.js";

/** A refusal from the demo backend or the HTTP API: the stable `code`, and the HTTP status. */
export class BackendError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message || code);
    this.name = "BackendError";
    this.status = status;
    this.code = code;
    this.extra = extra;
  }
}

/** Call the demo backend; resolve with the JSON answer, reject with a BackendError. */
export async function backend(method, path, { body = null, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === null ? headers : { "content-type": "application/json", ...headers },
      body: body === null ? null : JSON.stringify(body),
    });
  } catch (error) {
    throw new BackendError(0, "network_error", `the server is unreachable (${error.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new BackendError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? response.statusText,
      error,
    );
  }
  return data;
}

/** The demo backend's settings (defaults, limits, sandbox cards), or null when it is off. */
export async function demoConfig() {
  try {
    return await backend("GET", "/demo/config");
  } catch (error) {
    if (error.code === "demo_disabled") {
      return null;
    }
    throw error;
  }
}

/** Show ``text`` in the page's #fatal banner: the page cannot go on. */
export function fatal(text) {
  const banner = document.getElementById("fatal");
  banner.textContent = text;
  banner.hidden = false;
}

/** The demo backend's settings, or null (after saying why on the page) when it is off. */
export async function demoConfigOrExplain() {
  const config = await demoConfig();
  if (config === null) {
    fatal("The demo backend is off on this server: run `make run`, or set TIPMETER_DEMO_API=on.");
  }
  return config;
}

/** A function that fetches a fresh single-use ticket each time it is called. */
export function ticketProvider(role, subject, name = "") {
  return async () => (await backend("POST", "/demo/tickets", { body: { role, subject, name } })).ticket;
}

/** This server's WebSocket endpoint, seen from the page. */
export function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/** The page's query parameters, with defaults. */
export function param(name, fallback) {
  const value = new URLSearchParams(location.search).get(name);
  return value === null || value === "" ? fallback : value;
}

/**
 * A client for this server. `?encoding=msgpack` in the page's URL switches to MessagePack,
 * loading @msgpack/msgpack's ES module (installed by `make`, served by this server).
 */
export async function makeClient(ticket, options = {}) {
  const encoding = param("encoding", "json") === "msgpack" ? "msgpack" : "json";
  const msgpack = encoding === "msgpack" ? await import("/js/vendor/msgpack/index.mjs") : null;
  return new TipmeterClient(wsUrl(), ticket, { encoding, msgpack, ...options });
}

const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  open: "live",
  waiting: "reconnecting…",
  closed: "disconnected",
};

/** Keep `pill` showing the client's connection state. */
export function bindStatePill(client, pill) {
  const show = (state) => {
    pill.dataset.state = state;
    pill.textContent = STATE_TEXT[state] ?? state;
  };
  show(client.state);
  client.addEventListener("state", (e) => show(e.detail.state));
}

/** The page's element with id `id`. */
export const $ = (id) => document.getElementById(id);

/**
 * The start the viewer page and the model console share: the demo's settings (null, after
 * saying why on the page, when the demo backend is off), the room from `?room=` shown in
 * #room-name, and the currency's code in every `.currency-code`. Sets `page.config` and
 * `page.room`.
 */
export async function openPage(page) {
  const config = await demoConfigOrExplain();
  if (config === null) {
    return null;
  }
  page.config = config;
  page.room = param("room", config.room);
  $("room-name").textContent = page.room;
  for (const node of document.querySelectorAll(".currency-code")) {
    node.textContent = config.currency;
  }
  return config;
}

/**
 * Connect the page's client with tickets from `ticket`: kept as `page.client` and as
 * `window.tipmeter.client` (a handle for the browser console and the page's tests), its
 * connection state shown in #connection. Listeners are added by the caller before it connects.
 */
export async function pageClient(page, ticket) {
  const client = await makeClient(ticket);
  page.client = client;
  window.tipmeter = { client };
  bindStatePill(client, $("connection"));
  return client;
}

/** Build an element: `el("li", {class: "x", dataset: {id: 1}}, "text", child)`. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "class") {
      node.className = value;
    } else if (key.startsWith("on")) {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Keep at most `max` children of `list` (the oldest, at the end, go first). */
export function trim(list, max) {
  while (list.children.length > max) {
    list.lastElementChild.remove();
  }
}

/** Set a status line's text and tone ("", "ok" or "bad"). */
export function say(node, text, tone = "") {
  node.textContent = text;
  node.className = `status ${tone}`.trim();
}

/** The time of day of `ms` for display. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
