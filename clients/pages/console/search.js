// Payment search and support actions, and the customer's memberships (cancel, pause, resume).
// Every action goes to /console/api/…, which sends the matching request of the cam site's HTTP
// API; the server checks the role again and audits it.

import { allows, api, fillTable, operatorState, registerSection } from "./console.js";

const $ = (id) => document.getElementById(id);
let found = null;

function summary(body) {
  const rows = [
    ["Customer", body.customer], ["Tab", body.tab_id], ["State", body.state ?? body.outcome],
    ["Currency", body.currency], ["Captured (minor)", body.captured_minor ?? body.accrued_minor],
    ["Capture", body.capture_id], ["Flagged", body.flag ? "yes" : "no"],
  ];
  const tbody = $("search-summary");
  tbody.replaceChildren();
  for (const [label, value] of rows) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = value === undefined || value === null ? "" : String(value);
    tr.append(th, td);
    tbody.append(tr);
  }
}

const ID = /^[A-Za-z0-9_.-]{1,64}$/;

function day(ms) {
  return ms ? new Date(ms).toISOString().slice(0, 10) : "";
}

function note(sub) {
  if (sub.state === "paused") return `paused since ${day(sub.paused_at_ms)}`;
  if (sub.pause_at_ms) return `pauses on ${day(sub.pause_at_ms)}`;
  if (sub.ended_at_ms) return `ended ${day(sub.ended_at_ms)}`;
  if (sub.cancel_at_ms) return `ends on ${day(sub.cancel_at_ms)}`;
  return "";
}

function actionsFor(sub) {
  // What the lifecycle allows from here (the API refuses anything else anyway).
  const live = !["cancelled", "expired"].includes(sub.state);
  const renewing = ["trialing", "active"].includes(sub.state);
  const found = [];
  if (renewing && !sub.pause_at_ms && !sub.cancel_at_ms) found.push(["pause", "Pause"]);
  if (sub.state === "paused" || sub.pause_at_ms) found.push(["resume", "Resume"]);
  if (renewing && !sub.cancel_at_ms) found.push(["cancel:period_end", "Cancel at period end"]);
  if (live) found.push(["cancel:now", "Cancel now"]);
  return found;
}

async function membershipAction(sub, action) {
  const [verb, mode] = action.split(":");
  const { ok, data } = await api(
    `/console/api/subscriptions/${encodeURIComponent(sub.subscription_id)}/${verb}`,
    { method: "POST", body: mode ? { mode } : {} });
  const status = $("membership-status");
  status.textContent = ok
    ? `${sub.subscription_id}: ${verb}${mode ? ` (${mode})` : ""} done — ${data.state}.`
    : `Refused: ${data?.error?.message ?? "error"}`;
  status.dataset.outcome = ok ? `${verb}:${data.state}` : (data?.error?.code ?? "error");
  await memberships(sub.customer);
}

async function memberships(customer) {
  const box = $("memberships");
  const { ok, data } = await api(
    `/console/api/customers/${encodeURIComponent(customer)}/subscriptions`);
  const subs = ok ? data.subscriptions : [];
  box.hidden = subs.length === 0;
  $("memberships-customer").textContent = customer;
  const tbody = $("memberships-rows");
  fillTable(tbody, subs, ["subscription_id", "plan_id", "state",
    (sub) => day(sub.next_charge_at_ms), note]);
  const support = allows(operatorState().role, "support");
  subs.forEach((sub, i) => {
    const row = tbody.children[i];
    row.dataset.subscription = sub.subscription_id;
    if (!support) return;
    const td = document.createElement("td");
    for (const [action, label] of actionsFor(sub)) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.action = action;
      button.addEventListener("click", () => membershipAction(sub, action));
      td.append(button, " ");
    }
    row.append(td);
  });
  return subs.length;
}

async function search(number) {
  $("search-status").textContent = "Searching…";
  $("membership-status").textContent = "";
  const { ok, status, data } = await api(`/console/api/payments/${encodeURIComponent(number)}`);
  if (!ok) {
    found = null;
    $("search-result").hidden = true;
    // A number that is no payment may be a customer: their memberships, if any.
    const members = status === 404 && ID.test(number) ? await memberships(number) : 0;
    if (!members) $("memberships").hidden = true;
    $("search-status").textContent = members
      ? `No payment has the number ${number}; customer ${number} has ${members} membership(s).`
      : status === 404
        ? `Nothing has the number ${number}.` : (data?.error?.message ?? "the search failed");
    $("search-status").dataset.found = "false";
    return;
  }
  found = data;
  const settlement = data.settlement ?? {};
  summary({ ...settlement, ...data });
  fillTable($("search-refunds"), data.refunds ?? [],
    ["refund_id", "amount_minor", "status", "reason", "decided_by"]);
  $("search-history").textContent = JSON.stringify(data, null, 2);
  $("search-result").hidden = false;
  $("search-status").textContent = `Found tab ${data.tab_id} of ${data.customer}.`;
  $("search-status").dataset.found = "true";
  await memberships(data.customer);
}

async function refund(event) {
  event.preventDefault();
  if (!found) return;
  const body = {
    customer: found.customer, tab_id: found.tab_id,
    amount_minor: Number.parseInt($("refund-amount").value, 10), reason: $("refund-reason").value,
  };
  const override = $("refund-override")?.value.trim();
  if (override) body.override_reason = override;
  const { ok, data } = await api("/console/api/refunds", { method: "POST", body });
  const status = $("action-status");
  status.textContent = ok
    ? `Refund ${data.refund_id}: ${data.status}`
    : `Refused: ${data?.error?.message ?? "error"}`;
  status.dataset.outcome = ok ? data.status : (data?.error?.code ?? "error");
  await search(found.tab_id);
}

async function clearFlag() {
  if (!found) return;
  const { ok, data } = await api(
    `/console/api/customers/${encodeURIComponent(found.customer)}/flag/clear`, { method: "POST" });
  $("action-status").textContent = ok ? "Flag cleared." : (data?.error?.message ?? "error");
}

let initialised = false;
registerSection("search", "Find a payment", "read_only", () => {
  if (initialised) return;
  initialised = true;
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search($("search-number").value.trim());
  });
  $("refund-form")?.addEventListener("submit", refund);
  $("clear-flag")?.addEventListener("click", clearFlag);
});
