// The console's only way to the gateway: the public HTTP API of SPEC §8, with the
// API key kept in sessionStorage (gone when the browser tab closes).

const KEY = "vmn-console-key";

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An error answer of the API: an RFC 9457 problem (type, title, status, detail, errors). */
export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem || {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.status = status;
    this.problem = p;
    this.errors = Array.isArray(p.errors) ? p.errors : [];
  }

  /** The last path segment of the problem type ("opted-out" for .../problems/opted-out). */
  get kind() {
    return String(this.problem.type || "").split("/").pop();
  }
}

/** Called on a 401 so that the app can return to the sign-in page. */
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/**
 * Call the API. `query` values that are empty are left out. Resolves to the parsed JSON
 * body (null for 204); rejects with ApiError for any non-2xx answer. A 401 signs the
 * console out (the key was revoked), unless `signingIn` (the sign-in form's own check).
 */
export async function api(path, { method = "GET", query, body, headers = {}, signal,
                                  signingIn = false } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const init = { method, signal, headers: { Accept: "application/json", ...headers } };
  const key = apiKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 200) };
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !signingIn) onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return data;
}

/** Every item of a cursor-paged list endpoint ({items, next_cursor}), up to `max`. */
export async function allItems(path, query = {}, { max = 100000, pageSize = 500 } = {}) {
  const out = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, limit: pageSize, cursor } });
    const items = listItems(page);
    out.push(...items);
    cursor = page && !Array.isArray(page) ? page.next_cursor : null;
  } while (cursor && out.length < max);
  return out;
}

/** The items of a list answer ({items: [...]} or a bare array). */
export function listItems(page) {
  if (Array.isArray(page)) return page;
  return (page && Array.isArray(page.items)) ? page.items : [];
}
