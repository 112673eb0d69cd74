// The API as the browser calls it: same origin, the signed-in key as X-API-Key, JSON in and out.
// The key lives in sessionStorage (this tab only, gone when it closes) and never in a URL.

const KEY = "opscore.key";
const AGENT = "opscore.agent";
export const BASE = "/v1/opscore";

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : null;
    const text = error ? `${error.code}: ${error.message}` : (body && body.message) || "no answer";
    super(`${status} ${text}`);
    this.status = status;
    this.body = body;
    this.code = error ? error.code : null;
  }
}

// An error asking again will not change (a bad filter, an unknown id): every 4xx but 429 (try later).
export function isFinal(error) {
  return error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429;
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  agent: () => sessionStorage.getItem(AGENT),
  signIn(key, agentId) {
    sessionStorage.setItem(KEY, key);
    if (agentId) sessionStorage.setItem(AGENT, agentId);
    else sessionStorage.removeItem(AGENT);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(AGENT);
  },
  isAdmin: () => !sessionStorage.getItem(AGENT),
};

// One request; resolves to {status, body} whatever the status (actions show errors as answers), rejects only when
// the server cannot be reached.
export async function call(method, path, { body, query, key } = {}) {
  const url = new URL(path.startsWith("/ui/") ? path : BASE + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (Array.isArray(value)) value.forEach((one) => url.searchParams.append(name, one));
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json", "X-API-Key": key || session.key() || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text.slice(0, 200) };
  }
  return { status: response.status, body: parsed };
}

// A read: the body of a 2xx, else an ApiError.
export async function get(path, query) {
  const answer = await call("GET", path, { query });
  if (answer.status < 200 || answer.status > 299) throw new ApiError(answer.status, answer.body);
  return answer.body;
}

// Every page of a paged route, up to `pages` pages.
export async function all(path, query = {}, pages = 10) {
  const items = [];
  let token = null;
  for (let page = 0; page < pages; page += 1) {
    const body = await get(path, { ...query, next_token: token });
    items.push(...body.items);
    token = body.next_token;
    if (!token) return { items, more: false };
  }
  return { items, more: true };
}

export const enc = encodeURIComponent;
