// The join page's first steps (issue 11): before a first session the client accepts the therapist's
// telehealth consent text (typing their name) and gives an emergency contact and where they usually
// are; a changed consent text is accepted again. Each step is one card at a time, its heading
// focused, so a screen reader lands on it; the server decides what is missing (join-steps).

import { api, explain } from "./api.js";
import { $, el } from "./dom.js";
import { placePicker } from "./place-picker.js";

const stepsOf = (bookingId, key) => api("GET", `/api/v1/bookings/${bookingId}/join-steps`, { key });

function showOnly(section) {
  for (const id of ["consent-step", "contact-step"]) $(id).hidden = $(id) !== section;
  const heading = section.querySelector("h2");
  if (heading) heading.focus();
}

function stepError(box, message) {
  box.hidden = !message;
  box.textContent = message || "";
}

/** The consent text as paragraphs (a blank line starts one), never as HTML. */
function renderText(mount, text) {
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  mount.replaceChildren(...paragraphs.map((p, i) => el(i === 0 ? "h3" : "p", { text: p })));
}

function consentStep(bookingId, key, consent) {
  const section = $("consent-step");
  const form = $("consent-form");
  const error = $("consent-error");
  let version = consent.version;
  renderText($("consent-text"), consent.text);
  $("consent-version").textContent = `Version ${version}`;
  showOnly(section);
  return new Promise((resolve) => {
    const submit = async (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      stepError(error, "");
      const button = $("consent-accept");
      button.disabled = true;
      try {
        await api("POST", `/api/v1/bookings/${bookingId}/consent`, {
          key,
          body: { version, typed_name: $("consent-name").value.trim() },
        });
        form.removeEventListener("submit", submit);
        resolve();
      } catch (e) {
        if (e.code === "consent_outdated") {
          const fresh = await stepsOf(bookingId, key);
          version = fresh.consent.version;
          renderText($("consent-text"), fresh.consent.text);
          $("consent-version").textContent = `Version ${version}`;
          $("consent-agree").checked = false;
          stepError(error, "Your therapist has just updated this text. Please read it again before accepting.");
        } else {
          stepError(error, explain(e));
        }
      } finally {
        button.disabled = false;
      }
    };
    form.addEventListener("submit", submit);
  });
}

async function contactStep(bookingId, key, usual) {
  const section = $("contact-step");
  const form = $("contact-form");
  const error = $("contact-error");
  const picker = await placePicker({
    country: $("usual-country"),
    region: $("usual-region"),
    regionRow: $("usual-region-row"),
    initial: usual,
  });
  showOnly(section);
  return new Promise((resolve) => {
    const submit = async (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      stepError(error, "");
      const place = picker.value();
      const note = $("usual-note").value.trim();
      const button = $("contact-save");
      button.disabled = true;
      try {
        await api("PUT", `/api/v1/bookings/${bookingId}/emergency-contact`, {
          key,
          body: {
            name: $("contact-name").value.trim(),
            phone: $("contact-phone").value.trim(),
            usual_location: { country: place.country, ...(place.region ? { region: place.region } : {}), ...(note ? { note } : {}) },
          },
        });
        form.removeEventListener("submit", submit);
        resolve();
      } catch (e) {
        stepError(error, explain(e));
      } finally {
        button.disabled = false;
      }
    };
    form.addEventListener("submit", submit);
  });
}

/**
 * Walk the client through what is missing before a room token (consent, emergency contact), then
 * hide the steps. Resolves with the latest join-steps answer (its `location` prefills the picker).
 */
export async function runJoinSteps({ bookingId, key }) {
  let steps = await stepsOf(bookingId, key);
  if (steps.missing.includes("consent")) await consentStep(bookingId, key, steps.consent);
  if (steps.missing.includes("emergency_contact")) await contactStep(bookingId, key, steps.location);
  if (steps.missing.length) steps = await stepsOf(bookingId, key);
  $("consent-step").hidden = true;
  $("contact-step").hidden = true;
  return steps;
}
