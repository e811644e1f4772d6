// A reward breakdown (sub-question F1) as a small table, shared by episodes and trajectories.

import { facts, h, json, num } from "./dom.js";

export function rewardView(reward) {
  if (!reward) return h("p", { class: "muted", id: "reward" }, "Not scored.");
  const details = Object.keys(reward.details || {}).length ? json(reward.details) : null;
  return h(
    "div",
    { class: "reward", id: "reward" },
    h("p", { class: "f1" }, "F1 ", h("strong", { "data-f1": reward.f1 }, num(reward.f1))),
    facts([
      ["verifier", reward.verifier],
      ["sub-questions (n)", num(reward.n_subquestions)],
      ["solved (n̂)", num(reward.n_solved)],
      ["tool calls (c)", num(reward.n_calls)],
      ["precision", num(reward.precision)],
      ["recall", num(reward.recall)],
      ["solved ids", (reward.solved_ids || []).join(", ") || "–"],
      ["final answer correct", reward.final_answer_correct === null || reward.final_answer_correct === undefined ? "–" : String(reward.final_answer_correct)],
    ]),
    details,
  );
}
