// The console's shell: hash routes (#/page/id?query) to page modules, the token form, and
// stopping a page's timers when the reader leaves it.

import { info, setToken, token } from "./api.js";
import { h, notice, replace } from "./dom.js";
import * as environments from "./pages/environments.js";
import * as episodes from "./pages/episodes.js";
import * as jobs from "./pages/jobs.js";
import * as training from "./pages/training.js";
import * as trajectories from "./pages/trajectories.js";

const PAGES = { jobs, environments, episodes, trajectories, training };

const view = document.getElementById("view");
let leave = null; // the current page's clean-up (timers), run before the next page renders
let generation = 0;

/** The route in the location hash: page, optional id, query parameters. */
export function parseRoute(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const [page = "jobs", ...rest] = path.split("/");
  return {
    page: page || "jobs",
    id: rest.length ? decodeURIComponent(rest.join("/")) : null,
    query: new URLSearchParams(query),
  };
}

async function render() {
  if (leave) leave();
  leave = null;
  const mine = ++generation;
  const route = parseRoute(window.location.hash);
  for (const anchor of document.querySelectorAll("#nav a")) {
    if (anchor.dataset.page === route.page) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
  const page = PAGES[route.page];
  if (!page) {
    replace(view, notice("error", `No page "${route.page}".`));
    return;
  }
  const container = h("section", { class: `page page-${route.page}` });
  replace(view, container);
  try {
    const cleanup = await page.render(container, route, () => mine !== generation);
    if (mine === generation) leave = cleanup || null;
    else if (cleanup) cleanup();
  } catch (error) {
    if (mine === generation) replace(container, notice("error", error.message));
  }
}

function setUpToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const state = document.getElementById("auth-state");
  const show = async () => {
    let required = null;
    try {
      required = (await info()).auth_required;
    } catch {
      required = null;
    }
    const configured = Boolean(token());
    if (configured) state.textContent = "token set";
    else if (required === false) state.textContent = "no token needed";
    else state.textContent = "read-only (no token)";
  };
  input.value = token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    show();
    render();
  });
  show();
}

setUpToken();
window.addEventListener("hashchange", render);
render();
