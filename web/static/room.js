// /room/{id}: the therapist's side. Logged in through the dashboard (the session cookie; the
// page carries the CSRF token for the room-token call). Who is waiting, with the location they
// confirmed; the emergency panel and a licence warning before admitting; questionnaire scores;
// Admit, Remove, End session; then the call.

import { api, explain } from "./api.js";
import { bindMediaButtons, Call, showState } from "./call.js";
import { showClosed, waitForWindow } from "./countdown.js";
import { openMedia, preview } from "./devices.js";
import { $, fail } from "./dom.js";
import { bindEmergency, showEmergency } from "./room-emergency.js";
import { showMeasures } from "./room-measures.js";
import { detectedZone, formatSpan } from "./timezones.js";
import { renderQueue, showEnding } from "./waiting-room.js";

const root = $("room");
const bookingId = root.dataset.booking;
let zone = detectedZone();
let call = null;
let admittedClient = null;
const locations = new Map();

const requestToken = () => api("POST", `/api/v1/bookings/${bookingId}/room-token`);

/** The session cookie ended: log in again and come back here. */
const logInAgain = () => location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);

async function windowOpen() {
  try {
    return await waitForWindow(requestToken, zone, {
      onWait: () => ($("status").textContent = ""),
      closedText: "Its time has passed, or it was cancelled.",
    });
  } catch (error) {
    if (error.status === 401) logInAgain();
    else fail(explain(error));
    return false;
  }
}

function showClientLocation() {
  const where = admittedClient && locations.get(admittedClient);
  $("client-location").hidden = !where;
  $("client-location").textContent = where ? `Your client confirmed they are in: ${where}` : "";
}

async function start() {
  try {
    const booking = await api("GET", `/api/v1/bookings/${bookingId}`);
    zone = booking.therapist.timezone || zone;
    $("client-name").textContent = booking.client.name;
    $("session-info").textContent = `${booking.session_type.name}, ${formatSpan(booking.start, booking.end, zone)}`;
    if (booking.status === "cancelled") {
      $("status").textContent = "";
      showClosed("This session was cancelled", "There is nothing to join.");
      return;
    }
  } catch (error) {
    if (error.status === 401) return logInAgain();
    fail(explain(error));
    return;
  }
  if (!(await windowOpen())) return;
  let stream;
  try {
    stream = await openMedia();
  } catch (error) {
    fail(error.message);
    return;
  }
  $("status").textContent = "";
  $("room-body").hidden = false;
  bindEmergency(bookingId);
  showEmergency(bookingId);
  showMeasures({ bookingId, mount: $("measures-panel") });
  const seen = new Map();
  preview($("local"), stream);
  bindMediaButtons(stream, $("mute"), $("camera"));
  call = new Call({ role: "therapist", fetchToken: requestToken, stream, remoteVideo: $("remote") });
  showState(call, $("conn"));
  showEnding(call, $("ending-note"));
  call.addEventListener("queue", ({ detail }) => {
    for (const person of detail) if (person.location) locations.set(person.id, person.location);
    // Someone (re)entered the waiting room with a place just confirmed: read the panel again.
    if (detail.some((person) => seen.get(person.id) !== person.location)) showEmergency(bookingId);
    for (const person of detail) seen.set(person.id, person.location);
    renderQueue($("queue"), $("queue-empty"), detail, {
      onAdmit(person) {
        admittedClient = person.id;
        call.admit(person.id);
        showClientLocation();
      },
      onRemove(person) {
        call.remove(person.id);
      },
    });
  });
  call.addEventListener("peer", ({ detail }) => {
    if (detail && detail.role === "client") admittedClient = detail.id;
    $("remove-admitted").disabled = !detail;
    $("stage-note").hidden = Boolean(detail);
    if (!detail) $("stage-note").textContent = "Your client's connection dropped. They can rejoin from their link.";
    showClientLocation();
  });
  call.addEventListener("finished", ({ detail }) => {
    $("room-body").hidden = true;
    showClosed(detail === "ended" ? "The session has ended" : "You left the session", "You can go back to your dashboard.");
    $("closed-title").focus();
  });
  $("remove-admitted").addEventListener("click", () => {
    if (admittedClient) call.remove(admittedClient);
  });
  $("end").addEventListener("click", () => call.end());
  call.start();
}

start();
