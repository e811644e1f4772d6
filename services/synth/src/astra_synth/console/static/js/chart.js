// A line chart in SVG: one numeric series against the training step, with its range labelled.

import { h, num, s } from "./dom.js";

const W = 420;
const H = 200;
const M = { left: 52, right: 12, top: 14, bottom: 30 };

/** Points {x, y} of a metric in `steps` (records with a numeric step), finite values only;
 * `keys` names the metric, or its alternative names: the first one any step holds is used. */
export function series(steps, keys) {
  const names = Array.isArray(keys) ? keys : [keys];
  const key = names.find((name) => steps.some((r) => typeof r[name] === "number")) ?? names[0];
  return steps
    .filter((r) => typeof r.step === "number" && typeof r[key] === "number" && Number.isFinite(r[key]))
    .map((r) => ({ x: r.step, y: r[key] }));
}

/** A <figure> holding the chart of `points`, or a note that nothing was logged. */
export function lineChart(title, id, points) {
  const figure = h("figure", { class: "chart", "data-metric": id, "data-points": points.length });
  const caption = h("figcaption", {}, title);
  if (!points.length) {
    figure.append(caption, h("p", { class: "muted" }, `no ${title.toLowerCase()} logged`));
    return figure;
  }
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const d = points.map((p, i) => `${i ? "L" : "M"} ${px(p.x).toFixed(1)} ${py(p.y).toFixed(1)}`).join(" ");
  const last = points[points.length - 1];
  figure.append(
    caption,
    s(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `${title} per step` },
      s("line", { class: "axis", x1: M.left, y1: H - M.bottom, x2: W - M.right, y2: H - M.bottom }),
      s("line", { class: "axis", x1: M.left, y1: M.top, x2: M.left, y2: H - M.bottom }),
      s("text", { class: "tick", x: M.left - 6, y: py(y1) + 4, "text-anchor": "end" }, num(y1)),
      s("text", { class: "tick", x: M.left - 6, y: py(y0) + 4, "text-anchor": "end" }, num(y0)),
      s("text", { class: "tick", x: px(x0), y: H - 10, "text-anchor": "start" }, `step ${num(x0)}`),
      s("text", { class: "tick", x: px(x1), y: H - 10, "text-anchor": "end" }, `step ${num(x1)}`),
      s("path", { class: "line", d }),
      points.length <= 200
        ? points.map((p) => s("circle", { class: "point", cx: px(p.x).toFixed(1), cy: py(p.y).toFixed(1), r: 2.5 }, s("title", {}, `step ${p.x}: ${num(p.y, 4)}`)))
        : null,
    ),
    h("p", { class: "chart-last" }, `last: ${num(last.y, 4)} at step ${num(last.x)}`),
  );
  return figure;
}
