// The therapist's dashboard: join buttons that open with the join window, copyable links, calendar
// links, session types and (through availability.js) weekly hours. API calls go with the session
// cookie and the page's CSRF token (api.js reads <meta name="csrf-token">).
import { api, ApiError, explain } from "./api.js";
import { startAvailability } from "./availability.js";
import { $ } from "./dom.js";
import { showOutsideHours, startOutsideHours } from "./outside-hours.js";
import { startReview } from "./review.js";

const root = $("dashboard");
const slug = root.dataset.slug;
const announcer = $("dash-status");
// The server's clock may differ from this device's (or be moved in a rehearsal): count from it.
const skew = Date.parse(root.dataset.serverNow) - Date.now();
const serverNow = () => Date.now() + skew;
const idleMs = Number(root.dataset.idleSeconds) * 1000;
let lastActivity = Date.now();

function announce(text) {
  announcer.textContent = text;
}

/** The JSON API for this therapist; a 401 means the session ended, so reload and let the server say why. */
export async function call(method, path, options) {
  try {
    const result = await api(method, path, options);
    lastActivity = Date.now();
    return result;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) location.reload();
    throw error;
  }
}

// --- Join buttons -----------------------------------------------------------------------------

function joinState(box) {
  const now = serverNow();
  if (now < Date.parse(box.dataset.opensAt)) return "later";
  if (now < Date.parse(box.dataset.closesAt)) return "open";
  return "over";
}

function renderJoin(box, state) {
  const describedBy = box.querySelector(".join")?.getAttribute("aria-describedby")?.split(" ")[0];
  box.replaceChildren();
  box.dataset.state = state;
  if (state === "open") {
    const link = document.createElement("a");
    link.className = "button join";
    link.href = box.dataset.room;
    link.textContent = "Join session";
    if (describedBy) link.setAttribute("aria-describedby", describedBy);
    box.append(link);
    announce("A session's room is open: you can join it now.");
  } else if (state === "over") {
    const note = document.createElement("span");
    note.className = "hint";
    note.textContent = "Session over";
    box.append(note);
  }
}

function refreshJoinButtons() {
  for (const box of document.querySelectorAll(".session-join")) {
    const state = joinState(box);
    if (state !== box.dataset.state) renderJoin(box, state);
  }
}

// --- Idle timeout: when the server has ended the session, show the login page and its reason ----

function checkIdle() {
  if (Date.now() - lastActivity > idleMs + 2000) location.reload();
}

// --- Copyable links and calendar feeds ----------------------------------------------------------

async function copyFrom(inputId, button) {
  const input = $(inputId);
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  announce("Link copied.");
  setTimeout(() => {
    button.textContent = label;
  }, 2000);
}

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", () => copyFrom(button.dataset.copy, button));
}

const feedButton = $("create-feed");
feedButton.addEventListener("click", async () => {
  const privacy = document.querySelector('input[name="feed-privacy"]:checked').value;
  feedButton.disabled = true;
  try {
    const feed = await call("POST", `/api/v1/therapists/${slug}/feeds`, { body: { privacy } });
    $("feed-url").value = feed.url;
    $("feed-webcal").href = feed.webcal_url;
    $("feed-result").hidden = false;
    announce("Calendar link created. Copy it now: it is shown only once.");
    $("feed-url").focus();
  } catch (error) {
    announce(explain(error));
    alertNear(feedButton, explain(error));
  } finally {
    feedButton.disabled = false;
  }
});

function alertNear(element, text) {
  let box = element.parentElement.querySelector(".alert.error");
  if (!box) {
    box = document.createElement("div");
    box.className = "alert error";
    box.setAttribute("role", "alert");
    element.parentElement.append(box);
  }
  box.textContent = text;
}

// --- Session types ------------------------------------------------------------------------------

const typeList = $("session-types");
const noTypes = $("no-types");

function typeItem(type) {
  const li = document.createElement("li");
  li.dataset.id = type.id;
  const text = document.createElement("span");
  text.textContent = `${type.name} · ${type.duration_minutes} min`;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary";
  remove.dataset.removeType = type.id;
  remove.setAttribute("aria-label", `Remove ${type.name}`);
  remove.textContent = "Remove";
  li.append(text, remove);
  return li;
}

typeList.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-remove-type]");
  if (!button) return;
  button.disabled = true;
  try {
    await call("DELETE", `/api/v1/therapists/${slug}/session-types/${button.dataset.removeType}`);
    const name = button.closest("li").querySelector("span").textContent;
    button.closest("li").remove();
    noTypes.hidden = typeList.children.length > 0;
    announce(`Removed ${name}. Existing bookings keep it.`);
    $("type-name").focus();
  } catch (error) {
    button.disabled = false;
    alertNear(button, explain(error));
  }
});

const typeForm = $("type-form");
typeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(typeForm);
  const body = {
    name: String(data.get("name")).trim(),
    duration_minutes: Number(data.get("duration_minutes")),
    buffer_after_minutes: Number(data.get("buffer_after_minutes") || 0),
    min_notice_minutes: Math.round(Number(data.get("notice_hours") || 0) * 60),
  };
  if (!body.name) {
    alertNear(typeForm.querySelector("button[type=submit]"), "Give the session type a name.");
    $("type-name").focus();
    return;
  }
  try {
    const created = await call("POST", `/api/v1/therapists/${slug}/session-types`, { body });
    typeList.append(typeItem(created));
    noTypes.hidden = true;
    typeForm.reset();
    typeForm.querySelector(".alert.error")?.remove();
    announce(`Added ${created.name}.`);
  } catch (error) {
    alertNear(typeForm.querySelector("button[type=submit]"), explain(error));
  }
});

// --- Start ---------------------------------------------------------------------------------------

refreshJoinButtons();
setInterval(refreshJoinButtons, 1000);
setInterval(checkIdle, 15000);
startAvailability({ slug, call, onSaved: (saved) => showOutsideHours(saved.outside_hours ?? []) });
startOutsideHours({ call, announce });
startReview({ slug, call, zone: root.dataset.timezone });
