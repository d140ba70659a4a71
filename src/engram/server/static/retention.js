// Retention: each active memory's retrievability over the coming days on the decay law's
// forgetting curve, what gc would archive now and later (dry runs), and the weakest
// memories (GET /v1/insights/retention). Every law is R(t) = f(t / S), so the one sampled
// curve gives each memory's future: R(d) = f((age + d) / S).
import { scale } from "./charts.js";
import { $, barList, count, el, shortDate, svg } from "./dom.js";

const W = 560;
const H = 300;
const M = { left: 58, right: 16, top: 14, bottom: 40 };
const WEAKEST_SHOWN = 25;
const TIER_NAMES = { working: "working", episodic: "episodic", long_term: "long-term" };

const horizon = (days) => (days === 0 ? "now" : `in ${count(days, "day")}`);

function frame(x, y, days) {
  const xs = [0, 7, 30, 60, 90, 180, 365].filter((d) => d <= days);
  const ys = [0, 0.25, 0.5, 0.75, 1];
  return svg("g", { class: "axis", "aria-hidden": "true" },
    ...ys.flatMap((v) => [
      svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      svg("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(2)),
    ]),
    ...xs.flatMap((d) => [
      svg("line", { class: "grid", x1: x(d), x2: x(d), y1: M.top, y2: H - M.bottom }),
      svg("text", { x: x(d), y: H - M.bottom + 16, "text-anchor": "middle" },
        d === 0 ? "now" : `${d} d`),
    ]),
    svg("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle" },
      "days from now"),
    svg("text", { x: 4, y: (M.top + H - M.bottom) / 2, class: "axis-name" }, "R"),
    svg("line", { class: "rule", x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }));
}

function threshold(data, x, y) {
  const r = data.min_retrievability;
  if (r === null) return null;
  return svg("g", { class: "threshold" },
    svg("line", { x1: M.left, x2: W - M.right, y1: y(r), y2: y(r) }),
    svg("text", { x: W - M.right - 4, y: y(r) + 15, "text-anchor": "end" },
      `gc archives below R = ${r}`));
}

/** R at `halfLives` on the sampled curve (linear between samples). */
function rAt(curve, halfLives) {
  const i = curve.findIndex((p) => p.half_lives >= halfLives);
  if (i < 0) return curve.at(-1).retrievability;
  if (i === 0) return curve[0].retrievability;
  const [a, b] = [curve[i - 1], curve[i]];
  const t = (halfLives - a.half_lives) / (b.half_lives - a.half_lives || 1);
  return a.retrievability + t * (b.retrievability - a.retrievability);
}

/** Memories on the same curve (strength, age, tier, fate) share one drawn line. */
function curveGroups(data, doomed) {
  const groups = new Map();
  for (const m of data.memories) {
    const kept = m.pinned || m.tier === "working"; // forgetting never archives these
    const fate = doomed.has(m.id) ? "doomed" : kept ? "kept" : "";
    const key = [m.strength_days.toFixed(2), m.days_since_use.toFixed(1), m.tier, fate].join("|");
    if (!groups.has(key)) groups.set(key, { m, fate, n: 0 });
    groups.get(key).n += 1;
  }
  const layer = { doomed: 0, "": 1, kept: 2 }; // dashed lines on top, so overlaps stay visible
  return [...groups.values()].sort((a, b) => layer[a.fate] - layer[b.fate]);
}

function projection(group, data, x, y) {
  const { m } = group;
  const steps = 90;
  const d = Array.from({ length: steps + 1 }, (_, i) => (data.horizon_days * i) / steps);
  const path = d.map((day, i) => `${i ? "L" : "M"}${x(day).toFixed(1)},`
    + `${y(rAt(data.curve, (m.days_since_use + day) / m.strength_days)).toFixed(1)}`).join(" ");
  return svg("path", { class: `proj tier-${m.tier} ${group.fate}`, d: path },
    svg("title", {}, `${count(group.n, "memory", "memories")}: strength `
      + `${m.strength_days.toFixed(1)} days, ${TIER_NAMES[m.tier]}`));
}

function curveChart(data, doomed) {
  const x = scale([0, data.horizon_days], [M.left, W - M.right]);
  const y = scale([0, 1], [H - M.bottom, M.top]);
  const groups = curveGroups(data, doomed);
  const dots = data.memories.map((m) => svg("circle", {
    class: `dot tier-${m.tier}${doomed.has(m.id) ? " doomed" : ""}${m.pinned ? " pinned" : ""}`,
    cx: x(0), cy: y(m.retrievability), r: 5, "data-id": m.id,
  }, svg("title", {}, `${m.preview} — R ${m.retrievability.toFixed(2)} now, strength `
    + `${m.strength_days.toFixed(1)} days, ${TIER_NAMES[m.tier]}`)));
  const label = `Retrievability of ${count(data.memories.length, "memory", "memories")} over the`
    + ` next ${data.horizon_days} days (decay law ${data.decay}),`
    + ` ${count(groups.length, "curve")}.`;
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    frame(x, y, data.horizon_days), threshold(data, x, y),
    ...groups.map((g) => projection(g, data, x, y)), ...dots);
}

function doomedIds(data) {
  return new Set(data.forecast.flatMap((f) => f.evict.map((e) => e.id)));
}

function nextEvictions(data, openMemory) {
  const next = data.forecast.find((f) => f.evict.length);
  if (!next) {
    const why = data.min_retrievability === null
      ? " No forgetting threshold is set (min_retrievability), so decay alone archives nothing."
      : "";
    return [el("p", { id: "gc-next-title" }, `gc would archive nothing within a year.${why}`)];
  }
  const at = next.days === 0 ? "now" : `${horizon(next.days)} (${shortDate(new Date(next.at))})`;
  return [
    el("p", { id: "gc-next-title" }, `gc would archive ${count(next.evict.length, "memory",
      "memories")} next, ${at}:`),
    el("ol", { id: "gc-next", class: "items", "aria-labelledby": "gc-next-title" },
      ...next.evict.map((e) => el("li", { dataset: { id: e.id } },
        el("button", { type: "button", class: "open", dataset: { id: e.id },
          onclick: () => openMemory(e.id) }, e.preview || e.id),
        el("span", { class: "meta" }, `${e.rule} · ${e.reason}`)))),
  ];
}

function meter(value) {
  const bar = el("span", { class: "meter", "aria-hidden": "true" }, el("span", { class: "fill" }));
  bar.firstChild.style.width = `${Math.round(value * 100)}%`; // CSSOM, allowed by the CSP
  return el("span", { class: "r" }, bar, value.toFixed(2));
}

function weakestRows(data, doomed, openMemory) {
  return data.memories.slice(0, WEAKEST_SHOWN).map((m) => el("tr", { dataset: { id: m.id } },
    el("td", { class: "text" }, el("button", { type: "button", class: "open",
      dataset: { id: m.id }, onclick: () => openMemory(m.id) }, m.preview || m.id)),
    el("td", {}, m.type), el("td", {}, TIER_NAMES[m.tier] + (m.pinned ? " · pinned" : "")),
    el("td", { class: "num" }, m.strength_days.toFixed(1)), el("td", {}, meter(m.retrievability)),
    el("td", { class: "num" }, String(m.recall_count)),
    el("td", {}, doomed.has(m.id) ? "archived soon" : "")));
}

export function renderRetention(data, { openMemory }) {
  const doomed = doomedIds(data);
  $("retention-summary").textContent = `${count(data.total, "active memory", "active memories")};`
    + ` decay law ${data.decay}, new memories start at a half-life of`
    + ` ${data.initial_strength_days} days.`;
  $("retention-chart").replaceChildren(curveChart(data, doomed));
  const rows = data.forecast.map((f) => ({ key: horizon(f.days), total: f.evict.length,
    parts: [{ name: "archived", value: f.evict.length, class: "evict" }] }));
  $("gc-forecast").replaceChildren(barList(rows, { label: "Memories gc would archive by then" }));
  $("gc-next-box").replaceChildren(...nextEvictions(data, openMemory));
  $("weakest").tBodies[0].replaceChildren(...weakestRows(data, doomed, openMemory));
  const more = data.total > WEAKEST_SHOWN ? ` (the ${WEAKEST_SHOWN} weakest of ${data.total})` : "";
  $("weakest-note").textContent = `Weakest first: retrievability × importance${more}.`;
}
