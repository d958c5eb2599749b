// The dashboard's "Needs review": late cancellations and no-shows with a fee (charge or waive, with a
// reason), started sessions to mark attended or no-show beside what attendance shows, and the
// therapist's fee options. Reading the list also marks attended every ended session the attendance
// record shows happened (GET /api/v1/therapists/{slug}/review, see broker/outcomes.py).

import { explain } from "./api.js";
import { $, el } from "./dom.js";
import { formatFee } from "./policy.js";

const KIND = { late_cancelled: "Late cancellation", no_show: "No-show" };

function when(item, zone) {
  const fmt = new Intl.DateTimeFormat(undefined, {
    timeZone: zone,
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
  });
  return fmt.format(new Date(item.start));
}

/** What attendance shows, in one sentence. */
export function evidenceText(evidence) {
  if (!evidence) return "";
  if (!evidence.client_joined) return "The client never joined.";
  const minutes = Math.round(evidence.client_minutes);
  let text = `The client joined for ${minutes} minute${minutes === 1 ? "" : "s"}`;
  if (evidence.together_minutes > 0) text += `, ${Math.round(evidence.together_minutes)} of them with you`;
  else if (!evidence.therapist_joined) text += "; you did not join";
  return `${text}.`;
}

export function startReview({ slug, call, zone }) {
  const body = $("review-body");
  const status = $("review-status");
  if (!body) return;

  function say(text) {
    status.textContent = text;
  }

  function feeItem(item) {
    const reasonId = `reason-${item.booking_id}`;
    const what = `${KIND[item.status]} · fee ${formatFee(item.fee)}`;
    const li = el(
      "li",
      { class: "review-item", "data-booking": item.booking_id },
      el("p", {}, el("strong", { text: when(item, zone) }), ` · ${item.client_name} · ${item.session_type}`),
      el("p", { text: what }),
    );
    if (item.evidence) li.append(el("p", { class: "hint", text: evidenceText(item.evidence) }));
    if (item.suggestion) li.append(el("p", { class: "hint", text: `Suggested: waive. ${item.suggestion.reason}` }));
    const reason = el("input", { id: reasonId, maxlength: "500", required: true, value: item.suggestion?.reason });
    li.append(
      el("div", {}, el("label", { for: reasonId, text: `Reason (${item.client_name})` }), reason),
      el(
        "div",
        { class: "row" },
        el("button", { type: "button", "data-decision": "charge", text: "Charge" }),
        el("button", { type: "button", class: "secondary", "data-decision": "waive", text: "Waive" }),
      ),
    );
    return li;
  }

  function outcomeItem(item) {
    return el(
      "li",
      { class: "review-item", "data-booking": item.booking_id },
      el("p", {}, el("strong", { text: when(item, zone) }), ` · ${item.client_name} · ${item.session_type}`),
      el("p", { class: "hint", text: evidenceText(item.evidence) }),
      el(
        "div",
        { class: "row" },
        el("button", { type: "button", "data-outcome": "attended", text: "Attended" }),
        el("button", { type: "button", class: "secondary", "data-outcome": "no_show", text: "No-show" }),
      ),
    );
  }

  function render(review) {
    body.replaceChildren();
    body.removeAttribute("aria-busy");
    body.append(el("h3", { text: "Fees to decide" }));
    body.append(
      review.fees.length
        ? el("ul", { class: "plain review-list", id: "review-fees" }, ...review.fees.map(feeItem))
        : el("p", { class: "muted", text: "No late cancellations or no-shows waiting for a decision." }),
    );
    body.append(el("h3", { text: "Sessions to mark" }));
    body.append(
      review.outcomes.length
        ? el("ul", { class: "plain review-list", id: "review-outcomes" }, ...review.outcomes.map(outcomeItem))
        : el("p", { class: "muted", text: "Every past session has its outcome." }),
    );
    $("opt-waive-first").checked = review.settings.waive_first_late_cancellation;
    $("opt-suggest-rebooked").checked = review.settings.suggest_waiver_when_rebooked;
  }

  async function load() {
    try {
      render(await call("GET", `/api/v1/therapists/${slug}/review`));
    } catch (error) {
      body.replaceChildren(el("p", { class: "alert error", role: "alert", text: explain(error) }));
    }
  }

  body.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-decision], button[data-outcome]");
    if (!button) return;
    const li = button.closest("li");
    const id = li.dataset.booking;
    li.querySelector(".alert")?.remove();
    try {
      if (button.dataset.decision) {
        const reason = li.querySelector("input").value.trim();
        if (!reason) {
          li.append(el("p", { class: "alert error", role: "alert", text: "Give a reason, for the record." }));
          li.querySelector("input").focus();
          return;
        }
        button.disabled = true;
        await call("POST", `/api/v1/bookings/${id}/fee-decision`, {
          body: { decision: button.dataset.decision, reason },
        });
        say(button.dataset.decision === "waive" ? "Fee waived." : "Fee marked to charge.");
      } else {
        button.disabled = true;
        await call("POST", `/api/v1/bookings/${id}/outcome`, { body: { status: button.dataset.outcome } });
        say(button.dataset.outcome === "attended" ? "Marked attended." : "Marked as a no-show.");
      }
      await load();
      $("review-title").focus();
    } catch (error) {
      button.disabled = false;
      li.append(el("p", { class: "alert error", role: "alert", text: explain(error) }));
    }
  });

  // The export's default range: the start of last month until today, in the therapist's zone.
  const today = new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(new Date());
  const [year, month] = today.split("-").map(Number);
  const from = month === 1 ? `${year - 1}-12-01` : `${year}-${String(month - 1).padStart(2, "0")}-01`;
  if (!$("export-from").value) $("export-from").value = from;
  if (!$("export-to").value) $("export-to").value = today;

  for (const id of ["opt-waive-first", "opt-suggest-rebooked"]) {
    $(id).addEventListener("change", async () => {
      try {
        await call("PUT", `/api/v1/therapists/${slug}/policy-settings`, {
          body: {
            waive_first_late_cancellation: $("opt-waive-first").checked,
            suggest_waiver_when_rebooked: $("opt-suggest-rebooked").checked,
          },
        });
        say("Fee options saved.");
        await load();
      } catch (error) {
        say(explain(error));
      }
    });
  }

  load();
}
