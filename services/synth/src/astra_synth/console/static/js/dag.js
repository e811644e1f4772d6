// The sub-question DAG drawn as an SVG graph: one node per sub-question (its id and tool),
// one arrow per dependency, columns by depth (a node sits right of everything it needs).

import { s } from "./dom.js";

const NODE_W = 190;
const NODE_H = 56;
const GAP_X = 70;
const GAP_Y = 22;
const PAD = 16;

/** Column of each sub-question: 0 for those that need nothing, else 1 + deepest dependency. */
export function depths(questions) {
  const byId = new Map(questions.map((q) => [q.id, q]));
  const depth = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id) || !byId.has(id)) return 0; // a cycle or unknown id: never loop
    visiting.add(id);
    const deps = byId.get(id).depends_on || [];
    const value = deps.length ? 1 + Math.max(...deps.map(visit)) : 0;
    visiting.delete(id);
    depth.set(id, value);
    return value;
  };
  questions.forEach((q) => visit(q.id));
  return depth;
}

function clip(text, max) {
  const value = String(text ?? "");
  return value.length > max ? value.slice(0, max - 1) + "…" : value;
}

/** The SVG graph of `questions` (sub-questions with id, question, depends_on, tool_name). */
export function dagSvg(questions) {
  const depth = depths(questions);
  const columns = [];
  for (const q of questions) (columns[depth.get(q.id)] ??= []).push(q);
  const position = new Map();
  columns.forEach((column, x) =>
    column.forEach((q, y) =>
      position.set(q.id, { x: PAD + x * (NODE_W + GAP_X), y: PAD + y * (NODE_H + GAP_Y) }),
    ),
  );
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;

  const edges = [];
  for (const q of questions) {
    for (const dep of q.depends_on || []) {
      const from = position.get(dep);
      const to = position.get(q.id);
      if (!from || !to) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x - 4;
      const y2 = to.y + NODE_H / 2;
      const bend = (x2 - x1) / 2;
      edges.push(
        s(
          "path",
          {
            class: "dag-edge",
            "data-from": dep,
            "data-to": q.id,
            d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
            "marker-end": "url(#dag-arrow)",
          },
          s("title", {}, `${q.id} depends on ${dep}`),
        ),
      );
    }
  }
  const nodes = questions.map((q) => {
    const { x, y } = position.get(q.id);
    return s(
      "g",
      { class: q.tool_name ? "dag-node" : "dag-node no-tool", "data-id": q.id, transform: `translate(${x} ${y})` },
      s("title", {}, `${q.id}: ${q.question}\nanswer: ${q.answer}`),
      s("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }),
      s("text", { x: 10, y: 22, class: "dag-id" }, clip(q.id, 26)),
      s("text", { x: 10, y: 42, class: "dag-tool" }, clip(q.tool_name || "(no tool)", 28)),
    );
  });
  return s(
    "svg",
    {
      class: "dag",
      id: "dag",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": `sub-question graph: ${questions.length} sub-questions`,
    },
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "dag-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "dag-arrowhead" }),
      ),
    ),
    edges,
    nodes,
  );
}
