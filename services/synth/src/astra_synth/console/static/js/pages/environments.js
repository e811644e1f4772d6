// Environments: a filterable list, and one environment: its task and answer, the sub-question
// DAG as an SVG graph, its tools (schemas and code), the certificate, and a verify button.

import { canWrite, getJSON, postJSON } from "../api.js";
import { dagSvg } from "../dag.js";
import { facts, h, json, link, notice, replace, short, table, when } from "../dom.js";
import { filterForm, listParams, pager } from "./paging.js";

const FILTERS = [
  ["domain", "domain"],
  ["scenario_type", "scenario", ["single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop"]],
  ["split", "split"],
  ["source", "source"],
  ["kind", "kind", ["synthetic", "builtin"]],
  ["job_id", "job"],
  ["min_hops", "min hops"],
  ["max_hops", "max hops"],
];

export async function render(container, route) {
  return route.id ? renderOne(container, route.id) : renderList(container, route.query);
}

async function renderList(container, query) {
  const params = listParams(query, FILTERS.map(([name]) => name));
  replace(container, h("h1", {}, "Environments"), filterForm("environments", FILTERS, query), h("p", { class: "muted" }, "Loading…"));
  const page = await getJSON("/v1/environments", params);
  replace(
    container,
    h("h1", {}, "Environments"),
    filterForm("environments", FILTERS, query),
    pager("environments", query, page.total),
    page.items.length
      ? table(
          [
            ["id", (e) => link(`environments/${encodeURIComponent(e.id)}`, e.id, { class: "env-link" })],
            ["domain", (e) => e.domain],
            ["scenario", (e) => e.scenario_type || "–"],
            ["hops", (e) => String(e.hops)],
            ["tools", (e) => String(e.tools)],
            ["split", (e) => e.split],
            ["source", (e) => e.source || "–"],
            ["task", (e) => short(e.task, 90)],
          ],
          page.items,
          { class: "environments", id: "environments-table" },
        )
      : h("p", { class: "muted" }, "No environment matches."),
  );
}

function toolView(tool) {
  const spec = tool.spec;
  return h(
    "details",
    { class: "tool", "data-tool": spec.name },
    h("summary", {}, h("code", {}, spec.name), " — ", spec.description),
    h("h4", {}, "Arguments (JSON Schema)"),
    json(spec.parameters),
    spec.output_schema ? [h("h4", {}, "Output (JSON Schema)"), json(spec.output_schema)] : null,
    h("h4", {}, `Code (entry point ${tool.entrypoint})`),
    h("pre", { class: "code" }, tool.code),
    tool.reference_calls.length ? [h("h4", {}, "Reference calls"), json(tool.reference_calls)] : null,
  );
}

function certificateView(certificate) {
  if (!certificate) return h("p", { class: "muted", id: "certificate" }, "No certificate.");
  return h(
    "div",
    { id: "certificate" },
    facts([
      ["passed", h("span", { class: certificate.passed ? "pass" : "fail" }, certificate.passed ? "passed" : "failed")],
      ["verifier", certificate.verifier_version],
      ["verified", when(certificate.verified_at)],
    ]),
    table(
      [
        ["#", (r) => String(r.index + 1)],
        ["call", (r) => h("span", {}, h("code", {}, r.call.tool_name), r.call.sub_question_id ? ` → ${r.call.sub_question_id}` : "")],
        ["arguments", (r) => json(r.call.arguments)],
        ["expected", (r) => r.call.expected_answer ?? "–"],
        ["output", (r) => json(r.output)],
        ["sha256", (r) => h("code", { title: r.output_sha256 }, r.output_sha256.slice(0, 12) + "…")],
        ["answer", (r) => h("span", { class: r.answer_found ? "pass" : "fail" }, r.answer_found ? "✓ found" : "✗ missing")],
      ],
      certificate.replays.map((replay, index) => ({ ...replay, index })),
      { class: "certificate-rows" },
    ),
  );
}

function verifyButton(envId, writable) {
  const result = h("div", { id: "verify-result" });
  const button = h("button", { type: "button", id: "verify", disabled: !writable }, "Verify");
  button.addEventListener("click", async () => {
    button.disabled = true;
    replace(result, h("span", { class: "muted" }, "Replaying every reference call in envhost's sandbox…"));
    try {
      const report = await postJSON(`/v1/environments/${encodeURIComponent(envId)}/verify`, undefined);
      replace(
        result,
        report.holds
          ? notice("ok", `The certificate holds: ${report.replays} replays matched.`)
          : notice("error", `The certificate does not hold (${report.replays} replays):`, h("ul", {}, report.problems.map((p) => h("li", {}, p)))),
      );
    } catch (error) {
      replace(result, notice("error", error.message));
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "actions" }, button, writable ? null : h("span", { class: "muted" }, " set an API token to verify"), result);
}

async function renderOne(container, envId) {
  const spec = await getJSON(`/v1/environments/${encodeURIComponent(envId)}`);
  const writable = await canWrite();
  const provenance = spec.provenance || {};
  const questions = spec.sub_questions || [];
  replace(
    container,
    h("p", {}, link("environments", "← all environments")),
    h("h1", {}, "Environment ", h("code", {}, spec.id)),
    h("h2", {}, "Task"),
    h("p", { class: "task", id: "task" }, spec.task),
    spec.followup_turns.length ? h("ol", { class: "followups" }, spec.followup_turns.map((t) => h("li", {}, t))) : null,
    facts([
      ["answer", h("span", { id: "answer" }, spec.answer || "–")],
      ["domain", spec.domain],
      ["scenario", spec.scenario_type || "–"],
      ["split", spec.split],
      ["kind", spec.kind],
      ["source", provenance.source || "–"],
      ["job", provenance.job_id ? link(`jobs/${encodeURIComponent(provenance.job_id)}`, provenance.job_id) : "–"],
      ["episodes", link(`episodes?env_id=${encodeURIComponent(spec.id)}`, "episodes of this environment")],
      ["trajectories", link(`trajectories?env_id=${encodeURIComponent(spec.id)}`, "trajectories of this environment")],
    ]),
    h("h2", {}, `Sub-questions (${questions.length})`),
    questions.length
      ? [
          h("div", { class: "dag-box" }, dagSvg(questions)),
          table(
            [
              ["id", (q) => h("code", {}, q.id)],
              ["question", (q) => q.question],
              ["answer", (q) => q.answer],
              ["tool", (q) => q.tool_name || "(none)"],
              ["depends on", (q) => (q.depends_on || []).join(", ") || "–"],
            ],
            questions,
            { class: "sub-questions" },
          ),
        ]
      : h("p", { class: "muted" }, spec.builtin ? `A built-in environment (${spec.builtin.name}): no sub-question graph.` : "No sub-questions."),
    h("h2", {}, `Tools (${spec.tools.length + spec.builtin_tools.length})`),
    spec.tools.map(toolView),
    spec.builtin_tools.map((t) => h("details", { class: "tool" }, h("summary", {}, h("code", {}, t.name), " — ", t.description), json(t.parameters))),
    h("h2", {}, "Certificate"),
    certificateView(spec.certificate),
    spec.certificate ? verifyButton(spec.id, writable) : null,
  );
}
