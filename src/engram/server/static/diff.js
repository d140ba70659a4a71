// A memory's versions compared word by word: removed words in <del>, added ones in <ins>
// (a longest-common-subsequence diff over words and the spaces between them).
import { $, count, el } from "./dom.js";

const MAX_CELLS = 400_000; // beyond this the whole middle counts as replaced

const tokens = (text) => text.match(/\s+|[^\s]+/g) || [];
const words = (parts) => parts.filter((t) => /\S/.test(t)).length;

/** [kind, text] runs turning `before` into `after`; kind is "same", "del" or "ins". */
export function diffWords(before, after) {
  const a = tokens(before);
  const b = tokens(after);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head
    && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  const middle = x.length * y.length > MAX_CELLS
    ? [...x.map((t) => ["del", t]), ...y.map((t) => ["ins", t])] : lcsOps(x, y);
  const ops = [...a.slice(0, head).map((t) => ["same", t]), ...middle,
    ...a.slice(a.length - tail).map((t) => ["same", t])];
  return merge(ops);
}

function lcsOps(x, y) {
  const n = x.length;
  const m = y.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1
        : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      ops.push(["same", x[i]]);
      i += 1;
      j += 1;
    } else if (table[i + 1][j] >= table[i][j + 1]) {
      ops.push(["del", x[i]]);
      i += 1;
    } else {
      ops.push(["ins", y[j]]);
      j += 1;
    }
  }
  return [...ops, ...x.slice(i).map((t) => ["del", t]), ...y.slice(j).map((t) => ["ins", t])];
}

/** Runs of one kind joined, and changes separated only by spaces joined into one hunk
 * (removed words, then added words), so "is on Monday" reads as one replacement. */
function merge(ops) {
  const runs = [];
  let hunk = [];
  let gap = [];
  const side = (kind) => { // this side's words and the spaces between them
    const first = hunk.findIndex(([k]) => k === kind);
    const last = hunk.findLastIndex(([k]) => k === kind);
    return first < 0 ? "" : hunk.slice(first, last + 1)
      .filter(([k]) => k !== (kind === "del" ? "ins" : "del")).map(([, t]) => t).join("");
  };
  const flush = () => {
    for (const kind of ["del", "ins"]) if (side(kind)) runs.push([kind, side(kind)]);
    hunk = [];
  };
  for (const op of ops) {
    if (op[0] !== "same") {
      hunk.push(...gap, op);
      gap = [];
    } else if (hunk.length && !/\S/.test(op[1])) {
      gap.push(op);
    } else {
      flush();
      runs.push(...gap, op);
      gap = [];
    }
  }
  flush();
  runs.push(...gap);
  return runs.reduce((out, run) => {
    const last = out.at(-1);
    if (last && last[0] === run[0]) last[1] += run[1];
    else out.push([...run]);
    return out;
  }, []);
}

function versionLabel(v) {
  return `v${v.version} · ${v.event}`;
}

/** Fill the compare form for a memory's versions and show the latest change. */
export function showVersionDiff(versions) {
  const texts = versions.filter((v) => v.memory !== null);
  $("diff-box").hidden = texts.length < 2;
  if (texts.length < 2) return;
  for (const id of ["diff-from", "diff-to"]) {
    $(id).replaceChildren(...texts.map((v) => el("option", { value: String(v.version) },
      versionLabel(v))));
  }
  const changed = texts.findLastIndex((v, i) => i > 0 && v.memory !== texts[i - 1].memory);
  const to = changed > 0 ? changed : texts.length - 1;
  $("diff-from").value = String(texts[to - 1].version);
  $("diff-to").value = String(texts[to].version);
  $("diff-box").versions = texts;
  renderChosenDiff();
}

export function renderChosenDiff() {
  const texts = $("diff-box").versions || [];
  const pick = (id) => texts.find((v) => String(v.version) === $(id).value);
  const from = pick("diff-from");
  const to = pick("diff-to");
  if (!from || !to) return;
  const runs = diffWords(from.memory, to.memory);
  $("diff-output").replaceChildren(...runs.map(([kind, text]) => {
    if (kind === "del") return el("del", {}, text);
    if (kind === "ins") return el("ins", {}, text);
    return text;
  }));
  const removed = words(runs.filter(([kind]) => kind === "del").map(([, t]) => tokens(t)).flat());
  const added = words(runs.filter(([kind]) => kind === "ins").map(([, t]) => tokens(t)).flat());
  $("diff-summary").textContent = removed || added
    ? `${count(removed, "word")} removed, ${count(added, "word")} added`
      + ` from ${versionLabel(from)} to ${versionLabel(to)}.`
    : `No text changes from ${versionLabel(from)} to ${versionLabel(to)}.`;
}
