// Overview: an owner's memories counted by state, type and retention tier (GET
// /v1/insights/overview), as figures and bars.
import { $, barList, el, shortDate, typeClass } from "./dom.js";

const TIER_NAMES = { working: "working", episodic: "episodic", long_term: "long-term" };

function card(key, value, label) {
  return el("div", { class: "card", dataset: { key } },
    el("span", { class: "card-value" }, String(value)), el("span", { class: "card-label" }, label));
}

function span(data) {
  if (!data.first_at) return "no memories yet";
  const first = shortDate(new Date(data.first_at));
  const last = shortDate(new Date(data.last_at));
  return first === last ? first : `${first} – ${last}`;
}

function legend(entries) {
  return el("p", { class: "legend" }, ...entries.map(([cls, name]) =>
    el("span", {}, el("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), name)));
}

export function renderOverview(data) {
  $("overview-owner").textContent = data.owner;
  $("overview-cards").replaceChildren(
    card("total", data.total, "memories"),
    card("active", data.by_state.active, "active"),
    card("archived", data.by_state.archived, "archived"),
    card("sessions", data.sessions, "sessions"),
    card("pinned", data.pinned, "pinned"),
  );
  $("overview-span").textContent = `Happened ${span(data)}.`;
  const types = Object.entries(data.by_type)
    .map(([type, c]) => ({ key: type, total: c.active + c.archived, parts: [
      { name: "active", value: c.active, class: typeClass(type) },
      { name: "archived", value: c.archived, class: "archived-part" },
    ] }))
    .sort((a, b) => b.total - a.total || a.key.localeCompare(b.key));
  $("by-type").replaceChildren(
    barList(types, { label: "Memories by type" }),
    legend([["type-other", "active (colour of its type)"], ["archived-part", "archived"]]));
  const tiers = Object.entries(data.by_tier).map(([tier, n]) => ({
    key: TIER_NAMES[tier] || tier,
    total: n,
    parts: [{ name: "active", value: n, class: `tier-${tier}` }],
  }));
  $("by-tier").replaceChildren(barList(tiers, { label: "Active memories by retention tier" }));
  const states = ["active", "archived"].map((name) => ({
    key: name, total: data.by_state[name],
    parts: [{ name, value: data.by_state[name], class: `state-${name}` }],
  }));
  $("by-state").replaceChildren(barList(states, { label: "Memories by state" }));
}
