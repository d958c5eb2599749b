// /join/{id}#k=KEY: the client's way in. First what a session needs before it can start (consent to
// video therapy and an emergency contact, join-steps.js); before the window a countdown; inside it
// the device check and "where are you right now?" (a country and region, confirmed at every join),
// any questionnaires due (measures-step.js), the waiting room, then the call.

import { api } from "./api.js";
import { bookingKey, linkError, loadBooking } from "./booking-key.js";
import { bindMediaButtons, Call, showState } from "./call.js";
import { showClosed, waitForWindow } from "./countdown.js";
import { runDeviceCheck } from "./device-check.js";
import { preview, stopMedia } from "./devices.js";
import { $, fail } from "./dom.js";
import { runJoinSteps } from "./join-steps.js";
import { runMeasures } from "./measures-step.js";
import { describePlace, placePicker } from "./place-picker.js";
import { detectedZone, formatSpan } from "./timezones.js";
import { showWaiting } from "./waiting-room.js";

const root = $("join");
const bookingId = root.dataset.booking;
const key = bookingKey();
let zone = detectedZone();
let stream = null;
let call = null;
let buttonsBound = false;
let picker = null;
let steps = null;

function status(text) {
  $("status").textContent = text;
}

const requestToken = () => api("POST", `/api/v1/bookings/${bookingId}/room-token`, { key });

/** Wait for the join window; resolve true inside it, false when the session cannot be joined.
 * A step still missing (the consent text changed meanwhile) is done first, then it asks again. */
async function windowOpen() {
  for (;;) {
    try {
      return await waitForWindow(requestToken, zone, {
        onWait: () => status(""),
        closedText: "The time for this session has passed, or it was cancelled.",
      });
    } catch (error) {
      if (error.code === "consent_required") {
        status("");
        steps = await runJoinSteps({ bookingId, key });
        continue;
      }
      fail(linkError(error, "session"));
      return false;
    }
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
  if (Date.parse(booking.end) > Date.now()) {
    status("");
    try {
      steps = await runJoinSteps({ bookingId, key });
    } catch (error) {
      fail(linkError(error, "session"));
      return;
    }
  }
  if (!(await windowOpen())) return;
  status("");
  $("check").hidden = false;
  const known = steps && steps.location;
  picker = await placePicker({
    country: $("where-country"),
    region: $("where-region"),
    regionRow: $("where-region-row"),
    initial: known,
  });
  $("where-note").value = (known && known.note) || "";
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

/** Keep where the client is for this session; the text the therapist's waiting list shows. */
async function confirmPlace() {
  const place = picker.value();
  const note = $("where-note").value.trim();
  await api("POST", `/api/v1/bookings/${bookingId}/location`, {
    key,
    body: { country: place.country, ...(place.region ? { region: place.region } : {}), ...(note ? { note } : {}) },
  });
  const named = describePlace($("where-country"), $("where-region"));
  return note ? `${named} (${note})` : named;
}

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!event.currentTarget.reportValidity()) return;
  if (!stream) {
    fail("Your camera and microphone must be working to join. Please allow them and reload this page.");
    return;
  }
  const button = $("join-button");
  button.disabled = true;
  let place;
  try {
    place = await confirmPlace();
    $("check").hidden = true;
    await runMeasures({ bookingId, key, mount: $("measures-step") });
  } catch (error) {
    $("check").hidden = false;
    fail(linkError(error, "session"));
    return;
  } finally {
    button.disabled = false;
  }
  $("error").hidden = true;
  enterCall(place);
});

$("rejoin").addEventListener("click", () => enterCall(describePlace($("where-country"), $("where-region"))));

$("leave").addEventListener("click", () => call && call.leave());

start();
