// The synth REST API, seen from the page: same origin, JSON in and out, the bearer token (when
// the reader configured one in the page) on write requests.

const TOKEN_KEY = "astra.console.token";

/** The API token configured in the page ("" when none). */
export function token() {
  return window.localStorage.getItem(TOKEN_KEY) || "";
}

/** Configure (or clear, with "") the API token used for write requests. */
export function setToken(value) {
  if (value) window.localStorage.setItem(TOKEN_KEY, value);
  else window.localStorage.removeItem(TOKEN_KEY);
}

/** An HTTP error with the API's own explanation as its message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function detailOf(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${(item.loc || []).join(".")}: ${item.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(method, path, { params, body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(url(path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `the synth API cannot be reached: ${error.message}`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(response.status, data));
  return data;
}

/** GET a JSON document; params with empty values are left out. */
export function getJSON(path, params) {
  return request("GET", path, { params });
}

/** POST a JSON body (or none) and read the JSON answer. */
export function postJSON(path, body) {
  return request("POST", path, { body });
}

let infoPromise = null;

/** The service's /v1/info (fetched once per page load). */
export function info() {
  infoPromise ??= getJSON("/v1/info").catch((error) => {
    infoPromise = null;
    throw error;
  });
  return infoPromise;
}

/** Whether write actions can be sent: the API needs no token, or one is configured. */
export async function canWrite() {
  try {
    return !(await info()).auth_required || Boolean(token());
  } catch {
    return Boolean(token());
  }
}
