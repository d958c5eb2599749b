// /dashboard/safety: the telehealth consent text (edit, versions), licences (add, remove, expiry) and
// what a booking outside them gets. Everything through the JSON API with the session cookie.

import { api, explain } from "./api.js";
import { $, el, fail } from "./dom.js";
import { placePicker } from "./place-picker.js";

const slug = $("safety-page").dataset.slug;
const base = `/api/v1/therapists/${slug}`;
const today = new Date().toISOString().slice(0, 10);
let picker = null;

async function loadConsent() {
  const texts = await api("GET", `${base}/consent-text`);
  $("consent-text").value = texts.current.text;
  $("consent-versions").replaceChildren(
    ...texts.versions.map((v) =>
      el("li", { text: `Version ${v.version}, ${new Date(v.created_at).toLocaleString()}${v.version === texts.current.version ? " (current)" : ""}` }),
    ),
  );
}

function licenceRow(licence) {
  const expired = licence.expires_on && !licence.valid_today;
  const remove = el("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove licence for ${licence.jurisdiction_name}` });
  remove.addEventListener("click", async () => {
    try {
      await api("DELETE", `${base}/licences/${licence.id}`);
      await loadLicences();
    } catch (error) {
      fail(explain(error));
    }
  });
  return el(
    "tr",
    {},
    el("td", { text: `${licence.jurisdiction_name} (${licence.jurisdiction})` }),
    el("td", { text: `${licence.kind}, ${licence.number}` }),
    el("td", { class: expired ? "expired" : null, text: licence.expires_on ? `${licence.expires_on}${expired ? " (expired)" : ""}` : "Does not expire" }),
    el("td", {}, remove),
  );
}

async function loadLicences() {
  const found = await api("GET", `${base}/licences`);
  $("licences").replaceChildren(...found.licences.map(licenceRow));
  $("licences-table").hidden = found.licences.length === 0;
  $("licences-empty").hidden = found.licences.length > 0;
  for (const input of document.querySelectorAll('input[name="licence_check"]')) {
    input.checked = input.value === found.licence_check;
  }
}

$("consent-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!event.currentTarget.reportValidity()) return;
  try {
    const saved = await api("PUT", `${base}/consent-text`, { body: { text: $("consent-text").value } });
    $("consent-status").textContent = `Saved: version ${saved.version} is current.`;
    await loadConsent();
  } catch (error) {
    fail(explain(error));
  }
});

$("licence-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  if (!form.reportValidity()) return;
  const place = picker.value();
  const expires = $("licence-expires").value;
  try {
    await api("POST", `${base}/licences`, {
      body: {
        jurisdiction: place.region || place.country,
        kind: $("licence-kind").value.trim(),
        number: $("licence-number").value.trim(),
        ...(expires ? { expires_on: expires } : {}),
      },
    });
    form.reset();
    await picker.set(null);
    await loadLicences();
  } catch (error) {
    fail(explain(error));
  }
});

for (const input of document.querySelectorAll('input[name="licence_check"]')) {
  input.addEventListener("change", async () => {
    try {
      await api("PUT", `${base}/licence-check`, { body: { licence_check: input.value } });
      $("check-status").textContent = input.value === "refuse" ? "Bookings outside your licences are refused." : "Bookings outside your licences are allowed, with a warning.";
    } catch (error) {
      fail(explain(error));
    }
  });
}

async function start() {
  $("licence-expires").min = today;
  try {
    picker = await placePicker({ country: $("licence-country"), region: $("licence-region"), regionRow: $("licence-region-row") });
    await Promise.all([loadConsent(), loadLicences()]);
  } catch (error) {
    fail(explain(error));
  }
}

start();
