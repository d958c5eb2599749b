// The client page's consent and emergency details (issue 11): the consent versions the client
// accepted (typed name, when), their emergency contact and usual place, and the places they confirmed
// at each join. Read from GET .../clients/{id}/safety, which audits the read.

import { api } from "./api.js";
import { $, el } from "./dom.js";

const root = $("client-page");
const zone = root.dataset.timezone;
const when = (iso) => new Date(iso).toLocaleString([], { timeZone: zone, dateStyle: "medium", timeStyle: "short" });
const named = (place) => [place.region_name, place.country_name].filter(Boolean).join(", ") + (place.note ? ` (${place.note})` : "");

async function show() {
  let record;
  try {
    record = await api("GET", `/api/v1/therapists/${root.dataset.slug}/clients/${root.dataset.client}/safety`);
  } catch {
    $("safety-loading").textContent = "The consent and emergency details could not be loaded.";
    return;
  }
  $("safety-loading").hidden = true;
  $("safety-facts").hidden = false;
  const latest = record.consent.accepted[0];
  $("safety-consent").textContent = record.consent.consented
    ? `Version ${latest.version} (current), signed "${latest.typed_name}" on ${when(latest.accepted_at)}`
    : latest
      ? `Accepted version ${latest.version} only; version ${record.consent.current_version} is asked at their next join`
      : "Not given yet: asked at their first join";
  const contact = record.emergency_contact;
  $("safety-contact").textContent = contact ? `${contact.name}, ${contact.phone}` : "Not given yet";
  $("safety-usual").textContent = contact ? named(contact.usual_location) : "Not given yet";
  $("safety-locations").replaceChildren(
    ...(record.locations.length
      ? record.locations.map((p) => el("li", { text: `${named(p)}, confirmed ${when(p.confirmed_at)}` }))
      : [el("li", { class: "muted", text: "None yet." })]),
  );
}

show();
