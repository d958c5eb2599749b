// /manage/{id}#k=KEY: see the booking, cancel it (after a confirm step) or move it to a free time.

import { api, explain } from "./api.js";
import { bookingKey, loadBooking } from "./booking-key.js";
import { SlotCalendar } from "./calendar.js";
import { $, fail } from "./dom.js";
import { offerMeasures } from "./measures-step.js";
import { showManagePolicy, statusLabel } from "./policy.js";
import { showSeries } from "./series-manage.js";
import { detectedZone, formatSpan, zonePicker } from "./timezones.js";

const root = $("manage");
const bookingId = root.dataset.booking;
const key = bookingKey();
let booking = null;
let zone = detectedZone();
let calendar = null;
let target = null;

function render() {
  $("status").textContent = "";
  $("summary").hidden = false;
  $("b-therapist").textContent = booking.therapist.name;
  $("b-type").textContent = `${booking.session_type.name} (${booking.session_type.duration_minutes} minutes)`;
  $("b-when").textContent = formatSpan(booking.start, booking.end, zone);
  const cancelled = booking.status !== "confirmed"; // cancelled (late or not), or over: attended, no_show
  $("b-status").textContent = statusLabel(booking.status);
  showManagePolicy(booking);
  $("actions").hidden = cancelled;
  $("join-link").href = `/join/${bookingId}#k=${encodeURIComponent(key)}`;
  $("book-again").hidden = !cancelled;
  $("book-again-link").href = `/book/${encodeURIComponent(booking.therapist.slug)}`;
}

function panel(id) {
  for (const other of ["cancel-confirm", "reschedule-panel"]) $(other).hidden = other !== id;
}

async function load() {
  booking = await loadBooking(bookingId, key, "booking");
  if (!booking) return;
  if (booking.client_timezone) zone = booking.client_timezone;
  render();
  if (booking.series_id) showSeries(booking, key, zone);
  if (booking.status === "confirmed") {
    offerMeasures({ bookingId, key, button: $("measures-open"), mount: $("measures-mount") });
  }
}

$("cancel").addEventListener("click", () => {
  panel("cancel-confirm");
  $("cancel-title").focus();
});
$("cancel-no").addEventListener("click", () => {
  panel(null);
  $("cancel").focus();
});
$("cancel-yes").addEventListener("click", async () => {
  const button = $("cancel-yes");
  button.disabled = true;
  try {
    booking = await api("POST", `/api/v1/bookings/${bookingId}/cancel`, { key, body: {} });
    panel(null);
    render();
    $("status").textContent = "Your session is cancelled.";
  } catch (error) {
    fail(explain(error));
  } finally {
    button.disabled = false;
  }
});

$("reschedule").addEventListener("click", () => {
  panel("reschedule-panel");
  $("move-confirm").hidden = true;
  if (!calendar) {
    calendar = new SlotCalendar($("calendar"), {
      slug: booking.therapist.slug,
      sessionType: booking.session_type.id,
      zone,
      onPick(slot) {
        target = slot;
        $("move-chosen").textContent = `New time: ${formatSpan(slot.start, slot.end, zone)}`;
        $("move-confirm").hidden = false;
        $("move-yes").focus();
      },
    });
    zonePicker($("tz"), zone, (z) => {
      zone = z;
      calendar.setZone(z);
      render();
    }, [booking.therapist.timezone]);
  }
  calendar.load();
  $("reschedule-title").focus();
});
$("move-no").addEventListener("click", () => {
  panel(null);
  $("reschedule").focus();
});
$("move-yes").addEventListener("click", async () => {
  const button = $("move-yes");
  button.disabled = true;
  try {
    booking = await api("POST", `/api/v1/bookings/${bookingId}/reschedule`, { key, body: { start: target.start } });
    panel(null);
    render();
    $("status").textContent = `Your session is moved to ${formatSpan(booking.start, booking.end, zone)}.`;
  } catch (error) {
    if (error.status === 409) {
      $("move-chosen").textContent = "That time was just taken. Please choose another one.";
      calendar.load();
    } else {
      fail(explain(error));
    }
  } finally {
    button.disabled = false;
  }
});

load();
