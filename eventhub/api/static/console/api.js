// The console's only way to the hub: the documented API, with the key of this tab.
//
// The key lives in sessionStorage (this tab, until it closes or the user signs out), never
// in a cookie or a URL, and goes out as "Authorization: Bearer". A 401 forgets it and tells
// the app (event "eventhub:unauthorized"), which shows the sign-in form again.

const STORE = "eventhub.console.key";

export function key() {
  return sessionStorage.getItem(STORE);
}

export function setKey(value) {
  sessionStorage.setItem(STORE, value);
}

export function forget() {
  sessionStorage.removeItem(STORE);
}

/** What went wrong with a call: the hub's error (status, code, message) or the network. */
export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Call the API; the JSON answer (null for 204). Throws ApiError, or AbortError if aborted. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const current = key();
  if (current) headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(
      0,
      "network",
      "Could not reach the hub: the request failed before an answer came. " +
        "Check that the hub is running and reachable, then try again.",
    );
  }
  let payload = null;
  if (response.status !== 204) {
    try {
      payload = await response.json();
    } catch (err) {
      if (err.name === "AbortError") throw err;
      payload = null;
    }
  }
  if (response.status === 401) {
    forget();
    window.dispatchEvent(new CustomEvent("eventhub:unauthorized"));
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `The hub answered ${response.status} ${response.statusText}.`,
      error.details || [],
    );
  }
  return payload;
}

/** A path segment, percent-encoded (ids may hold "/"). */
export function seg(value) {
  return encodeURIComponent(value);
}
