// The console's analyses: seven charts drawn by Chart.js (served by tipmeter itself, the global
// `Chart` of its UMD build), each with its CSV download. Amounts come in integer minor units;
// they are divided by the currency's minor-unit scale only to be drawn.

import { api, registerSection } from "./console.js";

const $ = (id) => document.getElementById(id);
const charts = new Map(); // analysis name → Chart
const KIND_COLOURS = {
  tip: "#ff4f9a", purchase: "#ffd166", private: "#8ab4ff", spy: "#ffb347", cam2cam: "#4cd490", membership: "#c792ea",
};

function scale(currency) {
  const digits = new Intl.NumberFormat("en", { style: "currency", currency })
    .resolvedOptions().maximumFractionDigits;
  return 10 ** digits;
}

function query(extra = {}) {
  const params = new URLSearchParams({
    period: $("an-period").value,
    since: $("an-since").value,
    until: $("an-until").value,
    ...extra,
  });
  const currency = $("an-currency").value;
  if (currency) params.set("currency", currency);
  return params;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function draw(name, config) {
  charts.get(name)?.destroy();
  const canvas = $(`chart-${name}`);
  const chart = new Chart(canvas, {
    ...config,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: true,
      plugins: { legend: { labels: { color: "#b3a8c4" } } },
      ...config.options,
    },
  });
  charts.set(name, chart);
  const points = config.data.datasets.reduce((n, d) => n + d.data.length, 0);
  canvas.dataset.points = String(points);
  canvas.dataset.rendered = "true";
}

function buckets(rows) {
  return [...new Set(rows.map((row) => row.bucket))].sort();
}

function byBucket(rows, labels, pick) {
  const index = new Map(labels.map((label, i) => [label, i]));
  const values = labels.map(() => 0);
  for (const row of rows) values[index.get(row.bucket)] += pick(row);
  return values;
}

function drawRevenue(body, unit) {
  const labels = buckets(body.rows);
  const kinds = [...new Set(body.rows.map((row) => row.kind))].sort();
  draw("revenue", {
    type: "bar",
    data: {
      labels,
      datasets: kinds.map((kind) => ({
        label: kind,
        backgroundColor: KIND_COLOURS[kind] ?? "#999",
        data: byBucket(body.rows.filter((row) => row.kind === kind), labels,
          (row) => row.amount_minor / unit),
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true } } },
  });
}

// A chart by bucket with two value axes: money or counts on the left, a rate (or a second
// count) on the right. Each series: its label, its axis ("left" or "right"), what it draws of a
// row (or, with `values`, of the labels: a constant line) and its style.
function drawTwoAxes(name, body, type, series, right = { beginAtZero: true }) {
  const labels = buckets(body.rows);
  draw(name, {
    type,
    data: {
      labels,
      datasets: series.map(({ label, axis, pick, values, style }) => ({
        label,
        yAxisID: axis,
        ...style,
        data: values ? values(labels) : byBucket(body.rows, labels, pick),
      })),
    },
    options: {
      scales: {
        left: { position: "left", beginAtZero: true },
        right: { position: "right", ...right, grid: { drawOnChartArea: false } },
      },
    },
  });
}

const bar = (colour) => ({ backgroundColor: colour });
const line = (colour) => ({ type: "line", borderColor: colour });
const PERCENT = { min: 0, max: 100 };

function drawRefunds(body, unit) {
  const alert = body.alert_level_bp / 100;
  $("an-alert").textContent = `(alert level ${alert.toFixed(2)} %)`;
  const alarmed = body.rows.some((row) => row.alert);
  $("an-alert").className = alarmed ? "alert" : "muted";
  drawTwoAxes("refunds", body, "bar", [
    { label: "refunds", axis: "left", pick: (row) => row.refunds_minor / unit, style: bar("#ffb347") },
    { label: "disputes opened", axis: "left", pick: (row) => row.disputes_minor / unit,
      style: bar("#ff6b6b") },
    { label: "dispute ratio %", axis: "right", pick: (row) => row.dispute_ratio_bp / 100,
      style: line("#8ab4ff") },
    { label: "alert level %", axis: "right", values: (labels) => labels.map(() => alert),
      style: { ...line("#ff4f9a"), borderDash: [6, 4], pointRadius: 0 } },
  ]);
}

function drawCollection(body, unit) {
  drawTwoAxes("collection", body, "bar", [
    { label: "owed", axis: "left", pick: (row) => row.owed_minor / unit, style: bar("#b3a8c4") },
    { label: "recovered", axis: "left", pick: (row) => row.paid_minor / unit, style: bar("#4cd490") },
    { label: "recovery rate %", axis: "right", pick: (row) => row.recovery_bp / 100,
      style: line("#ffcc4d") },
  ], PERCENT);
}

function drawTopModels(body, unit) {
  draw("top-models", {
    type: "bar",
    data: {
      labels: body.rows.map((row) => row.room),
      datasets: [{ label: "share", backgroundColor: "#ff4f9a",
        data: body.rows.map((row) => row.share_minor / unit) }],
    },
    options: { indexAxis: "y" },
  });
}

function drawMrr(body, unit) {
  drawTwoAxes("mrr", body, "line", [
    { label: "recurring revenue / month", axis: "left", pick: (row) => row.mrr_minor / unit,
      style: line("#c792ea") },
    { label: "paid-up memberships", axis: "right", pick: (row) => row.subscriptions_n,
      style: line("#8ab4ff") },
  ]);
}

function drawChurn(body) {
  drawTwoAxes("churn", body, "bar", [
    { label: "ended", axis: "left", pick: (row) => row.ended_n, style: bar("#ff6b6b") },
    { label: "churn %", axis: "right", pick: (row) => row.churn_bp / 100, style: line("#ffcc4d") },
  ]);
}

function drawTrials(body) {
  drawTwoAxes("trials", body, "bar", [
    { label: "trials ended", axis: "left", pick: (row) => row.trials_ended_n, style: bar("#b3a8c4") },
    { label: "converted", axis: "left", pick: (row) => row.converted_n, style: bar("#4cd490") },
    { label: "conversion %", axis: "right", pick: (row) => row.conversion_bp / 100,
      style: line("#ffcc4d") },
  ], PERCENT);
}

const DRAW = {
  revenue: drawRevenue, refunds: drawRefunds, collection: drawCollection,
  "top-models": drawTopModels, mrr: drawMrr, churn: drawChurn, trials: drawTrials,
};

async function currencies() {
  // The currencies the window has revenue in; the charts show one at a time.
  const params = query();
  params.delete("currency");
  params.set("period", "month");
  const { ok, data } = await api(`/console/api/analyses/revenue?${params}`);
  const found = ok ? [...new Set(data.rows.map((row) => row.currency))].sort() : [];
  const select = $("an-currency");
  const chosen = select.value;
  select.replaceChildren(...(found.length ? found : ["USD"]).map((code) => new Option(code, code)));
  select.value = found.includes(chosen) ? chosen : (found.includes("USD") ? "USD" : found[0] ?? "USD");
}

async function refresh() {
  $("an-status").textContent = "Loading…";
  await currencies();
  const unit = scale($("an-currency").value);
  for (const name of Object.keys(DRAW)) {
    const { ok, data } = await api(`/console/api/analyses/${name}?${query()}`);
    if (!ok) {
      $("an-status").textContent = data?.error?.message ?? "the analysis failed";
      return;
    }
    DRAW[name](data, unit);
    const link = document.querySelector(`[data-analysis="${name}"] a.csv`);
    link.href = `/console/api/analyses/${name}?${query({ format: "csv" })}`;
  }
  $("an-status").textContent =
    `${$("an-currency").value}, by ${$("an-period").value}, ${$("an-since").value} to ${$("an-until").value}`;
}

let initialised = false;
registerSection("analyses", "Analyses", "read_only", () => {
  if (!initialised) {
    initialised = true;
    const params = new URLSearchParams(location.hash.slice(1));
    const until = new Date(Date.now() + 86_400_000);
    $("an-until").value = params.get("until") ?? isoDay(until);
    $("an-since").value = params.get("since") ?? isoDay(new Date(until - 30 * 86_400_000));
    $("an-period").value = params.get("period") ?? "day";
    $("analyses-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      refresh();
    });
  }
  refresh();
});
