/**
 * The viewer page's "my membership" panel (issue 16): sign up for a plan (the card is entered on
 * the processor's own page — the sandbox's — never here), see the plan, the next charge and the
 * allowance left, change plan or cancel.
 *
 * What the panel shows comes only from the server's `subscription` messages: each carries one
 * subscription whole, on every change and for each of the viewer's subscriptions when the
 * connection is welcomed, so the panel follows a change made anywhere (this page, another
 * device, the cam site, the renewal worker) live. The newest message of a subscription is the
 * one with the highest `updated_at_ms`; an older one arriving late is dropped. The actions go
 * through the demo backend (`/demo/…`), which plays the cam site's backend: no API key here.
 */

import { formatMinor } from "/js/tipmeter.js";
import { $, backend, el, param, say } from "/pages/common.js";

const LIVE = new Set(["trialing", "active", "past_due", "restricted", "paused"]);
const CHANGEABLE = new Set(["trialing", "active"]);

const STATES = {
  trialing: "trial",
  active: "active",
  past_due: "payment due",
  restricted: "restricted",
  paused: "paused",
  cancelled: "cancelled",
  expired: "expired",
};

const ERRORS = {
  already_subscribed: "You are already a member on this plan.",
  plan_incompatible: "That plan cannot replace this one.",
  not_allowed: "That is not possible in this membership's state.",
  charge_in_flight: "A payment is being made; try again in a moment.",
  plan_unknown: "That plan is not sold any more.",
  checkout_expired: "The sign-up took too long; start again.",
  network_error: "The server is unreachable; try again.",
};

const UNITS = {
  seconds: (n) => `${Math.floor(n / 60)} min${n % 60 ? ` ${n % 60} s` : ""}`,
  bp: (n) => `${(n / 100).toFixed(2)} %`,
};

const panel = {
  page: null,
  plans: [],
  /** Every subscription seen, by id, newest message kept; and the order they arrived in. */
  views: new Map(),
  order: [],
};

function explain(error) {
  return ERRORS[error.code] ?? "Something went wrong; try again in a moment.";
}

function day(ms) {
  return new Date(ms).toLocaleDateString("en-US", { year: "numeric", month: "short", day: "numeric" });
}

function money(minor, currency) {
  return formatMinor(minor, currency);
}

function planName(plan) {
  const level = plan.level || plan.plan_id;
  const price = plan.prices?.[panel.page.currency]?.price_minor;
  const period = plan.period ? `${plan.period.length > 1 ? `${plan.period.length} ` : ""}${plan.period.unit}` : "period";
  const trial = plan.trial_days ? `, ${plan.trial_days} days' trial` : "";
  return price === undefined ? level : `${level} — ${money(price, panel.page.currency)} a ${period}${trial}`;
}

/** The subscription the panel shows: the newest live one, else the newest ended one. */
function shown() {
  const views = panel.order.map((id) => panel.views.get(id));
  const live = views.filter((v) => LIVE.has(v.state));
  return (live.length ? live : views).at(-1) ?? null;
}

function render() {
  const view = shown();
  const live = view !== null && LIVE.has(view.state);
  $("membership").hidden = view === null && panel.plans.length === 0;
  $("membership-form").hidden = live || panel.plans.length === 0;
  $("membership-current").hidden = view === null;
  const state = $("membership-state");
  state.textContent = view === null ? "" : STATES[view.state] ?? view.state;
  state.dataset.state = view === null ? "" : view.state;
  if (view === null) {
    return;
  }
  const plan = $("membership-plan");
  plan.textContent = view.level || view.plan_id;
  plan.dataset.planId = view.plan_id;
  const next = $("membership-next");
  if (view.next_charge_at_ms !== null && view.price_minor !== null) {
    const amount = view.price_minor + view.adjustment_minor;
    next.textContent = `${money(Math.max(amount, 0), view.currency)} on ${day(view.next_charge_at_ms)}`;
  } else {
    next.textContent = "none";
  }
  $("membership-period-end").textContent = day(view.period_ends_at_ms);
  $("membership-note").textContent = note(view);
  const allowance = $("membership-allowance");
  allowance.hidden = !view.allowance?.length;
  allowance.replaceChildren(
    ...(view.allowance ?? []).map((a) => {
      const show = UNITS[a.unit] ?? ((n) => (a.unit === "minor" ? money(n, view.currency) : String(n)));
      return el("li", { dataset: { kind: a.kind } }, `${a.kind}: ${show(a.left)} left of ${show(a.granted)}`);
    }),
  );
  const others = panel.plans.filter(
    (p) => p.plan_id !== view.plan_id && p.kind === view.kind && (p.room || null) === (view.room || null),
  );
  $("membership-change-plan").replaceChildren(
    ...others.map((p) => el("option", { value: p.plan_id }, planName(p))),
  );
  $("membership-change").disabled = !CHANGEABLE.has(view.state) || others.length === 0;
  $("membership-change-plan").disabled = $("membership-change").disabled;
  $("membership-cancel-end").disabled = !CHANGEABLE.has(view.state) || view.cancel_at_ms !== null;
  $("membership-cancel-now").disabled = !live;
}

function note(view) {
  if (view.ended_at_ms !== null) {
    return `Your membership ended on ${day(view.ended_at_ms)}.`;
  }
  if (view.cancel_at_ms !== null) {
    return `Your membership ends on ${day(view.cancel_at_ms)}.`;
  }
  if (view.paused_at_ms !== null) {
    return `Paused since ${day(view.paused_at_ms)}.`;
  }
  if (view.pause_at_ms !== null) {
    return `Your membership pauses on ${day(view.pause_at_ms)}.`;
  }
  if (view.state === "trialing") {
    return `Your trial ends on ${day(view.trial_ends_at_ms)}.`;
  }
  if (view.state === "past_due" || view.state === "restricted") {
    return "Your last payment did not go through: we will try your card again.";
  }
  return view.features.length ? `Includes: ${view.features.join(", ")}.` : "";
}

/** A `subscription` message: keep it if it is the newest of its subscription. */
function seen(view) {
  const known = panel.views.get(view.subscription_id);
  if (known !== undefined && known.updated_at_ms > view.updated_at_ms) {
    return;
  }
  if (known === undefined) {
    panel.order.push(view.subscription_id);
  }
  panel.views.set(view.subscription_id, view);
  render();
}

async function act(path, body, done) {
  const status = $("membership-status");
  try {
    await backend("POST", path, { body });
    say(status, done, "ok");
  } catch (error) {
    say(status, explain(error), "bad");
  }
}

async function signUp(event) {
  event.preventDefault();
  const page = panel.page;
  $("membership-signup").disabled = true;
  try {
    const made = await backend("POST", `/demo/customers/${encodeURIComponent(page.customer)}/memberships`, {
      body: { plan_id: $("membership-plan-select").value, country: $("membership-country").value, room: page.room },
    });
    // The card is entered on the processor's own page; it sends the viewer back here.
    location.assign(made.card_url);
  } catch (error) {
    say($("membership-status"), explain(error), "bad");
    $("membership-signup").disabled = false;
  }
}

/** Start the panel: its plans, its buttons, and the client's `subscription` messages (added
 * before the client connects, so the welcome's messages are not missed). */
export async function startMembership(page, client) {
  panel.page = page;
  client.addEventListener("subscription", (event) => seen(event.detail));
  $("membership-form").addEventListener("submit", signUp);
  $("membership-change").addEventListener("click", () => {
    const view = shown();
    act(`/demo/subscriptions/${encodeURIComponent(view.subscription_id)}/change`,
      { plan_id: $("membership-change-plan").value }, "Your plan was changed.");
  });
  for (const [id, mode, done] of [
    ["membership-cancel-end", "period_end", "Your membership will end with this period."],
    ["membership-cancel-now", "now", "Your membership was cancelled."],
  ]) {
    $(id).addEventListener("click", () => {
      const view = shown();
      act(`/demo/subscriptions/${encodeURIComponent(view.subscription_id)}/cancel`, { mode }, done);
    });
  }
  const outcome = param("membership", "");
  if (outcome === "signed_up") {
    say($("membership-status"), "Welcome! Your membership is set up.", "ok");
  } else if (outcome) {
    say($("membership-status"), explain({ code: outcome }), "bad");
  }
  const sold = await backend("GET", "/demo/plans");
  panel.plans = sold.plans;
  $("membership-plan-select").replaceChildren(
    ...panel.plans.map((p) => el("option", { value: p.plan_id }, planName(p))),
  );
  render();
}
