// The therapist's room: the client's open safety alerts (a banner with "Mark reviewed") and the latest
// score and band of each questionnaire, from GET /api/v1/bookings/{id}/measure-summary (the dashboard
// session; reading it is audited). Marking reviewed posts with the page's CSRF token (api.js).

import { api, explain } from "./api.js";
import { el } from "./dom.js";

const DIRECTION = { improvement: "reliable improvement", deterioration: "reliable deterioration" };

function marks(point) {
  const found = [];
  if (point.reliable_change) found.push(DIRECTION[point.reliable_change]);
  if (point.response) found.push("response");
  if (point.remission) found.push("remission");
  return found;
}

function day(iso) {
  return new Date(iso).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

function alertBanner(alert, slug, onReviewed) {
  const box = el("div", { class: "alert warning stack measure-alert", role: "alert", "data-alert": alert.id });
  const button = el("button", { type: "button", text: "Mark reviewed" });
  const said = el("p", { class: "hint", role: "status" });
  box.append(
    el("p", {}, el("strong", { text: "This client's answers need review." })),
    el("p", {
      text: `On ${day(alert.created_at)} they answered above 0 on the question about thoughts of being better off dead or of self-harm (${alert.instrument.toUpperCase()}).`,
    }),
    el("div", { class: "row" }, button),
    said,
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", `/api/v1/therapists/${slug}/safety-alerts/${alert.id}/review`);
      onReviewed(box);
    } catch (error) {
      said.textContent = explain(error);
      button.disabled = false;
    }
  });
  return box;
}

async function fill(bookingId, mount) {
  let summary;
  let booking;
  try {
    [summary, booking] = await Promise.all([
      api("GET", `/api/v1/bookings/${bookingId}/measure-summary`),
      api("GET", `/api/v1/bookings/${bookingId}`),
    ]);
  } catch {
    return; // the room works without it
  }
  if (!summary.alerts.length && !summary.latest.length) return;
  const slug = booking.therapist.slug;
  const title = el("h2", { id: "measures-panel-title", text: "Questionnaires" });
  const alerts = el("div", { class: "stack", id: "measure-alerts" });
  const reviewedNote = el("p", { role: "status", class: "muted" });
  for (const alert of summary.alerts) {
    alerts.append(
      alertBanner(alert, slug, (box) => {
        box.remove();
        reviewedNote.textContent = "Marked reviewed.";
      }),
    );
  }
  mount.replaceChildren(title, alerts, reviewedNote);
  if (summary.latest.length) {
    const list = el("ul", { class: "measure-latest" });
    for (const item of summary.latest) {
      const extra = marks(item.latest);
      list.append(
        el(
          "li",
          { "data-instrument": item.instrument },
          el("strong", { text: `${item.title}: ${item.latest.total}` }),
          ` ${item.latest.band}, ${day(item.latest.completed_at)}`,
          extra.length ? ` (${extra.join(", ")})` : "",
        ),
      );
    }
    mount.append(
      el("p", { class: "muted", text: "Latest scores:" }),
      list,
      el(
        "p",
        {},
        el("a", {
          href: `/dashboard/clients/${summary.client_id}#measures`,
          target: "_blank",
          rel: "noopener",
          text: "Trend and answers (opens in a new tab)",
        }),
      ),
    );
  }
  mount.setAttribute("aria-labelledby", title.id);
  mount.hidden = false;
}

/**
 * Fill the measures panel of the room for this booking: open alerts first, then the latest scores.
 * It is read again whenever the waiting list changes, since a client answers just before they wait.
 * @param {{bookingId: string, mount: HTMLElement}} options
 */
export async function showMeasures({ bookingId, mount }) {
  await fill(bookingId, mount);
  const queue = document.getElementById("queue");
  if (!queue) return;
  let pending = null;
  new MutationObserver(() => {
    clearTimeout(pending);
    pending = setTimeout(() => fill(bookingId, mount), 300);
  }).observe(queue, { childList: true });
}
