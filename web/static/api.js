// The JSON API from the browser. Secrets in links (a booking key, an invite or reset link) live only
// in the URL fragment (#k=..., #t=...), which the browser never sends to a server; pages read them
// with fragmentSecret and send them in the Authorization header.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `Request failed (${status})`);
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.body = body || {};
  }
}

/** The secret `name` from the URL fragment (`#k=...`, `#t=...`) when it matches `pattern`, else null. */
export function fragmentSecret(name, pattern) {
  const value = new URLSearchParams(location.hash.replace(/^#/, "")).get(name);
  return value && pattern.test(value) ? value : null;
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
