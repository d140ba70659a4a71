// Small chart helpers for hand-drawn SVG: a linear scale and time-axis ticks.
const HOUR = 3600e3;
const DAY = 24 * HOUR;

/** A function mapping [d0, d1] linearly onto [r0, r1] (a flat domain maps to the middle). */
export function scale([d0, d1], [r0, r1]) {
  const span = d1 - d0;
  return (value) => (span === 0 ? (r0 + r1) / 2 : r0 + ((value - d0) / span) * (r1 - r0));
}

const TIME_STEPS = [
  { ms: HOUR, unit: "hour", n: 1 }, { ms: 6 * HOUR, unit: "hour", n: 6 },
  { ms: DAY, unit: "day", n: 1 }, { ms: 7 * DAY, unit: "day", n: 7 },
  { ms: 30 * DAY, unit: "month", n: 1 }, { ms: 91 * DAY, unit: "month", n: 3 },
  { ms: 365 * DAY, unit: "year", n: 1 }, { ms: 5 * 365 * DAY, unit: "year", n: 5 },
];

function floorTo(date, step) {
  const d = new Date(date);
  d.setMinutes(0, 0, 0);
  if (step.unit === "hour") d.setHours(d.getHours() - (d.getHours() % step.n));
  else d.setHours(0);
  if (step.unit === "month") d.setMonth(d.getMonth() - (d.getMonth() % step.n), 1);
  if (step.unit === "year") d.setFullYear(d.getFullYear() - (d.getFullYear() % step.n), 0, 1);
  return d;
}

function advance(date, step) {
  const d = new Date(date);
  if (step.unit === "hour") d.setHours(d.getHours() + step.n);
  else if (step.unit === "day") d.setDate(d.getDate() + step.n);
  else if (step.unit === "month") d.setMonth(d.getMonth() + step.n);
  else d.setFullYear(d.getFullYear() + step.n);
  return d;
}

function timeLabel(date, unit) {
  if (unit === "hour") {
    return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit",
      minute: "2-digit" });
  }
  if (unit === "day") return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  if (unit === "month") {
    return date.toLocaleDateString(undefined, { month: "short", year: "numeric" });
  }
  return String(date.getFullYear());
}

/** Tick times (ms) and labels within [start, end] (ms), at most about `most` of them. */
export function timeTicks(start, end, most = 8) {
  const step = TIME_STEPS.find((s) => (end - start) / s.ms <= most) || TIME_STEPS.at(-1);
  const ticks = [];
  let t = floorTo(start, step);
  for (; t.getTime() <= end && ticks.length < 50; t = advance(t, step)) {
    if (t.getTime() >= start) ticks.push({ at: t.getTime(), label: timeLabel(t, step.unit) });
  }
  return ticks;
}
