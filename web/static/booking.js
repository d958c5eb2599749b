// /book/{slug}: choose a session type, a day and a time in your own zone, give your details, get
// your links. The booking key comes back once, in the response, and only ever goes into the
// fragment of the links we show.

import { api, explain } from "./api.js";
import { SlotCalendar } from "./calendar.js";
import { $ } from "./dom.js";
import { downloadIcs } from "./ics.js";
import { rememberLocation } from "./location.js";
import { bookingPlace } from "./licence-note.js";
import { startBookingPolicy } from "./policy.js";
import { seriesChoice } from "./series.js";
import { detectedZone, formatSpan, zonePicker } from "./timezones.js";

const root = $("booking");

function selectedType() {
  const checked = document.querySelector('input[name="session_type"]:checked');
  return checked ? checked.value : null;
}

function show(section) {
  for (const id of ["step-type-card", "step-time-card", "details", "confirmation"]) {
    const node = $(id);
    if (node) node.hidden = !section.includes(id);
  }
}

function setup() {
  if (!selectedType()) return;
  const slug = root.dataset.slug;
  let zone = detectedZone();
  let chosen = null;
  let idempotencyKey = null;
  const repeat = seriesChoice({ slug, sessionType: selectedType, zone: () => zone });
  const place = bookingPlace({ slug, therapistZone: root.dataset.therapistZone, chosen: () => chosen });

  const calendar = new SlotCalendar($("calendar"), {
    slug,
    sessionType: selectedType(),
    zone,
    onPick(slot) {
      chosen = slot;
      idempotencyKey = crypto.randomUUID();
      $("chosen").textContent = formatSpan(slot.start, slot.end, zone);
      $("form-error").hidden = true;
      repeat.pick(slot);
      place.check();
      show(["step-type-card", "step-time-card", "details"]);
      $("details").scrollIntoView({ block: "start" });
      $("step-details").focus({ preventScroll: true });
    },
  });
  zonePicker($("tz"), zone, (z) => {
    zone = z;
    calendar.setZone(z);
  }, [root.dataset.therapistZone]);
  for (const radio of document.querySelectorAll('input[name="session_type"]')) {
    radio.addEventListener("change", () => {
      show(["step-type-card", "step-time-card"]);
      calendar.setSessionType(selectedType());
    });
  }
  $("change-time").addEventListener("click", () => {
    show(["step-type-card", "step-time-card"]);
    $("step-time").scrollIntoView({ block: "start" });
    const first = $("calendar").querySelector("button.time");
    if (first) first.focus();
  });
  calendar.load();

  $("book-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    if (!form.reportValidity() || !chosen) return;
    const data = new FormData(form);
    const client = { name: data.get("name").trim(), email: data.get("email").trim() };
    const phone = data.get("phone").trim();
    if (phone) client.phone = phone;
    const where = data.get("location").trim();
    if (where) client.location = where;
    Object.assign(client, place.value());
    if (repeat.active()) return repeat.submit(client, idempotencyKey);
    const button = $("confirm");
    button.disabled = true;
    button.textContent = "Booking…";
    try {
      const booking = await api("POST", `/api/v1/therapists/${encodeURIComponent(slug)}/bookings`, {
        headers: { "Idempotency-Key": idempotencyKey },
        body: { session_type: selectedType(), start: chosen.start, client, client_timezone: zone },
      });
      if (where) rememberLocation(booking.id, where);
      confirmed(booking, zone);
    } catch (error) {
      const box = $("form-error");
      box.hidden = false;
      if (error.status === 409) {
        box.textContent = "Someone just booked that time. Please choose another one.";
        calendar.load();
      } else {
        box.textContent = explain(error);
      }
    } finally {
      button.disabled = false;
      button.textContent = "Confirm booking";
    }
  });
}

function confirmed(booking, zone) {
  show(["confirmation"]);
  $("confirm-time").textContent = formatSpan(booking.start, booking.end, zone);
  $("join-url").value = booking.join_url;
  $("manage-url").value = booking.manage_url;
  $("join-link").href = booking.join_url;
  $("manage-link").href = booking.manage_url;
  $("ics").addEventListener("click", () =>
    downloadIcs(booking.id, booking.booking_key, {
      start: booking.start,
      end: booking.end,
      title: `Session with ${document.querySelector("h1").textContent.replace(/^Book a session with /, "")}`,
      url: booking.join_url,
    }),
  );
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = $(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(input.value);
        $("copy-status").textContent = "Copied.";
      } catch {
        input.select();
        $("copy-status").textContent = "Select the link and copy it.";
      }
    });
  }
  window.scrollTo(0, 0);
  $("confirmed-title").focus();
}

setup();
startBookingPolicy(root.dataset.slug);
