// Training: the trainer's runs, and one run's curves (loss, reward mean, batch-fill ratio per
// step) drawn from its metrics, refreshed every few seconds. The trainer is read through the
// synth API; when it cannot be reached, the API's reason is shown.

import { getJSON } from "../api.js";
import { lineChart, series } from "../chart.js";
import { h, notice, num, replace, table } from "../dom.js";

const REFRESH_MS = 5000;
// [chart id, title, metric keys: the first one a run logs is drawn]
const CURVES = [
  ["loss", "Loss", ["loss"]],
  ["reward_mean", "Reward mean", ["reward_mean"]],
  ["batch_fill", "Batch-fill ratio", ["batch_fill_ratio", "batch_fill"]],
];

/** The most recently updated run (the last listed when none says when). */
function latest(runs) {
  const dated = runs.filter((run) => typeof run.updated_at === "string");
  if (!dated.length) return runs[runs.length - 1];
  return dated.reduce((a, b) => (b.updated_at > a.updated_at ? b : a));
}

export async function render(container, route) {
  replace(container, h("h1", {}, "Training"), h("p", { class: "muted" }, "Asking the trainer…"));
  let listing;
  try {
    listing = await getJSON("/v1/training/runs");
  } catch (error) {
    replace(container, h("h1", {}, "Training"), h("div", { id: "training-error" }, notice("error", error.message)));
    return null;
  }
  const runs = listing.runs;
  const idOf = (run) => run.run_id || run.id;
  if (!runs.length) {
    replace(container, h("h1", {}, "Training"), notice("info", `The trainer at ${listing.trainer_url} has no runs yet.`));
    return null;
  }
  const chosen = route.query.get("run") || idOf(latest(runs));
  const select = h("select", { id: "run-select" }, runs.map((run) => h("option", { value: idOf(run), selected: idOf(run) === chosen }, `${idOf(run)}${run.kind ? " · " + run.kind : ""}${run.state ? " · " + run.state : ""}`)));
  select.addEventListener("change", () => {
    window.location.hash = `#/training?run=${encodeURIComponent(select.value)}`;
  });
  const body = h("div", { id: "training-body" });
  replace(container, h("h1", {}, "Training"), h("label", {}, "run ", select), body);

  let timer = null;
  let stopped = false;
  const refresh = async () => {
    try {
      const metrics = await getJSON("/v1/training/metrics", { run_id: chosen });
      if (stopped) return;
      const steps = metrics.steps;
      const last = steps[steps.length - 1] || {};
      replace(
        body,
        h("p", {}, `${steps.length} steps logged`, last.policy_version !== undefined ? ` · policy version ${last.policy_version}` : ""),
        h("div", { class: "charts" }, CURVES.map(([id, title, keys]) => lineChart(title, id, series(steps, keys)))),
        h(
          "details",
          {},
          h("summary", {}, "Last steps"),
          table(
            ["step", "loss", "reward_mean", "reward_std", "batch_fill_ratio", "policy_version"].map((k) => [k, (r) => num(r[k], 4)]),
            steps.slice(-20),
            { class: "steps" },
          ),
        ),
      );
    } catch (error) {
      if (!stopped) replace(body, h("div", { id: "training-error" }, notice("error", error.message)));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  };
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
