// The dashboard's only way to the server: the /v1 API with the user's key as a bearer header.
//
// The key lives in this tab's sessionStorage: it survives a reload, is gone when the tab closes, and
// never travels in a cookie (so no other site can make the browser send it). With OPSCORE_AUTH=disabled
// no request answers 401 and no key is ever asked for.

import { readEvents } from "./sse.js";

const KEY = "opscore.api-key";
// The API's root, relative to the page (/ui/ -> /), so a proxy may serve both under a prefix.
const ROOT = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function currentKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const key = currentKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function url(path, query = {}) {
  const target = new URL(path.replace(/^\//, ""), ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // Not JSON (a proxy's page, a plain-text 503): keep the status line.
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("opscore:unauthenticated"));
  return new ApiError(response.status, code, message);
}

export async function api(path, { method = "GET", query, body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Follows an SSE endpoint with fetch (EventSource cannot send the Authorization header).
// Calls onEvent({id, event, data}) for each event, data parsed as JSON. When the connection drops it
// reconnects with Last-Event-ID, so no event is missed or repeated; it returns when the server ends
// the stream and finished() says so, or when `signal` aborts. 401, 403 and 404 end it with an ApiError.
export async function follow(path, { query, onEvent, onState = () => {}, finished = () => false, signal }) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId !== null) extra["Last-Event-ID"] = lastId;
      const response = await fetch(url(path, query), { headers: headers(extra), signal, cache: "no-store" });
      if (!response.ok) {
        const error = await failure(response);
        if ([401, 403, 404, 422].includes(response.status)) throw error;
        onState("retrying", error.message);
      } else {
        onState("live");
        delay = 500;
        for await (const sent of readEvents(response.body)) {
          if (sent.id !== null) lastId = sent.id;
          onEvent({ id: sent.id, event: sent.event, data: JSON.parse(sent.data) });
        }
        if (finished()) return;
        onState("retrying", "the stream closed");
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status !== 503) throw error;
      onState("retrying", error.message);
    }
    await pause(delay, signal);
    delay = Math.min(delay * 2, 10_000);
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
