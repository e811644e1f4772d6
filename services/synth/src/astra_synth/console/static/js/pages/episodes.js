// Episodes: a list (filter by environment or state), and one episode's call log and reward.

import { getJSON } from "../api.js";
import { facts, h, json, link, num, replace, table, when } from "../dom.js";
import { rewardView } from "../reward.js";
import { filterForm, listParams, pager } from "./paging.js";

const FILTERS = [
  ["env_id", "environment"],
  ["state", "state", ["open", "scored", "closed", "expired"]],
];

export async function render(container, route) {
  return route.id ? renderOne(container, route.id) : renderList(container, route.query);
}

async function renderList(container, query) {
  const page = await getJSON("/v1/episodes", listParams(query, FILTERS.map(([name]) => name)));
  replace(
    container,
    h("h1", {}, "Episodes"),
    filterForm("episodes", FILTERS, query),
    pager("episodes", query, page.total),
    page.items.length
      ? table(
          [
            ["episode", (e) => link(`episodes/${encodeURIComponent(e.id)}`, e.id, { class: "episode-link" })],
            ["environment", (e) => link(`environments/${encodeURIComponent(e.env_id)}`, e.env_id)],
            ["state", (e) => e.state],
            ["calls", (e) => String(e.calls)],
            ["turn", (e) => String(e.turn)],
            ["F1", (e) => num(e.f1)],
            ["created", (e) => when(e.created_at)],
            ["last active", (e) => when(e.last_active_at)],
          ],
          page.items,
          { class: "episodes", id: "episodes-table" },
        )
      : h("p", { class: "muted" }, "No episode matches."),
  );
}

async function renderOne(container, episodeId) {
  const episode = await getJSON(`/v1/episodes/${encodeURIComponent(episodeId)}`);
  const distractors = new Set(episode.distractor_tools || []);
  replace(
    container,
    h("p", {}, link("episodes", "← all episodes")),
    h("h1", {}, "Episode ", h("code", {}, episode.id)),
    facts([
      ["environment", link(`environments/${encodeURIComponent(episode.env_id)}`, episode.env_id)],
      ["state", episode.state],
      ["seed", String(episode.seed)],
      ["turn", String(episode.turn)],
      ["MCP endpoint", h("code", {}, episode.mcp_url)],
      ["created", when(episode.created_at)],
      ["last active", when(episode.last_active_at)],
      [
        "tools offered",
        episode.tools.map((t) =>
          h("span", { class: distractors.has(t.name) ? "tag distractor" : "tag", title: t.description }, t.name),
        ),
      ],
    ]),
    h("h2", {}, "Reward"),
    rewardView(episode.reward),
    h("h2", {}, `Call log (${episode.calls.length})`),
    episode.calls.length
      ? table(
          [
            ["#", (c) => String(c.seq)],
            ["turn", (c) => String(c.turn)],
            ["tool", (c) => h("span", {}, h("code", {}, c.tool_name), c.distractor ? h("span", { class: "tag distractor" }, "distractor") : null)],
            ["arguments", (c) => json(c.arguments)],
            ["result / error", (c) => (c.error !== null && c.error !== undefined ? h("div", { class: "call-error" }, c.error) : json(c.result))],
            ["latency", (c) => `${num(c.latency_ms, 1)} ms`],
            ["at", (c) => when(c.at)],
          ],
          episode.calls,
          { class: "calls", id: "call-log" },
        )
      : h("p", { class: "muted" }, "No calls."),
  );
}
