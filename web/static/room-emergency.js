// The therapist's emergency panel in the room (issue 11): where the client says they are today, their
// emergency contact, the crisis lines for that place, and a clear warning above the waiting room when
// no valid licence covers that place on the session's date. Read from the API (audited there);
// refreshed whenever someone enters the waiting room, since the client confirms their place just before.

import { api } from "./api.js";
import { $, el } from "./dom.js";

const SOURCE = {
  today: "confirmed today",
  booking: "as given when booking, not yet confirmed today",
  usual: "where they usually are, not yet confirmed today",
};

function placeText(place) {
  if (!place) return "Not known yet: the client confirms it when they join.";
  const named = [place.region_name, place.country_name].filter(Boolean).join(", ");
  const note = place.note ? ` (${place.note})` : "";
  return `${named}${note}, ${SOURCE[place.source]}`;
}

function telLink(phone) {
  return el("a", { href: `tel:${phone.replace(/[^0-9+]/g, "")}`, text: phone });
}

function licenceText(panel) {
  const licence = panel.licence;
  if (!licence.checked) return "No licence recorded (add yours on the Safety page).";
  if (licence.covered === null) return "Not checked: the client's place is not known yet.";
  if (licence.covered) return "You hold a valid licence for this place on the session's date.";
  return "No valid licence of yours covers this place on the session's date.";
}

function warningText(panel) {
  const place = panel.location;
  const where = [place.region_name, place.country_name].filter(Boolean).join(", ");
  const held = panel.licence.licensed_in.map((p) => p.name).join(", ") || "nowhere valid on that date";
  return `Licence warning: your client says they are in ${where}. Your licences valid on the session's date cover ${held}. Check before admitting.`;
}

/** Load the panel for `bookingId` and show it; returns the panel (or null if it could not be read). */
export async function showEmergency(bookingId) {
  let panel;
  try {
    panel = await api("GET", `/api/v1/bookings/${bookingId}/emergency`);
  } catch {
    $("emergency-loading").textContent = "The emergency details could not be loaded. Try Refresh.";
    return null;
  }
  $("emergency-loading").hidden = true;
  $("emergency-facts").hidden = false;
  $("emergency-place").textContent = placeText(panel.location);
  const contact = panel.emergency_contact;
  $("emergency-contact").replaceChildren(
    ...(contact ? [`${contact.name}, `, telLink(contact.phone)] : ["Not given yet."]),
  );
  $("emergency-licence").textContent = licenceText(panel);
  $("crisis-title").hidden = panel.crisis_lines.length === 0;
  $("crisis-lines").replaceChildren(
    ...panel.crisis_lines.map((line) =>
      el(
        "li",
        {},
        el("strong", { text: line.name }),
        ...(line.phone ? [" ", telLink(line.phone)] : []),
        ...(line.hours ? [` (${line.hours})`] : []),
        ...(line.note ? [el("div", { class: "hint", text: line.note })] : []),
      ),
    ),
  );
  const warning = $("licence-warning");
  warning.hidden = !panel.licence_warning;
  warning.textContent = panel.licence_warning ? warningText(panel) : "";
  return panel;
}

/** Bind the Refresh button. */
export function bindEmergency(bookingId) {
  $("emergency-refresh").addEventListener("click", () => showEmergency(bookingId));
}
