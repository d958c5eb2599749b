// /join/{id}#k=KEY: the client's way in. Before the window: a countdown. Inside it: the device
// check, "where are you right now?", the waiting room, then the call.

import { api } from "./api.js";
import { bookingKey, linkError, loadBooking } from "./booking-key.js";
import { bindMediaButtons, Call, showState } from "./call.js";
import { showClosed, waitForWindow } from "./countdown.js";
import { runDeviceCheck } from "./device-check.js";
import { preview, stopMedia } from "./devices.js";
import { $, fail } from "./dom.js";
import { recallLocation, rememberLocation } from "./location.js";
import { detectedZone, formatSpan } from "./timezones.js";
import { showWaiting } from "./waiting-room.js";

const root = $("join");
const bookingId = root.dataset.booking;
const key = bookingKey();
let zone = detectedZone();
let stream = null;
let call = null;
let buttonsBound = false;

function status(text) {
  $("status").textContent = text;
}

const requestToken = () => api("POST", `/api/v1/bookings/${bookingId}/room-token`, { key });

/** Wait for the join window; resolve true inside it, false when the session cannot be joined. */
async function windowOpen() {
  try {
    return await waitForWindow(requestToken, zone, {
      onWait: () => status(""),
      closedText: "The time for this session has passed, or it was cancelled.",
    });
  } catch (error) {
    fail(linkError(error, "session"));
    return false;
  }
}

async function start() {
  const booking = await loadBooking(bookingId, key, "session");
  if (!booking) return;
  if (booking.client_timezone) zone = booking.client_timezone;
  $("session-info").textContent = `With ${booking.therapist.name}, ${formatSpan(booking.start, booking.end, zone)}`;
  if (booking.status === "cancelled") {
    status("");
    showClosed("This session was cancelled", "You can book a new one from your therapist's booking page.");
    return;
  }
  if (!(await windowOpen())) return;
  status("");
  $("check").hidden = false;
  $("where").value = recallLocation(bookingId) || booking.client.location || "";
  try {
    stream = await runDeviceCheck();
  } catch (error) {
    fail(error.message);
  }
}

function enterCall(place) {
  $("check").hidden = true;
  $("left").hidden = true;
  $("call").hidden = false;
  preview($("local"), stream);
  if (!buttonsBound) {
    buttonsBound = true;
    bindMediaButtons(stream, $("mute"), $("camera"));
  }
  call = new Call({ role: "client", fetchToken: requestToken, stream, remoteVideo: $("remote"), location: place });
  showState(call, $("conn"));
  showWaiting(call, $("waiting-panel"), $("stage-note"), $("ending-note"));
  call.addEventListener("finished", ({ detail }) => {
    $("call").hidden = true;
    if (detail === "left") {
      $("left").hidden = false;
      $("left-title").focus();
    } else {
      stopMedia(stream);
      const text = {
        ended: ["The session has ended", "Thank you. You can close this page."],
        removed: ["Your therapist ended your part of the session", "If this was a mistake, contact your therapist."],
        replaced: ["You joined from another window", "The session continues there."],
      }[detail] || ["You're no longer connected", "Reload this page to try again."];
      showClosed(...text);
      $("closed-title").focus();
    }
  });
  call.start();
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!event.currentTarget.reportValidity()) return;
  if (!stream) {
    fail("Your camera and microphone must be working to join. Please allow them and reload this page.");
    return;
  }
  const place = $("where").value.trim();
  rememberLocation(bookingId, place);
  enterCall(place);
});

$("rejoin").addEventListener("click", () => enterCall($("where").value.trim()));

$("leave").addEventListener("click", () => call && call.leave());

start();
