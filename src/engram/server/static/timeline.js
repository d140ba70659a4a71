// Timeline: memories at the time they happened, one lane per session with the session as
// a band from its first to its last memory (GET /v1/insights/timeline). The bands are
// keyboard targets: arrows move between them, Enter lists the session's memories.
import { scale, timeTicks } from "./charts.js";
import { $, count, el, shortDate, svg, typeClass, when } from "./dom.js";

const LABEL_W = 150;
const AXIS_H = 30;
const LANE_H = 28;
const PAD = 14;
const MIN_BAND_W = 8;

const sessionName = (id) => (id === null ? "(no session)" : id);

function domain(data) {
  let start = Date.parse(data.start);
  let end = Date.parse(data.end);
  if (end - start < 3600e3) {
    start -= 1800e3;
    end += 1800e3;
  }
  const pad = (end - start) * 0.03;
  return [start - pad, end + pad];
}

function axis(ticks, x, height, width) {
  return svg("g", { class: "axis", "aria-hidden": "true" }, ...ticks.flatMap((tick) => [
    svg("line", { x1: x(tick.at), x2: x(tick.at), y1: AXIS_H - 6, y2: height, class: "grid" }),
    svg("text", { x: x(tick.at), y: AXIS_H - 12, "text-anchor": "middle" }, tick.label),
  ]), svg("line", { x1: LABEL_W, x2: width - PAD, y1: AXIS_H - 6, y2: AXIS_H - 6, class: "rule" }));
}

function bandLabel(band) {
  const first = shortDate(new Date(band.start));
  const last = shortDate(new Date(band.end));
  const dates = first === last ? first : `${first} to ${last}`;
  const memories = count(band.count, "memory", "memories");
  return `Session ${sessionName(band.session_id)}: ${memories}, ${dates}`;
}

/** Vertical offsets that keep dots closer than a dot apart from hiding each other. */
function spread(xs) {
  const offsets = [];
  let run = 0;
  xs.forEach((at, i) => {
    run = i > 0 && at - xs[i - 1] < 5 ? run + 1 : 0;
    offsets.push(run === 0 ? 0 : (run % 2 ? -1 : 1) * Math.min(Math.ceil(run / 2) * 4, 8));
  });
  return offsets;
}

function lane(band, index, points, x, width) {
  const y = AXIS_H + index * LANE_H;
  const x0 = x(Date.parse(band.start));
  const x1 = Math.max(x(Date.parse(band.end)), x0 + MIN_BAND_W);
  const mid = y + LANE_H / 2;
  const label = sessionName(band.session_id);
  const xs = points.map((point) => x(Date.parse(point.at)));
  const offsets = spread(xs);
  return svg("g", {
    class: "band", role: "button", tabindex: index === 0 ? "0" : "-1",
    "aria-label": bandLabel(band), "data-index": String(index), "data-count": String(band.count),
    "data-session": band.session_id === null ? "" : band.session_id,
  },
  svg("rect", { class: "lane", x: 0, y, width: width, height: LANE_H }),
  svg("text", { class: "lane-label", x: 6, y: mid + 4 },
    label.length > 20 ? `${label.slice(0, 19)}…` : label),
  // memories without a session share a lane but are no session: no band for them
  band.session_id === null ? null : svg("rect", { class: "band-rect", x: x0 - 4, y: y + 4,
    width: x1 - x0 + 8, height: LANE_H - 8, rx: 6 }),
  ...points.map((point, i) => svg("circle", {
    class: `dot ${typeClass(point.type)}${point.state === "archived" ? " archived" : ""}`,
    cx: xs[i], cy: mid + offsets[i], r: 4.5, "data-id": point.id,
  }, svg("title", {},
    `${point.type} · ${new Date(point.at).toLocaleString()}: ${point.preview}`))));
}

export class TimelineView {
  constructor({ openMemory }) {
    this.openMemory = openMemory;
    this.bands = [];
    this.points = [];
    this.data = null;
    this.width = 0;
  }

  /** Draw again when the chart's width changed (the window was resized). */
  redraw() {
    const chart = $("timeline-chart");
    if (this.data && !chart.hidden && chart.clientWidth && chart.clientWidth !== this.width) {
      this.render(this.data);
    }
  }

  render(data) {
    this.data = data;
    this.bands = data.sessions;
    this.points = data.points;
    $("timeline-session").replaceChildren();
    const shown = data.truncated ? `the latest ${data.points.length} of ${data.total}` : data.total;
    $("timeline-summary").textContent = data.total
      ? `${shown} memories in ${count(data.sessions.length, "lane")},`
        + " placed at the time they happened."
      : "No memories to place yet.";
    const chart = $("timeline-chart");
    if (!data.total) {
      chart.replaceChildren();
      $("timeline-legend").replaceChildren();
      return;
    }
    const width = Math.max(chart.clientWidth || 900, 480);
    this.width = chart.clientWidth;
    const types = [...new Set(data.points.map((p) => p.type))].sort();
    $("timeline-legend").replaceChildren(...types.map((type) => el("span", {},
      el("span", { class: `swatch ${typeClass(type)}`, "aria-hidden": "true" }), type)));
    const height = AXIS_H + this.bands.length * LANE_H + 4;
    const x = scale(domain(data), [LABEL_W, width - PAD]);
    const lanes = this.bands.map((band, i) => lane(band, i,
      this.points.filter((p) => p.session_id === band.session_id), x, width));
    const ticks = timeTicks(...domain(data), Math.max(3, Math.floor((width - LABEL_W) / 110)));
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height,
      role: "group", "aria-label": "Sessions on a time axis" },
    axis(ticks, x, height, width), ...lanes);
    root.addEventListener("keydown", (event) => this.key(event));
    root.addEventListener("click", (event) => {
      const band = event.target.closest(".band");
      if (band) this.select(Number(band.dataset.index), true);
    });
    chart.replaceChildren(root);
  }

  bandNodes() {
    return [...$("timeline-chart").querySelectorAll(".band")];
  }

  focusBand(index) {
    const nodes = this.bandNodes();
    nodes.forEach((node, i) => node.setAttribute("tabindex", i === index ? "0" : "-1"));
    nodes[index].focus();
  }

  key(event) {
    const band = event.target.closest(".band");
    if (!band) return;
    const index = Number(band.dataset.index);
    const last = this.bands.length - 1;
    const moves = { ArrowDown: index + 1, ArrowRight: index + 1, ArrowUp: index - 1,
      ArrowLeft: index - 1, Home: 0, End: last };
    if (event.key in moves) {
      event.preventDefault();
      this.focusBand(Math.min(Math.max(moves[event.key], 0), last));
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.select(index, false);
    }
  }

  /** List the memories of one session under the chart. */
  select(index, fromPointer) {
    const band = this.bands[index];
    this.bandNodes().forEach((node, i) => node.classList.toggle("selected", i === index));
    if (fromPointer) this.focusBand(index);
    const members = this.points.filter((p) => p.session_id === band.session_id);
    $("timeline-session").replaceChildren(
      el("h3", { id: "timeline-session-title" }, bandLabel(band)),
      el("ol", { class: "items", "aria-labelledby": "timeline-session-title" },
        ...members.map((point) => el("li", { dataset: { id: point.id } },
          el("button", { type: "button", class: "open", dataset: { id: point.id },
            onclick: () => this.openMemory(point.id) }, point.preview),
          el("span", { class: "meta" }, `${point.type} · ${point.state} · `, when(point.at),
            point.dated === "stored" ? " (stored)" : "")))),
    );
  }
}
