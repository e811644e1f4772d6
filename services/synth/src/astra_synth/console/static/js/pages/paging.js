// Filter forms and paging shared by the list pages: the filters live in the route's query, so
// a filtered list is a link that can be shared.

import { h } from "../dom.js";

export const PAGE_SIZE = 50;

/** A form whose fields are the given filters; submitting it rewrites the route's query. */
export function filterForm(page, fields, query) {
  const inputs = fields.map(([name, label, options]) => {
    const current = query.get(name) || "";
    const input = options
      ? h("select", { name }, h("option", { value: "" }, "any"), options.map((o) => h("option", { value: o, selected: o === current }, o)))
      : h("input", { name, type: "text", value: current, size: 14 });
    return h("label", {}, `${label} `, input);
  });
  const form = h("form", { class: "inline-form filters", id: `${page}-filters` }, inputs, h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const element of form.elements) {
      if (element.name && element.value.trim()) next.set(element.name, element.value.trim());
    }
    const text = next.toString();
    window.location.hash = `#/${page}${text ? "?" + text : ""}`;
  });
  return form;
}

/** The query's filters as API parameters, with limit and offset. */
export function listParams(query, names) {
  const params = { limit: PAGE_SIZE, offset: Number(query.get("offset") || 0) };
  for (const name of names) if (query.get(name)) params[name] = query.get(name);
  return params;
}

/** "1–50 of 120" with previous / next links. */
export function pager(page, query, total) {
  const offset = Number(query.get("offset") || 0);
  const to = (value) => {
    const next = new URLSearchParams(query);
    if (value > 0) next.set("offset", String(value));
    else next.delete("offset");
    const text = next.toString();
    return `#/${page}${text ? "?" + text : ""}`;
  };
  const end = Math.min(offset + PAGE_SIZE, total);
  return h(
    "p",
    { class: "pager" },
    offset > 0 ? h("a", { href: to(Math.max(0, offset - PAGE_SIZE)) }, "← previous") : null,
    ` ${total ? offset + 1 : 0}–${end} of ${total} `,
    end < total ? h("a", { href: to(offset + PAGE_SIZE) }, "next →") : null,
  );
}
