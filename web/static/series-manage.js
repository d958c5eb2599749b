// The manage page of a session that belongs to a standing series: every session of the series with
// its status; cancel one, it and all following, or the whole series; change one (its own manage page,
// opened with the same series key). Cancelling asks once before it acts.

import { api, explain } from "./api.js";
import { $, el, fail } from "./dom.js";
import { formatSpan } from "./timezones.js";

const STATUS = {
  confirmed: "Booked",
  cancelled: "Cancelled",
  late_cancelled: "Cancelled (late)",
  attended: "Attended",
  no_show: "Missed",
  not_booked: "Not booked",
};
const SCOPES = {
  one: "Cancel this session?",
  following: "Cancel this session and all after it?",
  all: "Cancel every remaining session of the series?",
};

/** Show the series `booking` belongs to, in `zone`, using the link's `key`. */
export async function showSeries(booking, key, zone) {
  const section = $("series");
  let series;
  try {
    series = await api("GET", `/api/v1/series/${booking.series_id}`, { key });
  } catch (error) {
    fail(explain(error));
    return;
  }
  const now = Date.now();

  function ask(scope, bookingId, when) {
    const box = $("series-confirm");
    box.replaceChildren(
      el("h3", { id: "series-confirm-title", tabindex: "-1", text: SCOPES[scope] }),
      el("p", { text: when ? `From ${when}. The times will be freed for others.` : "The times will be freed for others." }),
      el(
        "div",
        { class: "row" },
        el("button", { type: "button", class: "danger", id: "series-cancel-yes", text: "Yes, cancel" }),
        el("button", { type: "button", class: "secondary", id: "series-cancel-no", text: "Keep them" }),
      ),
    );
    box.hidden = false;
    $("series-cancel-no").addEventListener("click", () => {
      box.hidden = true;
    });
    $("series-cancel-yes").addEventListener("click", async (event) => {
      event.currentTarget.disabled = true;
      try {
        const body = scope === "all" ? { scope } : { scope, booking: bookingId };
        series = await api("POST", `/api/v1/series/${series.id}/cancel`, { key, body });
        box.hidden = true;
        render();
        $("status").textContent = scope === "one" ? "That session is cancelled." : "Those sessions are cancelled.";
      } catch (error) {
        fail(explain(error));
      }
    });
    $("series-confirm-title").focus();
  }

  function render() {
    const list = $("series-sessions");
    list.replaceChildren(
      ...series.occurrences.map((o) => {
        const when = formatSpan(o.start, o.end, zone);
        const item = el(
          "li",
          { class: `occurrence ${o.status}`, "data-booking": o.booking_id || "" },
          el("span", { class: "when", text: when }),
          " ",
          el("span", { class: "badge", text: STATUS[o.status] || o.status }),
        );
        const ahead = new Date(o.end).getTime() > now;
        if (o.status === "confirmed" && ahead) {
          const actions = el("span", { class: "row" });
          if (o.booking_id !== booking.id) {
            actions.append(
              el("a", { href: `/manage/${o.booking_id}#k=${encodeURIComponent(key)}`, text: "Change", "aria-label": `Change ${when}` }),
            );
          }
          const one = el("button", { type: "button", class: "secondary", text: "Cancel", "aria-label": `Cancel ${when}` });
          one.addEventListener("click", () => ask("one", o.booking_id, when));
          const following = el("button", {
            type: "button",
            class: "secondary",
            text: "Cancel this and following",
            "aria-label": `Cancel ${when} and all following`,
          });
          following.addEventListener("click", () => ask("following", o.booking_id, when));
          actions.append(one, following);
          item.append(actions);
        }
        return item;
      }),
    );
    const anyAhead = series.occurrences.some((o) => o.status === "confirmed" && new Date(o.end).getTime() > now);
    $("series-cancel-all").hidden = !anyAhead;
  }

  $("series-title").textContent = `All sessions of this series (${series.frequency === "weekly" ? "every week" : "every 2 weeks"})`;
  $("series-cancel-all").addEventListener("click", () => ask("all", null, null));
  render();
  section.hidden = false;
}
