/** The page's only way to reach the server: same-origin fetch() with the saved bearer token. */
import { readSse } from "./sse.js";

const TOKEN_KEY = "trainer.api_token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API, with its envelope (`message`, `details`). */
export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body === "object" && body?.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.details = Array.isArray(body?.details) ? body.details : [];
  }
}

/** Listeners told when the server asks for a token (401), so the page can prompt for it. */
const unauthorized = new Set();
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

function headers(extra = {}) {
  const h = new Headers(extra);
  const token = getToken();
  if (token) h.set("Authorization", `Bearer ${token}`);
  return h;
}

/** The response boot.js started for `path`, once, if this is a plain GET of that URL. */
function early(path, init) {
  const started = globalThis.trainerEarly;
  if (!started || started.url !== path || init.method !== "GET") return null;
  globalThis.trainerEarly = null;
  return started.response;
}

/** Calls the API; resolves to the parsed JSON body, rejects with ApiError on any error status. */
export async function api(path, { method = "GET", json } = {}) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (json !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(json);
  }
  const res = await (early(path, init) ?? fetch(path, init));
  const type = res.headers.get("content-type") ?? "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (res.status === 401) unauthorized.forEach((fn) => fn(body));
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/**
 * Follows an SSE stream of the API, calling `onEvent(type, payload, id)` per message.
 * Resolves to false at once when the server has no such stream (404), so the caller polls
 * instead; otherwise resolves true when the stream ends or `signal` aborts it.
 */
export async function follow(path, { after, signal, onEvent }) {
  const extra = { Accept: "text/event-stream" };
  if (after) extra["Last-Event-ID"] = String(after);
  let res;
  try {
    res = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
  } catch (e) {
    if (signal?.aborted) return true;
    throw e;
  }
  if (res.status === 404 || res.status === 405) return false;
  if (res.status === 401) unauthorized.forEach((fn) => fn(null));
  if (!res.ok || !res.body) throw new ApiError(res.status, null);
  try {
    await readSse(res.body, (m) => {
      let payload = m.data;
      try {
        payload = JSON.parse(m.data);
      } catch {
        // not JSON: passed on as text
      }
      onEvent(m.event, payload, m.id);
    });
  } catch (e) {
    if (!signal?.aborted) throw e;
  }
  return true;
}

/**
 * Downloads `path` with the saved token (a plain link cannot send it) and hands the file to
 * the browser under `name`.
 */
export async function download(path, name) {
  const res = await fetch(path, { headers: headers(), cache: "no-store" });
  if (res.status === 401) unauthorized.forEach((fn) => fn(null));
  if (!res.ok) {
    const type = res.headers.get("content-type") ?? "";
    throw new ApiError(res.status, type.includes("json") ? await res.json() : null);
  }
  const url = URL.createObjectURL(await res.blob());
  try {
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}
