// Building the page from data without ever parsing data as markup: every string a caller
// passes becomes a text node or an attribute value, never HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "value" && "value" in element && element.namespaceURI !== SVG_NS) {
      element.value = String(value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append children (nodes, strings, numbers, nested arrays; null and undefined skipped). */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** An HTML element: h("a", {href: "#/jobs"}, "Jobs"). Strings are text, never markup. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, as h() builds HTML ones. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace every child of parent with children. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A value as indented JSON text in a <pre>. */
export function json(value, attrs = {}) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: "json", ...attrs }, text ?? "null");
}

/** A JSON string shown indented when it parses, as given otherwise. */
export function jsonText(text, attrs = {}) {
  try {
    return json(JSON.parse(text), attrs);
  } catch {
    return h("pre", { class: "json", ...attrs }, String(text ?? ""));
  }
}

/** A timestamp in the reader's locale ("" for none). */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** A number with at most `digits` decimals ("–" for none). */
export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const text = value.toFixed(digits);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/** A table: columns are [heading, cell(row) -> node or text]; rows are data records. */
export function table(columns, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", {}, heading)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))),
    ),
  );
}

/** A definition list of [term, value] pairs (values may be nodes). */
export function facts(pairs, attrs = {}) {
  return h(
    "dl",
    { class: "facts", ...attrs },
    pairs.filter(([, value]) => value !== undefined).map(([term, value]) => [
      h("dt", {}, term),
      h("dd", {}, value === null ? "–" : value),
    ]),
  );
}

/** A message box; kind is "error", "ok" or "info". */
export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, children);
}

/** A link to a console route. */
export function link(route, text, attrs = {}) {
  return h("a", { href: `#/${route}`, ...attrs }, text);
}

/** Text cut to `max` characters, the whole of it in the tooltip. */
export function short(text, max = 80) {
  const value = String(text ?? "");
  if (value.length <= max) return value;
  return h("span", { title: value }, value.slice(0, max - 1) + "…");
}
