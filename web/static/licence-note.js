// The booking page's place (issue 11): a country and, where it has regions, a region from the ISO
// lists, and a note when the therapist holds no licence valid there on the chosen day (the public
// coverage check names no licence). With the therapist's `refuse` setting the booking is refused.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { describePlace, placePicker } from "./place-picker.js";

/** The session's date in the therapist's zone (the day a licence must still be valid on). */
function therapistDate(start, zone) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(new Date(start));
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/**
 * Bind the booking form's place picker. `chosen()` is the picked slot (or null). Returns
 * {value(): {country?, region?}, check()}; check() runs the coverage check again (after a new slot).
 */
export function bookingPlace({ slug, therapistZone, chosen }) {
  const note = $("licence-note");
  let picker = null;
  let asked = 0;

  async function check() {
    const place = picker && picker.value();
    const slot = chosen();
    if (!place || !slot) {
      note.hidden = true;
      return;
    }
    const query = new URLSearchParams({ country: place.country, date: therapistDate(slot.start, therapistZone) });
    if (place.region) query.set("region", place.region);
    const mine = ++asked;
    let found;
    try {
      found = await api("GET", `/api/v1/therapists/${encodeURIComponent(slug)}/licence-coverage?${query}`);
    } catch {
      return; // the booking itself still says what is wrong
    }
    if (mine !== asked) return;
    note.hidden = !(found.checked && found.covered === false);
    if (note.hidden) return;
    const where = describePlace($("country"), $("region"));
    note.textContent =
      found.licence_check === "refuse"
        ? `This therapist is not licensed to see clients in ${where} on that date, so this booking cannot be made. Please contact them.`
        : `This therapist is not licensed to see clients in ${where} on that date. You can still book; please talk to them about it.`;
  }

  placePicker({ country: $("country"), region: $("region"), regionRow: $("region-row"), onChange: check }).then((p) => {
    picker = p;
  });

  return {
    value() {
      const place = picker && picker.value();
      if (!place) return {};
      return place.region ? { country: place.country, region: place.region } : { country: place.country };
    },
    check,
  };
}
