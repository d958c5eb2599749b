// "Sessions outside your hours" on the dashboard: booked sessions that the therapist's hours or a
// day off no longer cover. The server renders the list; saving hours answers with the new list
// (`outside_hours` in the PUT availability answer), which replaces it here; each can be cancelled.
import { explain } from "./api.js";
import { $, el } from "./dom.js";

const section = $("outside-hours");
const list = $("outside-hours-list");
const timezone = $("dashboard").dataset.timezone;
const dayFormat = new Intl.DateTimeFormat("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: timezone });
const timeFormat = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: timezone });

function item(booking) {
  const start = new Date(booking.start);
  const day = dayFormat.format(start).replace(",", "");
  const time = `${timeFormat.format(start)}–${timeFormat.format(new Date(booking.end))}`;
  const who = booking.client.name;
  return el(
    "li",
    { class: "session", "data-booking": booking.id },
    el("span", { class: "session-day", text: day }),
    " ",
    el("strong", { text: time }),
    ` · ${booking.session_type.name} · ${who} `,
    el("button", {
      type: "button",
      class: "secondary",
      "data-cancel-booking": booking.id,
      "aria-label": `Cancel the session with ${who} on ${day} at ${time}`,
      text: "Cancel session",
    }),
  );
}

/** Replace the list with `bookings` (BookingOut objects); the section shows only when there are some. */
export function showOutsideHours(bookings) {
  list.replaceChildren(...bookings.map(item));
  section.hidden = bookings.length === 0;
}

export function startOutsideHours({ call, announce }) {
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-cancel-booking]");
    if (!button) return;
    const row = button.closest("li");
    if (!window.confirm(`${button.getAttribute("aria-label")}?`)) return;
    button.disabled = true;
    try {
      await call("POST", `/api/v1/bookings/${button.dataset.cancelBooking}/cancel`, { body: {} });
      row.remove();
      section.hidden = list.children.length === 0;
      announce("Session cancelled.");
    } catch (error) {
      button.disabled = false;
      announce(explain(error));
      row.append(el("span", { class: "alert error", role: "alert", text: explain(error) }));
    }
  });
}
