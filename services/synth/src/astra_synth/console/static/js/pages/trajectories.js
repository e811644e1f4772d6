// Trajectories: a list (filter by environment, group, policy version) and one trajectory as a
// chat: messages with tool calls and tool results, its reward breakdown and token counts.

import { getJSON } from "../api.js";
import { facts, h, jsonText, link, num, replace, table, when } from "../dom.js";
import { rewardView } from "../reward.js";
import { filterForm, listParams, pager } from "./paging.js";

const FILTERS = [
  ["env_id", "environment"],
  ["group_id", "group"],
  ["policy_version", "policy version"],
];

export async function render(container, route) {
  return route.id ? renderOne(container, route.id) : renderList(container, route.query);
}

async function renderList(container, query) {
  const page = await getJSON("/v1/trajectories", listParams(query, FILTERS.map(([name]) => name)));
  replace(
    container,
    h("h1", {}, "Trajectories"),
    filterForm("trajectories", FILTERS, query),
    pager("trajectories", query, page.total),
    page.items.length
      ? table(
          [
            ["trajectory", (t) => link(`trajectories/${encodeURIComponent(t.id)}`, t.id, { class: "trajectory-link" })],
            ["environment", (t) => link(`environments/${encodeURIComponent(t.env_id)}`, t.env_id)],
            ["group", (t) => (t.group_id ? link(`trajectories?group_id=${encodeURIComponent(t.group_id)}`, t.group_id) : "–")],
            ["policy", (t) => String(t.policy_version)],
            ["F1", (t) => num(t.f1)],
            ["finish", (t) => t.finish_reason],
            ["archived", (t) => when(t.created_at)],
          ],
          page.items,
          { class: "trajectories", id: "trajectories-table" },
        )
      : h("p", { class: "muted" }, "No trajectory matches."),
  );
}

/** Token counts: all tokens, and those the loss trains on (mask 1). */
function tokenCounts(trajectory) {
  if (trajectory.text_only || !trajectory.token_ids) return "text only (no token ids)";
  const trained = (trajectory.loss_mask || []).reduce((sum, bit) => sum + bit, 0);
  return `${trajectory.token_ids.length} tokens, ${trained} trained (policy), ${trajectory.token_ids.length - trained} context`;
}

function messageView(message, index) {
  const parts = [h("div", { class: "msg-role" }, message.role, message.name ? ` · ${message.name}` : "", message.tool_call_id ? ` · answers ${message.tool_call_id}` : "")];
  if (message.content !== null && message.content !== undefined && message.content !== "") {
    parts.push(message.role === "tool" ? jsonText(message.content, { class: "json msg-content" }) : h("div", { class: "msg-content" }, message.content));
  }
  for (const call of message.tool_calls || []) {
    parts.push(
      h(
        "div",
        { class: "tool-call", "data-call-id": call.id },
        h("div", { class: "tool-call-head" }, "calls ", h("code", {}, call.function.name), h("span", { class: "muted" }, ` (${call.id})`)),
        jsonText(call.function.arguments),
      ),
    );
  }
  return h("div", { class: `msg role-${message.role}`, "data-index": index }, parts);
}

async function renderOne(container, trajectoryId) {
  const t = await getJSON(`/v1/trajectories/${encodeURIComponent(trajectoryId)}`);
  const timings = t.timings || {};
  const seconds = timings.started_at && timings.finished_at ? (new Date(timings.finished_at) - new Date(timings.started_at)) / 1000 : null;
  replace(
    container,
    h("p", {}, link("trajectories", "← all trajectories")),
    h("h1", {}, "Trajectory ", h("code", {}, t.id)),
    facts([
      ["environment", link(`environments/${encodeURIComponent(t.env_id)}`, t.env_id)],
      ["episode", t.episode_id ? link(`episodes/${encodeURIComponent(t.episode_id)}`, t.episode_id) : "–"],
      ["group", t.group_id ? link(`trajectories?group_id=${encodeURIComponent(t.group_id)}`, t.group_id) : "–"],
      ["policy version", h("span", { id: "policy-version" }, String(t.policy_version))],
      ["model", t.model || "–"],
      ["finish", t.finish_reason + (t.failure_reason ? ` (${t.failure_reason})` : "")],
      ["turns", String(t.turns)],
      ["tokens", h("span", { id: "token-counts" }, tokenCounts(t))],
      ["time", seconds === null ? "–" : `${num(seconds, 2)} s (LLM ${num(timings.llm_seconds, 2)} s, tools ${num(timings.tool_seconds, 2)} s)`],
      ["tools offered", (t.tools || []).map((tool) => h("span", { class: (t.distractor_tools || []).includes(tool.name) ? "tag distractor" : "tag", title: tool.description }, tool.name))],
    ]),
    h("h2", {}, "Reward"),
    rewardView(t.reward),
    h("h2", {}, `Messages (${t.messages.length})`),
    h("div", { class: "chat", id: "chat" }, t.messages.map(messageView)),
  );
}
