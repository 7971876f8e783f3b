// The operator console: log in, then the sections the operator's role may see. Talks only to
// /console/api/… on this server; the session is an HttpOnly cookie (this script never sees
// it), and every state-changing request carries the session's CSRF token in X-CSRF-Token.

const ROLES = ["read_only", "support", "admin"];
const state = { operator: null, role: null, csrf: null };
const sections = new Map(); // name → {label, role, show}

const $ = (id) => document.getElementById(id);

export function allows(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf ?? "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/console/api/login") showLogin();
  return { status: response.status, ok: response.ok, data };
}

export function registerSection(name, label, role, show) {
  sections.set(name, { label, role, show });
}

export function operatorState() {
  return state;
}

function showLogin() {
  state.operator = null;
  $("login-card").hidden = false;
  $("tabs").hidden = true;
  $("who").hidden = true;
  $("logout").hidden = true;
  for (const el of document.querySelectorAll("section[data-section]")) el.hidden = true;
}

function showSection(name) {
  for (const el of document.querySelectorAll("section[data-section]")) {
    el.hidden = el.dataset.section !== name;
  }
  for (const button of $("tabs").querySelectorAll("button")) {
    button.setAttribute("aria-selected", String(button.dataset.section === name));
  }
  sections.get(name)?.show();
}

function enter(me) {
  state.operator = me.operator;
  state.role = me.role;
  state.csrf = me.csrf_token;
  $("login-card").hidden = true;
  $("who").textContent = `${me.operator} · ${me.role.replace("_", "-")}`;
  $("who").hidden = false;
  $("logout").hidden = false;
  const tabs = $("tabs");
  tabs.replaceChildren();
  let first = null;
  // Tabs in the page's order of sections, whichever module registered them first.
  const order = [...document.querySelectorAll("section[data-section]")].map((el) => el.dataset.section);
  const named = [...sections].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  for (const [name, section] of named) {
    // A section the role may not use is not drawn at all (the server refuses it anyway).
    if (!allows(me.role, section.role)) {
      document.querySelector(`section[data-section="${name}"]`)?.remove();
      continue;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = section.label;
    button.dataset.section = name;
    button.addEventListener("click", () => showSection(name));
    tabs.append(button);
    first ??= name;
  }
  // Actions a role may not take are removed from every section, not only hidden.
  for (const el of document.querySelectorAll("[data-role]:not([data-section])")) {
    if (!allows(me.role, el.dataset.role)) el.remove();
  }
  tabs.hidden = false;
  if (first) showSection(first);
}

async function login(event) {
  event.preventDefault();
  const error = $("login-error");
  error.hidden = true;
  const { ok, data } = await api("/console/api/login", {
    method: "POST",
    body: { operator: $("login-name").value, password: $("login-password").value },
  });
  $("login-password").value = "";
  if (!ok) {
    error.textContent = data?.error?.message ?? "login failed";
    error.dataset.code = data?.error?.code ?? "";
    error.hidden = false;
    return;
  }
  enter(data);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.append(td);
}

export function fillTable(tbody, rows, columns) {
  tbody.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const value = typeof column === "function" ? column(item) : item[column];
      cell(tr, value === null || value === undefined ? "" : String(value));
    }
    tbody.append(tr);
  }
}

registerSection("audit", "Audit log", "admin", async () => {
  const { ok, data } = await api("/console/api/audit?limit=100");
  if (!ok) return;
  fillTable($("audit-rows"), data.lines,
    ["at", "operator_id", "action", "target", "outcome", "remote_addr"]);
});

async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", async () => {
    await api("/console/api/logout", { method: "POST" });
    showLogin();
  });
  const { ok, data } = await api("/console/api/session");
  if (ok && data.operator) enter(data); else showLogin();
}

// Other modules register their sections first (they are imported before this runs).
window.addEventListener("DOMContentLoaded", () => { start(); });
