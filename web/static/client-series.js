// A client's page, the therapist's side of standing series: book a series for this client (preview
// first, through POST .../clients/{id}/series/preview; then POST .../clients/{id}/series, notice and horizon
// waived), and cancel upcoming sessions: a single one, or of a series this one, it and all following,
// or the whole series, each after a confirm step. Calls go with the session cookie and the page's
// CSRF token (api.js). After a change the session lists are read again from the page itself, so they
// are rendered in one place (web/clients.py, client.html).

import { api, ApiError, explain } from "./api.js";
import { $, el } from "./dom.js";

const root = $("client-page");
const slug = encodeURIComponent(root.dataset.slug);
const zone = root.dataset.timezone;
const FREQUENCIES = { weekly: "Every week", biweekly: "Every 2 weeks" };
const PREVIEW_STATUS = {
  free: "Free",
  taken: "Taken",
  not_offered: "Not offered (outside your hours or a day off)",
  confirmed: "Booked",
};
const dayFormat = new Intl.DateTimeFormat("en-GB", { weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: zone });
const timeFormat = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone });

/** "Tue 5 Jan 2027, 10:00–10:50" in the therapist's zone, as the server writes session times. */
function when(startIso, endIso) {
  const start = new Date(startIso);
  const span = endIso ? `${timeFormat.format(start)}–${timeFormat.format(new Date(endIso))}` : timeFormat.format(start);
  return `${dayFormat.format(start).replace(",", "")}, ${span}`;
}

/** The zone's offset from UTC (minutes) at the instant `ms`. */
function offsetMinutes(ms) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return Math.round((wall - ms) / 60000);
}

/** The instant (ISO, UTC) of a wall-clock date ("2027-01-05") and time ("10:00") in the therapist's zone. */
function instant(date, time) {
  const [y, m, d] = date.split("-").map(Number);
  const [h, min] = time.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, h, min);
  let t = wall - offsetMinutes(wall) * 60000;
  t = wall - offsetMinutes(t) * 60000; // once more, for a day on which the offset changes
  return new Date(t).toISOString();
}

function say(box, text, isError, ...extra) {
  box.className = isError ? "alert error" : "alert";
  box.setAttribute("role", isError ? "alert" : "status");
  box.replaceChildren(el("p", { text }), ...extra);
}

function unauthorized(error) {
  if (error instanceof ApiError && error.status === 401) {
    location.reload();
    return true;
  }
  return false;
}

/** Read the session lists again from the page as the server renders it now. */
async function refreshSessions() {
  const response = await fetch(location.pathname, { credentials: "same-origin", cache: "no-store" });
  const doc = response.ok ? new DOMParser().parseFromString(await response.text(), "text/html") : null;
  for (const id of ["upcoming-sessions-body", "past-sessions-body"]) {
    const fresh = doc && doc.getElementById(id);
    if (!fresh) {
      location.reload(); // logged out, or the page changed shape: show whatever the server shows
      return;
    }
    $(id).replaceWith(document.adoptNode(fresh));
  }
}

// ---- Book a series ----

function seriesForm() {
  const form = $("series-form");
  if (!form) return; // no session type is offered as a series
  const type = $("series-type");
  const frequency = $("series-frequency");
  const count = $("series-count");
  const allOrNothing = $("series-all-or-nothing");
  const previewBox = $("series-preview");
  const list = $("series-occurrences");
  const book = $("series-book");
  const message = $("series-message");
  let request = null; // the body the shown preview is for
  let idempotencyKey = null;

  function chosenType() {
    const option = type.selectedOptions[0];
    return { frequencies: option.dataset.frequencies.split(" ").filter(Boolean), max: Number(option.dataset.max) };
  }

  function fillType() {
    const { frequencies, max } = chosenType();
    const before = frequency.value;
    frequency.replaceChildren(...frequencies.map((f) => el("option", { value: f, text: FREQUENCIES[f] || f })));
    if (frequencies.includes(before)) frequency.value = before;
    count.max = String(max);
    count.min = String(Math.min(2, max));
    if (!count.value || Number(count.value) > max) count.value = String(Math.min(6, max));
    $("series-count-hint").textContent = `Up to ${max} sessions.`;
  }

  function stale() {
    request = null;
    previewBox.hidden = true;
  }

  function bookLabel(occurrences) {
    const n = occurrences.length;
    const free = occurrences.filter((o) => o.status === "free").length;
    if (allOrNothing.checked) return { text: `Book all ${n} sessions`, disabled: false };
    if (free === 0) return { text: "No session is free", disabled: true };
    return { text: free === n ? `Book ${n} sessions` : `Book the ${free} free sessions`, disabled: false };
  }

  function showPreview(occurrences) {
    list.replaceChildren(
      ...occurrences.map((o) =>
        el(
          "li",
          { class: `occurrence ${o.status}` },
          el("span", { class: "when", text: when(o.start, o.end) }),
          " ",
          el("span", { class: `badge preview-${o.status}`, text: PREVIEW_STATUS[o.status] || o.status }),
        ),
      ),
    );
    const label = bookLabel(occurrences);
    book.textContent = label.text;
    book.disabled = label.disabled;
    previewBox.hidden = false;
  }

  function read() {
    const date = $("series-date").value;
    const time = $("series-time").value;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return [null, $("series-date"), "Choose the date of the first session."];
    if (!/^\d{2}:\d{2}/.test(time)) return [null, $("series-time"), "Choose the start time."];
    const n = Number(count.value);
    if (!Number.isInteger(n) || n < Number(count.min) || n > Number(count.max)) {
      return [null, count, `The number of sessions must be from ${count.min} to ${count.max}.`];
    }
    return [{ session_type: type.value, start: instant(date, time), frequency: frequency.value, count: n }, null, null];
  }

  async function preview() {
    const [body, field, problem] = read();
    if (!body) {
      say(message, problem, true);
      field.focus();
      return;
    }
    message.replaceChildren();
    message.className = "";
    try {
      const shown = await api("POST", `/api/v1/therapists/${slug}/clients/${root.dataset.client}/series/preview`, {
        body,
      });
      request = body;
      idempotencyKey = crypto.randomUUID();
      showPreview(shown.occurrences);
      $("series-preview-title").focus();
    } catch (error) {
      if (unauthorized(error)) return;
      stale();
      say(message, explain(error), true);
    }
  }

  async function submit() {
    if (!request) return;
    book.disabled = true;
    const body = { ...request, all_or_nothing: allOrNothing.checked };
    try {
      const made = await api("POST", `/api/v1/therapists/${slug}/clients/${root.dataset.client}/series`, {
        headers: { "Idempotency-Key": idempotencyKey },
        body,
      });
      const booked = made.occurrences.filter((o) => o.status === "confirmed");
      const skipped = made.occurrences.filter((o) => o.status !== "confirmed");
      const first = booked[0];
      const rhythm = (FREQUENCIES[request.frequency] || request.frequency).toLowerCase();
      const extra = skipped.length
        ? [
            el("p", { text: "Not booked, because they are not free:" }),
            el("ul", {}, ...skipped.map((o) => el("li", { text: `${when(o.start, o.end)}: ${PREVIEW_STATUS[o.status] || o.status}` }))),
          ]
        : [];
      stale();
      say(message, `Booked ${booked.length} sessions, ${rhythm}, from ${when(first.start, first.end)}.`, false, ...extra);
      $("series-link-url").value = made.manage_url;
      $("series-link").hidden = false;
      await refreshSessions();
    } catch (error) {
      if (unauthorized(error)) return;
      book.disabled = false;
      if (error instanceof ApiError && error.code === "series_unavailable") {
        const blocked = error.body.occurrences || [];
        say(
          message,
          `Nothing was booked: ${blocked.length} of the ${request.count} sessions ${blocked.length === 1 ? "is" : "are"} not free.`,
          true,
          el("ul", {}, ...blocked.map((o) => el("li", { text: `${when(o.start)}: ${PREVIEW_STATUS[o.status] || o.status}` }))),
        );
        idempotencyKey = crypto.randomUUID(); // a new attempt after a change, not a replay of this refusal
        return;
      }
      say(message, explain(error), true);
    }
  }

  fillType();
  type.addEventListener("change", () => {
    fillType();
    stale();
  });
  for (const input of [frequency, count, $("series-date"), $("series-time")]) input.addEventListener("change", stale);
  allOrNothing.addEventListener("change", () => {
    if (request && list.querySelector(".occurrence")) {
      const occurrences = [...list.querySelectorAll(".occurrence")].map((li) => ({ status: li.classList[1] }));
      const label = bookLabel(occurrences);
      book.textContent = label.text;
      book.disabled = label.disabled;
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    preview();
  });
  book.addEventListener("click", submit);
}

// ---- Cancel upcoming sessions ----

const QUESTIONS = {
  one: () => "Cancel this session?",
  following: (n) => (n === 1 ? "Cancel this session, the last of its series?" : `Cancel this session and the ${n - 1} after it?`),
  all: (n) => `Cancel the whole series (${n} ${n === 1 ? "session" : "sessions"} still ahead)?`,
};

function cancelling() {
  const section = $("upcoming-sessions-body").closest("section");
  const box = $("cancel-confirm");
  const message = $("sessions-message");
  let opener = null;

  function affected(scope, item) {
    if (scope === "one") return [item];
    const ofSeries = [...section.querySelectorAll("li.session[data-series]")].filter(
      (li) => li.dataset.series === item.dataset.series && li.dataset.status === "confirmed",
    );
    if (scope === "all") return ofSeries;
    return ofSeries.filter((li) => Number(li.dataset.index) >= Number(item.dataset.index));
  }

  function close() {
    box.hidden = true;
    box.replaceChildren();
  }

  async function confirm(scope, item, items) {
    const ids = new Set(items.map((li) => li.dataset.booking));
    const series = item.dataset.series;
    try {
      let cancelled;
      if (series) {
        const body = scope === "all" ? { scope } : { scope, booking: item.dataset.booking };
        const answer = await api("POST", `/api/v1/series/${series}/cancel`, { body });
        cancelled = answer.occurrences.filter((o) => ids.has(o.booking_id) && o.status !== "confirmed").length;
      } else {
        await api("POST", `/api/v1/bookings/${item.dataset.booking}/cancel`, { body: {} });
        cancelled = 1;
      }
      close();
      say(message, cancelled === 1 ? "1 session cancelled." : `${cancelled} sessions cancelled.`, false);
      await refreshSessions();
      const title = $("upcoming-title");
      title.setAttribute("tabindex", "-1");
      title.focus();
    } catch (error) {
      if (unauthorized(error)) return;
      close();
      say(message, explain(error), true);
    }
  }

  function ask(scope, item, button) {
    const items = affected(scope, item);
    opener = button;
    message.replaceChildren();
    message.className = "";
    const keep = el("button", { type: "button", class: "secondary", text: items.length === 1 ? "Keep it" : "Keep them" });
    const yes = el("button", { type: "button", class: "danger", text: "Yes, cancel" });
    box.replaceChildren(
      el("h3", { id: "cancel-confirm-title", tabindex: "-1", text: QUESTIONS[scope](items.length) }),
      el("ul", {}, ...items.map((li) => el("li", { text: li.dataset.when }))),
      el("p", { text: "The times are freed for others. Let your client know: Teleroom does not tell them yet." }),
      el("div", { class: "row" }, yes, keep),
    );
    box.hidden = false;
    keep.addEventListener("click", () => {
      close();
      if (opener && opener.isConnected) opener.focus();
    });
    yes.addEventListener("click", () => {
      yes.disabled = true;
      keep.disabled = true;
      confirm(scope, item, items);
    });
    $("cancel-confirm-title").focus();
  }

  section.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-scope]");
    if (!button) return;
    ask(button.dataset.scope, button.closest("li.session"), button);
  });
}

seriesForm();
cancelling();
