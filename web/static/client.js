// A client's page: save the details through PATCH .../clients/{id} with the session cookie and the
// page's CSRF token (api.js). Empty phone, location and notes are cleared (sent as null).
import { api, ApiError, explain } from "./api.js";
import { $ } from "./dom.js";

const root = $("client-page");
const form = $("client-form");
const message = $("client-message");
const path = `/api/v1/therapists/${root.dataset.slug}/clients/${root.dataset.client}`;

function say(text, isError) {
  message.className = isError ? "alert error" : "alert";
  message.setAttribute("role", isError ? "alert" : "status");
  message.textContent = text;
}

function optional(value) {
  const text = String(value || "").trim();
  return text === "" ? null : text;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const body = {
    name: String(data.get("name") || "").trim(),
    email: String(data.get("email") || "").trim(),
    phone: optional(data.get("phone")),
    location: optional(data.get("location")),
    notes: optional(data.get("notes")),
  };
  if (!body.name) {
    say("Give the client a name.", true);
    $("client-name").focus();
    return;
  }
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(body.email)) {
    say("Enter an email address like name@example.org.", true);
    $("client-email").focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const saved = await api("PATCH", path, { body });
    $("client-title").textContent = saved.name;
    document.title = `${saved.name} · Clients · Teleroom`;
    say("The details are saved.", false);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      location.reload();
      return;
    }
    say(explain(error), true);
    if (error instanceof ApiError && error.code === "client_email_taken") $("client-email").focus();
  } finally {
    button.disabled = false;
  }
});
