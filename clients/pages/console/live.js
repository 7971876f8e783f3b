// The live panel: one WebSocket to /console/live while the section is shown; the server pushes
// a snapshot every two seconds (the session cookie is the credential; the origin is checked).

import { fillTable, registerSection } from "./console.js";

const $ = (id) => document.getElementById(id);
let socket = null;

function money(amountMinor, currency) {
  const format = new Intl.NumberFormat("en", { style: "currency", currency });
  const scale = 10 ** format.resolvedOptions().maximumFractionDigits;
  return format.format(amountMinor / scale);
}

function render(snapshot) {
  const roles = Object.entries(snapshot.connections);
  $("live-connections").textContent = String(roles.reduce((n, [, v]) => n + v, 0));
  $("live-connections-roles").textContent = roles.map(([r, v]) => `${r} ${v}`).join(" · ");
  $("live-tips").textContent = snapshot.tips_per_s.toFixed(1);
  const kinds = Object.entries(snapshot.shows);
  $("live-shows").textContent = String(kinds.reduce((n, [, v]) => n + v, 0));
  $("live-shows-kinds").textContent = kinds.map(([k, v]) => `${k} ${v}`).join(" · ");
  $("live-revenue").textContent = snapshot.revenue_today.length
    ? snapshot.revenue_today.map((r) => money(r.amount_minor, r.currency)).join(" · ")
    : "–";
  $("live-queue").textContent = String(snapshot.settlement_queue);
  $("live-dead").textContent =
    `${snapshot.settlement_dead_letters} · ${snapshot.webhook_dead_letters}`;
  $("live-dead").className = snapshot.settlement_dead_letters + snapshot.webhook_dead_letters
    ? "value alert" : "value";
  fillTable($("live-declines"), snapshot.declines_today, ["reason", "n"]);
  $("live-state").textContent = `updated ${new Date(snapshot.at_ms).toLocaleTimeString()}`;
  $("live-card").dataset.snapshots = String(Number($("live-card").dataset.snapshots ?? 0) + 1);
}

function connect() {
  if (socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/console/live`);
  socket.addEventListener("message", (event) => render(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    socket = null;
    $("live-state").textContent = "disconnected";
  });
}

// The socket runs only while the live section is visible.
new MutationObserver(() => {
  const card = $("live-card");
  if (card && card.hidden && socket) socket.close();
}).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["hidden"] });

registerSection("live", "Live", "read_only", connect);
