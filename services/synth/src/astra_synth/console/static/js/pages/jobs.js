// Jobs: the list (with a form to start a procedural job) and one job with live progress bars,
// polled every second while it runs, its statistics, and a cancel button.

import { canWrite, getJSON, postJSON } from "../api.js";
import { facts, h, json, link, notice, num, replace, table, when } from "../dom.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1000;
const REJECTIONS_SHOWN = 50;

export async function render(container, route) {
  return route.id ? renderJob(container, route.id) : renderList(container);
}

function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}

/** One stage's progress bar. Its length is the stage's own total when known, else what the
 * stage before it has handed on (a stage can only process what reached it); the bar fills with
 * the items it has processed, passed or rejected. Once the job ends, unknown lengths close. */
function stageBar(stage, previous, ended) {
  const rejected = Object.entries(stage.rejected || {});
  const processed = stage.done + rejected.reduce((sum, [, n]) => sum + n, 0);
  let max = stage.total ?? (previous ? previous.done : null);
  if ((max === null || max === undefined) && ended) max = processed;
  const known = max !== null && max !== undefined;
  const attrs = {
    class: "stage-bar",
    "data-stage": stage.stage,
    "data-done": stage.done,
    "data-total": stage.total ?? "",
    max: known ? Math.max(max, 1) : undefined,
    value: known ? Math.min(processed, max) : undefined,
    "aria-label": stage.stage,
  };
  return h(
    "div",
    { class: "stage" },
    h("span", { class: "stage-name" }, stage.stage),
    h("progress", attrs),
    h("span", { class: "stage-count" }, known ? `${stage.done} / ${max}` : `${stage.done}`),
    rejected.length
      ? h("span", { class: "rejected" }, "rejected: ", rejected.map(([why, n]) => `${why} ${n}`).join(", "))
      : null,
  );
}

function startForm(onStarted) {
  const message = h("div", { class: "form-message" });
  const count = h("input", { type: "number", name: "count", min: 1, max: 10000, value: 4, required: true });
  const seed = h("input", { type: "number", name: "seed", value: 0 });
  const domains = h("input", { type: "text", name: "domains", placeholder: "all (or: travel, finance)" });
  const hops = h("input", { type: "text", name: "hops", placeholder: "any (or: 2, 3)", size: 10 });
  const scenarios = h("input", { type: "text", name: "scenario_types", placeholder: "any (or: multi_hop)" });
  const form = h(
    "form",
    { class: "inline-form", id: "start-job" },
    h("label", {}, "count ", count),
    h("label", {}, "seed ", seed),
    h("label", {}, "domains ", domains),
    h("label", {}, "hops ", hops),
    h("label", {}, "scenario types ", scenarios),
    h("button", { type: "submit" }, "Start procedural job"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { source: "procedural", count: Number(count.value), seed: Number(seed.value) };
    const list = (input) => input.value.split(",").map((item) => item.trim()).filter(Boolean);
    if (list(domains).length) body.domains = list(domains);
    if (list(hops).length) body.hops = list(hops).map(Number);
    if (list(scenarios).length) body.scenario_types = list(scenarios);
    try {
      const job = await postJSON("/v1/jobs/environments", body);
      onStarted(job);
    } catch (error) {
      replace(message, notice("error", error.message));
    }
  });
  return form;
}

async function renderList(container) {
  const listing = h("div", { id: "jobs-list" });
  const writable = await canWrite();
  replace(
    container,
    h("h1", {}, "Jobs"),
    writable
      ? startForm((job) => { window.location.hash = `#/jobs/${encodeURIComponent(job.id)}`; })
      : notice("info", "Set an API token above to start jobs."),
    listing,
  );
  let timer = null;
  const refresh = async () => {
    try {
      const page = await getJSON("/v1/jobs", { limit: 100 });
      replace(
        listing,
        page.items.length
          ? table(
              [
                ["job", (j) => link(`jobs/${encodeURIComponent(j.id)}`, j.id)],
                ["kind", (j) => j.kind],
                ["state", (j) => stateBadge(j.state)],
                ["progress", (j) => j.progress.map((s) => `${s.stage} ${s.done}${s.total == null ? "" : "/" + s.total}`).join(" · ")],
                ["created", (j) => when(j.created_at)],
                ["updated", (j) => when(j.updated_at)],
              ],
              page.items,
              { class: "jobs" },
            )
          : h("p", { class: "muted" }, "No jobs yet."),
      );
      if (page.items.some((j) => !TERMINAL.has(j.state))) timer = setTimeout(refresh, 2 * POLL_MS);
    } catch (error) {
      replace(listing, notice("error", error.message));
    }
  };
  await refresh();
  return () => clearTimeout(timer);
}

function statsView(stats) {
  const entries = Object.entries(stats || {});
  if (!entries.length) return h("p", { class: "muted" }, "No statistics yet.");
  const scalars = entries.filter(([, v]) => v === null || typeof v !== "object");
  const groups = entries.filter(([, v]) => v !== null && typeof v === "object");
  return h(
    "div",
    { class: "stats", id: "job-stats" },
    facts(scalars.map(([k, v]) => [k, typeof v === "number" ? num(v) : String(v)])),
    groups.map(([name, value]) =>
      h(
        "div",
        { class: "stat-group" },
        h("h3", {}, name),
        Array.isArray(value)
          ? json(value)
          : table([["", ([k]) => k], ["", ([, v]) => (typeof v === "object" ? JSON.stringify(v) : num(v))]], Object.entries(value)),
      ),
    ),
  );
}

function rejectedCount(job) {
  return job.progress.reduce(
    (sum, stage) => sum + Object.values(stage.rejected || {}).reduce((a, n) => a + n, 0),
    0,
  );
}

/** The job's rejection records: which item, at which stage, why, and the model's reply. */
function rejectionsView(page) {
  if (!page.total) return h("p", { class: "muted" }, "Nothing rejected.");
  return h(
    "div",
    {},
    h("p", {}, `${page.total} rejections recorded` + (page.total > page.items.length ? `; the first ${page.items.length} shown` : "")),
    table(
      [
        ["stage", (r) => r.stage],
        ["reason", (r) => r.reason],
        ["item", (r) => r.item || ""],
        ["why", (r) => r.message || ""],
        ["reply excerpt", (r) => (r.excerpt ? h("code", { class: "excerpt" }, r.excerpt) : "")],
      ],
      page.items,
      { class: "rejections" },
    ),
  );
}

async function renderJob(container, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  const head = h("div", { class: "job-head" });
  const stages = h("div", { class: "stages", id: "job-stages" });
  const stats = h("div", {});
  const rejections = h("div", { id: "job-rejections" });
  const actions = h("div", { class: "actions" });
  const details = h("div", {});
  replace(
    container,
    h("p", {}, link("jobs", "← all jobs")),
    head,
    h("h2", {}, "Progress"),
    stages,
    actions,
    h("h2", {}, "Rejections"),
    rejections,
    h("h2", {}, "Statistics"),
    stats,
    details,
  );
  const writable = await canWrite();
  let timer = null;
  let stopped = false;
  let rejectionsShown = -1; // the count the records on screen were read at

  const showRejections = async (job) => {
    const count = rejectedCount(job);
    if (count === rejectionsShown) return;
    rejectionsShown = count;
    const page = await getJSON(`${path}/rejections?limit=${REJECTIONS_SHOWN}`);
    if (!stopped) replace(rejections, rejectionsView(page));
  };

  const show = (job) => {
    replace(
      head,
      h("h1", {}, "Job ", h("code", {}, job.id), " ", stateBadge(job.state)),
      facts([
        ["kind", job.kind],
        ["created", when(job.created_at)],
        ["updated", when(job.updated_at)],
        ["finished", job.finished_at ? when(job.finished_at) : null],
        job.kind === "environments"
          ? ["environments", link(`environments?job_id=${encodeURIComponent(job.id)}`, "registered by this job")]
          : null,
        job.result && job.result.dataset
          ? ["dataset", h("a", { href: `/v1/datasets/${encodeURIComponent(job.result.dataset.name)}` }, job.result.dataset.name)]
          : null,
      ].filter(Boolean)),
      job.error ? notice(job.state === "cancelled" ? "info" : "error", job.error) : null,
    );
    const ended = TERMINAL.has(job.state);
    const bars = job.progress.map((stage, i) => stageBar(stage, job.progress[i - 1], ended));
    replace(stages, bars.length ? bars : h("p", { class: "muted" }, "Not started yet."));
    replace(stats, statsView(job.result));
    replace(details, h("details", {}, h("summary", {}, "Parameters"), json(job.params)));
    const cancel = h("button", { type: "button", id: "cancel-job", class: "danger" }, "Cancel job");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        show(await postJSON(`${path}/cancel`, undefined));
      } catch (error) {
        replace(actions, notice("error", error.message));
      }
    });
    replace(actions, !TERMINAL.has(job.state) && writable ? cancel : null);
  };

  const poll = async () => {
    try {
      const job = await getJSON(path);
      if (stopped) return;
      show(job);
      await showRejections(job);
      if (!TERMINAL.has(job.state)) timer = setTimeout(poll, POLL_MS);
    } catch (error) {
      if (!stopped) replace(head, notice("error", error.message));
    }
  };
  await poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
