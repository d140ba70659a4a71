// Building the page from data: elements, SVG and times, always as text, never as markup.
export const $ = (id) => document.getElementById(id);

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, props, children) {
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.setAttribute("class", value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") node[name] = value;
    else if (node instanceof SVGElement || name.includes("-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  const kept = children.filter((child) => child !== null && child !== undefined && child !== false);
  node.append(...kept);
  return node;
}

/** A new element; children are nodes or strings (strings become text nodes). */
export function el(tag, props = {}, ...children) {
  return fill(document.createElement(tag), props, children);
}

/** A new SVG element; attributes are set as attributes (no style attribute: CSP). */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A <time> showing an ISO time in the reader's locale (the ISO string as its title). */
export function when(iso, options) {
  if (!iso) return "";
  const date = new Date(iso);
  return el("time", { dateTime: iso, title: iso }, date.toLocaleString(undefined, options));
}

export const shortDate = (date) =>
  date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });

/** A CSS class for a memory type's colour: the built-in types have their own. */
const COLOURED = new Set(["turn", "fact", "preference", "event", "summary", "experience",
  "document", "note"]);
export const typeClass = (type) => `type-${COLOURED.has(type) ? type : "other"}`;

/** A count with its noun, singular or plural. */
export const count = (n, noun, plural = `${noun}s`) => `${n} ${n === 1 ? noun : plural}`;

/** A horizontal bar list: label, a bar as wide as its share of the largest, the count.
 * `parts` splits each bar into classed segments (e.g. active / archived). */
export function barList(rows, { label }) {
  const most = Math.max(1, ...rows.map((row) => row.total));
  return el("ul", { class: "bars", "aria-label": label }, ...rows.map((row) => {
    const bar = el("span", { class: "track", "aria-hidden": "true" },
      ...row.parts.filter((part) => part.value > 0).map((part) => {
        const segment = el("span",
          { class: `fill ${part.class}`, title: `${part.name}: ${part.value}` });
        segment.style.width = `${(100 * part.value) / most}%`; // CSSOM, allowed by the CSP
        return segment;
      }));
    const detail = row.parts.length > 1
      ? ` (${row.parts.map((part) => `${part.value} ${part.name}`).join(", ")})` : "";
    return el("li", { dataset: { key: row.key } },
      el("span", { class: "bar-label" }, row.key), bar,
      el("span", { class: "bar-count" }, String(row.total)),
      el("span", { class: "visually-hidden" }, detail));
  }));
}
