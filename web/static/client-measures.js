// A client's questionnaires on their page: save which are asked and how often (PUT or DELETE
// .../clients/{id}/measures/{instrument} for each changed one), and mark alerts reviewed.
import { api, ApiError, explain } from "./api.js";
import { $ } from "./dom.js";
import { bindReviewButtons } from "./safety-alerts.js";

const root = $("client-page");
const form = $("measures-form");
const message = $("measures-message");
const base = `/api/v1/therapists/${root.dataset.slug}/clients/${root.dataset.client}/measures`;

function say(text, isError) {
  message.className = isError ? "alert error" : "alert";
  message.setAttribute("role", isError ? "alert" : "status");
  message.textContent = text;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  const changed = [...form.querySelectorAll("select")].filter((s) => s.value !== s.dataset.saved);
  if (!changed.length) {
    say("Nothing to change.", false);
    return;
  }
  button.disabled = true;
  try {
    for (const select of changed) {
      const path = `${base}/${encodeURIComponent(select.name)}`;
      if (select.value) await api("PUT", path, { body: { schedule: select.value } });
      else await api("DELETE", path);
      select.dataset.saved = select.value;
    }
    say("Saved. Your client is asked before their next session.", false);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      location.reload();
      return;
    }
    say(explain(error), true);
  } finally {
    button.disabled = false;
  }
});

bindReviewButtons($("measure-alerts"), root.dataset.slug, $("measure-alerts-status"));
