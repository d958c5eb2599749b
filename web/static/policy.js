// The cancellation policy as a client reads it: on the booking page, the chosen session type's
// (from GET /api/v1/therapists/{slug}); on the manage page, the version the booking was made under
// and, inside the late-cancellation window, what cancelling now will cost (the booking's cancel_now).

import { api } from "./api.js";
import { $, el } from "./dom.js";

/** "€60.00" in the reader's locale; the plain amount and code where the browser lacks the currency. */
export function formatFee(fee) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: fee.currency }).format(Number(fee.amount));
  } catch {
    return `${fee.amount} ${fee.currency}`;
  }
}

function windowText(hours) {
  if (hours % 24 === 0 && hours >= 48) return `${hours / 24} days`;
  return hours === 1 ? "1 hour" : `${hours} hours`;
}

/** The policy's sentences: its text, the window and the fees. */
function policyNodes(policy) {
  const nodes = [el("h3", { text: "Cancellation policy" })];
  if (policy.text) nodes.push(el("p", { class: "policy-text", text: policy.text }));
  const rules = [];
  if (policy.window_hours > 0) {
    let rule = `Cancelling less than ${windowText(policy.window_hours)} before the start is a late cancellation`;
    rule += policy.late_cancel_fee ? `: a fee of ${formatFee(policy.late_cancel_fee)} applies.` : ".";
    rules.push(rule);
  } else {
    rules.push("You can cancel without a fee until the session starts.");
  }
  if (policy.no_show_fee) rules.push(`A session missed without cancelling: a fee of ${formatFee(policy.no_show_fee)}.`);
  nodes.push(el("ul", { class: "policy-rules" }, ...rules.map((text) => el("li", { text }))));
  return nodes;
}

/** Show `policy` in `box` (hidden when there is none). */
export function renderPolicy(box, policy) {
  if (!box) return;
  box.replaceChildren(...(policy ? policyNodes(policy) : []));
  box.hidden = !policy;
}

/** The booking page: the policy of whichever session type is chosen, before the client books. */
export async function startBookingPolicy(slug) {
  const box = $("policy");
  if (!box) return;
  let byType;
  try {
    const therapist = await api("GET", `/api/v1/therapists/${encodeURIComponent(slug)}`);
    byType = new Map(therapist.session_types.map((t) => [t.id, t.policy]));
  } catch {
    return; // the page still books; the policy also shows on the manage page
  }
  const show = () => {
    const checked = document.querySelector('input[name="session_type"]:checked');
    renderPolicy(box, checked ? byType.get(checked.value) : null);
  };
  for (const radio of document.querySelectorAll('input[name="session_type"]')) {
    radio.addEventListener("change", show);
  }
  show();
}

/** The sentence for cancelling now, or null when cancelling now is not late. */
export function lateWarning(cancelNow) {
  if (!cancelNow || !cancelNow.late) return null;
  if (cancelNow.fee) {
    return `Cancelling now is a late cancellation: under the policy a fee of ${formatFee(cancelNow.fee)} applies.`;
  }
  return "Cancelling now is a late cancellation under the policy.";
}

/** The manage page: the booking's policy, and the late-fee warning while cancelling now is late. */
export function showManagePolicy(booking) {
  const active = booking.status === "confirmed";
  renderPolicy($("policy"), active ? booking.policy : null);
  const warning = active ? lateWarning(booking.cancel_now) : null;
  for (const id of ["policy-late", "cancel-fee"]) {
    const box = $(id);
    if (!box) continue;
    box.textContent = warning || "";
    box.hidden = !warning;
  }
}

const STATUS_LABELS = {
  confirmed: "Confirmed",
  cancelled: "Cancelled",
  late_cancelled: "Cancelled late (inside the cancellation window)",
  attended: "Attended",
  no_show: "Missed",
};

/** A booking's status as a client reads it. */
export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}
