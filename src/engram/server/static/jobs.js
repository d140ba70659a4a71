// Jobs: the owner's background extraction jobs, newest first, and how many are in each
// state (GET /v1/insights/jobs).
import { $, barList, el, when } from "./dom.js";

const STATES = ["queued", "running", "done", "failed"];

function outcome(job) {
  if (job.error) return el("span", { class: "error-text" }, job.error);
  if (!job.result) return "";
  return Object.entries(job.result).map(([name, value]) =>
    `${name} ${typeof value === "object" ? JSON.stringify(value) : value}`).join(", ");
}

export function renderJobs(data) {
  const rows = STATES.map((name) => ({ key: name, total: data.counts[name] || 0,
    parts: [{ name, value: data.counts[name] || 0, class: `job-${name}` }] }));
  $("job-counts").replaceChildren(barList(rows, { label: "Jobs by state" }));
  $("jobs-table").tBodies[0].replaceChildren(...data.jobs.map((job) => el("tr",
    { dataset: { id: String(job.id), state: job.state } },
    el("td", { class: "num" }, String(job.id)), el("td", {}, job.extractor),
    el("td", {}, job.session_id === null ? "(whole owner)" : job.session_id),
    el("td", {}, el("span", { class: `badge job-${job.state}` }, job.state)),
    el("td", { class: "num" }, `${job.attempts}/${job.max_attempts}`),
    el("td", {}, when(job.updated_at)), el("td", { class: "text" }, outcome(job)))));
  const total = STATES.reduce((sum, name) => sum + (data.counts[name] || 0), 0);
  $("jobs-note").textContent = data.jobs.length
    ? `${data.jobs.length} listed of ${total}, newest first.`
    : "No jobs to list.";
}
