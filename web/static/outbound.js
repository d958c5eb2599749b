// What the Messages and Webhooks pages share: API calls that reload on a lost session, status lines,
// times in the therapist's zone, and the wording of a message's state.
import { api, ApiError, explain } from "./api.js";
import { el } from "./dom.js";

/** The JSON API with the session cookie; a 401 means the session ended, so reload and let the server say why. */
export async function call(method, path, options) {
  try {
    return await api(method, path, options);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) location.reload();
    throw error;
  }
}

/** Put `text` in a status line: polite for news, an alert for an error (or empty to clear it). */
export function say(box, text, isError = false) {
  box.classList.toggle("alert", Boolean(text));
  box.classList.toggle("error", Boolean(text) && isError);
  box.setAttribute("role", isError ? "alert" : "status");
  box.textContent = text;
}

/** `say` for a failed call, with the API's own sentence. */
export function sayError(box, error) {
  say(box, explain(error), true);
}

/** "Tue, Dec 3, 10:00" in the therapist's zone, or a dash for no time. */
export function formatTime(iso, zone) {
  if (!iso) return "—";
  const fmt = new Intl.DateTimeFormat(undefined, {
    timeZone: zone,
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
  });
  return fmt.format(new Date(iso));
}

const STATES = {
  pending: "Waiting to be sent",
  delivered: "Delivered",
  failed: "Failed (gave up)",
  withdrawn: "Withdrawn (no longer needed)",
};

/** Whether the last attempt at a message failed (an error, or a status other than 2xx or SMTP 250). */
export function lastTryFailed(message) {
  if (message.last_error) return true;
  const status = message.last_status;
  return status !== null && status !== undefined && !(status >= 200 && status < 300) && status !== 250;
}

/** A message's state in words; a pending message whose last try failed is waiting for its retry. */
export function stateLabel(message) {
  if (message.state === "pending" && lastTryFailed(message)) return "Last try failed, trying again";
  return STATES[message.state] || message.state;
}

/** "booking.created" or "reminder_email" as words: "Booking created", "Reminder email". */
export function words(name) {
  const text = String(name).replace(/[._-]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * A log table under the heading `labelledBy`: `columns` name the cells of each row in `rows` (a row
 * is `{attrs, cells}`); an empty column name is read out as `hiddenName`. Each cell carries its
 * column's name, which narrow screens show beside it when rows stack (messages.css).
 */
export function logTable(labelledBy, columns, rows, hiddenName = "Actions") {
  const head = columns.map((name) =>
    el("th", { scope: "col" }, name ? name : el("span", { class: "visually-hidden", text: hiddenName })),
  );
  const body = rows.map(({ attrs, cells }) => {
    cells.forEach((cell, i) => {
      if (columns[i]) cell.dataset.label = columns[i];
    });
    return el("tr", attrs, ...cells);
  });
  return el(
    "div",
    { class: "table-scroll", tabindex: "0", role: "region", "aria-labelledby": labelledBy },
    el("table", { class: "log" }, el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...body)),
  );
}
