// Payment search and support actions. Every action goes to /console/api/…, which sends the
// matching request of the cam site's HTTP API; the server checks the role again and audits it.

import { api, fillTable, registerSection } from "./console.js";

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

async function search(number) {
  $("search-status").textContent = "Searching…";
  const { ok, status, data } = await api(`/console/api/payments/${encodeURIComponent(number)}`);
  if (!ok) {
    found = null;
    $("search-result").hidden = true;
    $("search-status").textContent = status === 404
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
