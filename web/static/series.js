// The booking page's "Repeat" choice: book the picked time every week (or every 2 weeks) as one
// series. Shows the preview from the API (every date in the client's zone, which ones cannot be
// booked, and a note where daylight-saving time moves a session on the client's clock), books it in
// one request, and lists the dates booked. The series key only ever goes into the links' fragment.

import { api, explain } from "./api.js";
import { $, el } from "./dom.js";
import { formatDay, formatSpan, formatTime } from "./timezones.js";

const LABELS = { weekly: "Every week", biweekly: "Every 2 weeks" };
const NOT_BOOKABLE = { taken: "already taken: won't be booked", not_offered: "not offered: won't be booked" };

function optionsOf(typeId) {
  const radio = document.querySelector(`input[name="session_type"][value="${CSS.escape(typeId || "")}"]`);
  if (!radio) return { frequencies: [], max: 0 };
  const frequencies = (radio.dataset.seriesFrequencies || "").split(" ").filter(Boolean);
  return { frequencies, max: Number(radio.dataset.seriesMax || 0) };
}

/**
 * The repeat control for the booking form. `sessionType()` and `zone()` read the page's current
 * choice; `pick(slot)` is called when a time is chosen; `active()` says whether the form books a
 * series; `submit(client, idempotencyKey)` books it.
 */
export function seriesChoice({ slug, sessionType, zone }) {
  const box = $("series-options");
  let slot = null;
  let preview = null;
  let asked = 0;

  function frequency() {
    const checked = box.querySelector('input[name="repeat"]:checked');
    return checked && checked.value !== "once" ? checked.value : null;
  }

  function count() {
    return Number($("series-count").value);
  }

  function body() {
    return { session_type: sessionType(), start: slot.start, frequency: frequency(), count: count(), client_timezone: zone() };
  }

  function build() {
    const { frequencies, max } = optionsOf(sessionType());
    box.replaceChildren();
    box.hidden = frequencies.length === 0;
    if (box.hidden) return;
    const choices = el("fieldset", { class: "choices" }, el("legend", { text: "How often?" }));
    for (const value of ["once", ...frequencies]) {
      choices.append(
        el(
          "label",
          { class: "choice" },
          el("input", { type: "radio", name: "repeat", value, checked: value === "once" }),
          el("span", { text: value === "once" ? "Just this session" : LABELS[value] }),
        ),
      );
    }
    const number = el("input", {
      id: "series-count",
      type: "number",
      min: "2",
      max: String(max),
      value: String(Math.min(6, max)),
      inputmode: "numeric",
      "aria-describedby": "series-count-hint",
    });
    box.append(
      choices,
      el(
        "div",
        { id: "series-count-row", hidden: true },
        el("label", { for: "series-count", text: "Number of sessions" }),
        number,
        el("p", { id: "series-count-hint", class: "hint", text: `Up to ${max}.` }),
      ),
      el("div", { id: "series-dst-note", class: "alert warning", hidden: true }),
      el("ol", { id: "series-preview", class: "series-list", "aria-live": "polite", hidden: true }),
    );
    for (const radio of choices.querySelectorAll("input")) radio.addEventListener("change", refresh);
    number.addEventListener("change", refresh);
  }

  async function refresh() {
    if (box.hidden) return; // this session type is not offered as a series
    const on = frequency() !== null;
    $("series-count-row").hidden = !on;
    $("series-preview").hidden = !on;
    $("series-dst-note").hidden = true;
    $("confirm").textContent = "Confirm booking";
    preview = null;
    if (!on || !slot) return;
    if (!$("series-count").reportValidity()) return;
    const mine = ++asked;
    try {
      const shown = await api("POST", `/api/v1/therapists/${encodeURIComponent(slug)}/series/preview`, { body: body() });
      if (mine !== asked) return;
      preview = shown;
      render(shown);
    } catch (error) {
      if (mine !== asked) return;
      $("series-preview").replaceChildren(el("li", { text: explain(error) }));
    }
  }

  function render(shown) {
    const z = zone();
    const list = $("series-preview");
    list.replaceChildren(
      ...shown.occurrences.map((o) => {
        const item = el("li", { class: `occurrence ${o.status}` }, formatSpan(o.start, o.end, z));
        if (o.status !== "free") item.append(" — ", el("strong", { text: NOT_BOOKABLE[o.status] }));
        if (o.client_time_differs && o.status === "free") item.append(" *");
        return item;
      }),
    );
    const note = $("series-dst-note");
    if (shown.client_time_changes) {
      const first = shown.occurrences[0];
      note.textContent =
        `Daylight-saving time changes on different dates where you are and where your therapist is. ` +
        `The sessions marked * stay at ${formatTime(first.therapist_start, shown.timezone)} ` +
        `${shown.timezone.replaceAll("_", " ")} time, so for you they are at another time than ` +
        `${formatTime(first.start, z)}.`;
      note.hidden = false;
    }
    const free = shown.occurrences.filter((o) => o.status === "free").length;
    $("confirm").textContent = `Book ${free} sessions`;
  }

  async function submit(client, idempotencyKey) {
    const button = $("confirm");
    const errorBox = $("form-error");
    if (!preview) await refresh();
    if (!preview) return;
    button.disabled = true;
    try {
      const made = await api("POST", `/api/v1/therapists/${encodeURIComponent(slug)}/series`, {
        headers: { "Idempotency-Key": idempotencyKey },
        body: { ...body(), client },
      });
      confirmed(made);
    } catch (error) {
      errorBox.hidden = false;
      errorBox.textContent = explain(error);
      await refresh();
    } finally {
      button.disabled = false;
    }
  }

  function confirmed(made) {
    const z = zone();
    for (const id of ["step-type-card", "step-time-card", "details"]) $(id).hidden = true;
    const booked = made.occurrences.filter((o) => o.status === "confirmed");
    $("series-confirm-count").textContent = `${booked.length} sessions, ${LABELS[frequency()].toLowerCase()}:`;
    $("series-dates").replaceChildren(...booked.map((o) => el("li", { text: formatSpan(o.start, o.end, z) })));
    const skipped = made.occurrences.filter((o) => o.status !== "confirmed");
    $("series-skipped").hidden = skipped.length === 0;
    $("series-skipped").textContent = skipped.length
      ? `Not booked (not free): ${skipped.map((o) => formatDay(o.start, z)).join("; ")}.`
      : "";
    $("series-manage-url").value = made.manage_url;
    $("series-manage-link").href = made.manage_url;
    $("series-confirmation").hidden = false;
    window.scrollTo(0, 0);
    $("series-confirmed-title").focus();
  }

  build();
  return {
    pick(chosen) {
      slot = chosen;
      build();
      refresh();
    },
    active: () => frequency() !== null,
    submit,
  };
}
