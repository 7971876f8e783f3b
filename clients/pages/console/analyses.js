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

function drawRefunds(body, unit) {
  const labels = buckets(body.rows);
  const alert = body.alert_level_bp / 100;
  $("an-alert").textContent = `(alert level ${alert.toFixed(2)} %)`;
  const alarmed = body.rows.some((row) => row.alert);
  $("an-alert").className = alarmed ? "alert" : "muted";
  draw("refunds", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "refunds", backgroundColor: "#ffb347", yAxisID: "y",
          data: byBucket(body.rows, labels, (row) => row.refunds_minor / unit) },
        { label: "disputes opened", backgroundColor: "#ff6b6b", yAxisID: "y",
          data: byBucket(body.rows, labels, (row) => row.disputes_minor / unit) },
        { label: "dispute ratio %", type: "line", yAxisID: "ratio", borderColor: "#8ab4ff",
          data: byBucket(body.rows, labels, (row) => row.dispute_ratio_bp / 100) },
        { label: "alert level %", type: "line", yAxisID: "ratio", borderColor: "#ff4f9a",
          borderDash: [6, 4], pointRadius: 0, data: labels.map(() => alert) },
      ],
    },
    options: {
      scales: {
        y: { position: "left", beginAtZero: true },
        ratio: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      },
    },
  });
}

function drawCollection(body, unit) {
  const labels = buckets(body.rows);
  draw("collection", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "owed", backgroundColor: "#b3a8c4", yAxisID: "y",
          data: byBucket(body.rows, labels, (row) => row.owed_minor / unit) },
        { label: "recovered", backgroundColor: "#4cd490", yAxisID: "y",
          data: byBucket(body.rows, labels, (row) => row.paid_minor / unit) },
        { label: "recovery rate %", type: "line", yAxisID: "rate", borderColor: "#ffcc4d",
          data: byBucket(body.rows, labels, (row) => row.recovery_bp / 100) },
      ],
    },
    options: {
      scales: {
        y: { position: "left", beginAtZero: true },
        rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false } },
      },
    },
  });
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
  const labels = buckets(body.rows);
  draw("mrr", {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "recurring revenue / month", borderColor: "#c792ea", yAxisID: "y",
          data: byBucket(body.rows, labels, (row) => row.mrr_minor / unit) },
        { label: "paid-up memberships", borderColor: "#8ab4ff", yAxisID: "n",
          data: byBucket(body.rows, labels, (row) => row.subscriptions_n) },
      ],
    },
    options: {
      scales: {
        y: { position: "left", beginAtZero: true },
        n: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      },
    },
  });
}

function drawChurn(body) {
  const labels = buckets(body.rows);
  draw("churn", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "ended", backgroundColor: "#ff6b6b", yAxisID: "n",
          data: byBucket(body.rows, labels, (row) => row.ended_n) },
        { label: "churn %", type: "line", yAxisID: "rate", borderColor: "#ffcc4d",
          data: byBucket(body.rows, labels, (row) => row.churn_bp / 100) },
      ],
    },
    options: {
      scales: {
        n: { position: "left", beginAtZero: true },
        rate: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      },
    },
  });
}

function drawTrials(body) {
  const labels = buckets(body.rows);
  draw("trials", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "trials ended", backgroundColor: "#b3a8c4", yAxisID: "n",
          data: byBucket(body.rows, labels, (row) => row.trials_ended_n) },
        { label: "converted", backgroundColor: "#4cd490", yAxisID: "n",
          data: byBucket(body.rows, labels, (row) => row.converted_n) },
        { label: "conversion %", type: "line", yAxisID: "rate", borderColor: "#ffcc4d",
          data: byBucket(body.rows, labels, (row) => row.conversion_bp / 100) },
      ],
    },
    options: {
      scales: {
        n: { position: "left", beginAtZero: true },
        rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false } },
      },
    },
  });
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
