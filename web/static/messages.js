// The Messages page: booking notices the therapist wants (GET/PUT .../notifications), previews of
// every email with sample data (GET .../email-previews[/{template}]), and the messages Teleroom gave
// up on (GET .../messages?state=failed). An email's HTML is shown in a sandboxed frame (no script,
// opaque origin) loading /dashboard/messages/previews/{template}, a document whose own policy lets
// it use the inline styles emails need (web/messages.py).
import { $, el } from "./dom.js";
import { call, formatTime, logTable, say, sayError, words } from "./outbound.js";

const root = $("messages-page");
const zone = root.dataset.timezone;
const base = `/api/v1/therapists/${encodeURIComponent(root.dataset.slug)}`;

// --- Booking notices ---------------------------------------------------------------------------

const form = $("notices-form");
const noticesMessage = $("notices-message");

function showNotices(prefs) {
  form.elements.notify_bookings.checked = Boolean(prefs.notify_bookings);
  form.elements.email_session_type.checked = Boolean(prefs.email_session_type);
  for (const radio of form.querySelectorAll('input[name="notice_detail"]')) {
    radio.checked = radio.value === prefs.notice_detail;
  }
}

function enableNotices(enabled) {
  for (const control of form.querySelectorAll("input, button")) control.disabled = !enabled;
  form.setAttribute("aria-busy", String(!enabled));
}

async function loadNotices() {
  try {
    showNotices(await call("GET", `${base}/notifications`));
    enableNotices(true);
  } catch (error) {
    sayError(noticesMessage, error);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const detail = form.querySelector('input[name="notice_detail"]:checked');
  const body = {
    notify_bookings: form.elements.notify_bookings.checked,
    notice_detail: detail ? detail.value : "busy",
    email_session_type: form.elements.email_session_type.checked,
  };
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say(noticesMessage, "");
  try {
    showNotices(await call("PUT", `${base}/notifications`, { body }));
    say(
      noticesMessage,
      body.notify_bookings
        ? "Saved. You will get an email for each new booking and cancellation."
        : "Saved. You will not get emails about bookings.",
    );
  } catch (error) {
    sayError(noticesMessage, error);
  } finally {
    button.disabled = false;
  }
});

// --- Email previews ----------------------------------------------------------------------------

const previewList = $("preview-list");
const previewsMessage = $("previews-message");

/** A template's name whether the list holds names or objects naming one. */
function templateName(item) {
  return typeof item === "string" ? item : item.template || item.name;
}

async function loadPreviews() {
  try {
    const found = await call("GET", `${base}/email-previews`);
    const names = (Array.isArray(found) ? found : found.templates || []).map(templateName);
    previewList.replaceChildren(
      ...names.map((name) =>
        el(
          "li",
          { class: "preview-item" },
          el("span", { text: words(name) }),
          el("button", {
            type: "button",
            class: "secondary",
            "data-template": name,
            "aria-label": `Preview: ${words(name)}`,
            text: "Preview",
          }),
        ),
      ),
    );
    if (!names.length) previewList.append(el("li", { class: "muted", text: "No email templates found." }));
  } catch (error) {
    previewList.replaceChildren();
    sayError(previewsMessage, error);
  } finally {
    previewList.setAttribute("aria-busy", "false");
  }
}

previewList.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-template]");
  if (!button) return;
  const name = button.dataset.template;
  button.disabled = true;
  say(previewsMessage, "");
  try {
    const preview = await call("GET", `${base}/email-previews/${encodeURIComponent(name)}`);
    $("preview-title").textContent = `Preview: ${words(name)}`;
    $("preview-subject").textContent = preview.subject;
    $("preview-text").textContent = preview.text;
    $("preview-html").src = `/dashboard/messages/previews/${encodeURIComponent(name)}`;
    for (const other of previewList.querySelectorAll("[data-template]")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    $("preview").hidden = false;
    $("preview-title").focus();
  } catch (error) {
    sayError(previewsMessage, error);
  } finally {
    button.disabled = false;
  }
});

// --- Messages that could not be delivered ------------------------------------------------------

const RECIPIENTS = { client: "The client", therapist: "You", endpoint: "A webhook" };

function recipientText(message) {
  const who = RECIPIENTS[message.recipient] || message.recipient;
  return message.channel === "email" ? `${who} (email)` : who;
}

function errorText(message) {
  const parts = [];
  if (message.last_status) parts.push(`Status ${message.last_status}`);
  if (message.last_error) parts.push(message.last_error);
  return parts.join(": ") || "—";
}

function failedTable(messages) {
  const columns = ["Created", "Message", "To", "Attempts", "Last try", "Last error"];
  const rows = messages.map((m) => ({
    attrs: { "data-message": m.id },
    cells: [
      el("td", { text: formatTime(m.created_at, zone) }),
      el("td", { text: words(m.kind) }),
      el("td", { text: recipientText(m) }),
      el("td", { class: "number", text: String(m.attempts) }),
      el("td", { text: formatTime(m.last_attempt_at, zone) }),
      el("td", { class: "error-text", text: errorText(m) }),
    ],
  }));
  return logTable("failed-title", columns, rows);
}

async function loadFailed() {
  const box = $("failed");
  try {
    const messages = await call("GET", `${base}/messages?state=failed`);
    box.replaceChildren(
      messages.length
        ? failedTable(messages)
        : el("p", { class: "muted", text: "None: every message so far was delivered or is still being tried." }),
    );
  } catch (error) {
    box.replaceChildren();
    sayError($("failed-message"), error);
  } finally {
    box.setAttribute("aria-busy", "false");
  }
}

loadNotices();
loadPreviews();
loadFailed();
