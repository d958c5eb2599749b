// The JSON API from the browser. A booking key lives only in the URL fragment (#k=...), which the
// browser never sends to a server; we read it here and send it in the Authorization header.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `Request failed (${status})`);
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.body = body || {};
  }
}

/** The booking key from `#k=...`, or null. */
export function bookingKey() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const key = params.get("k");
  return key && key.startsWith("trk_") ? key : null;
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : null;
}

/**
 * Call the API. `key` (a booking key) becomes a bearer token; without it a logged-in therapist's
 * session cookie is used (same origin only), with the page's CSRF token on state-changing calls.
 */
export async function api(method, path, { body, key, headers, raw } = {}) {
  const hdrs = { Accept: "application/json", ...(headers || {}) };
  if (key) hdrs.Authorization = `Bearer ${key}`;
  if (body !== undefined) hdrs["Content-Type"] = "application/json";
  const csrf = csrfToken();
  if (csrf && method !== "GET") hdrs["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers: hdrs,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  if (raw && response.ok) return response;
  let payload = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

/** A human sentence for an error, never a stack trace. */
export function explain(error) {
  if (error instanceof ApiError) return error.message;
  return "We couldn't reach Teleroom. Please check your internet connection and try again.";
}
