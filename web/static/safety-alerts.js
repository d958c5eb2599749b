// "Mark reviewed" on a safety alert (a client's answers need review), wherever the therapist sees one:
// a button with data-review="<alert id>" inside an element with data-alert posts the review (with the
// page's CSRF token, api.js), then the alert leaves the page and `status` says so.
import { api, explain } from "./api.js";

/** Wire every data-review button under `root`. */
export function bindReviewButtons(root, slug, status) {
  if (!root) return;
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-review]");
    if (!button) return;
    button.disabled = true;
    try {
      await api("POST", `/api/v1/therapists/${slug}/safety-alerts/${button.dataset.review}/review`);
      button.closest("[data-alert]").remove();
      if (status) status.textContent = "Marked reviewed.";
    } catch (error) {
      if (status) status.textContent = explain(error);
      button.disabled = false;
    }
  });
}
