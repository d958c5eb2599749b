// A client's links, /join/<id>#k=<key> and /manage/<id>#k=<key>: the booking key rides in the URL
// fragment, which browsers never send to a server, a log or a Referer. The page reads it here and
// sends it in the Authorization header (api.js).

import { api, explain, fragmentSecret } from "./api.js";
import { fail } from "./dom.js";

/** The booking key (or a series' key, which opens each of its sessions) from `#k=...`, or null. */
export function bookingKey() {
  return fragmentSecret("k", /^tr[kw]_/);
}

/** A sentence for an error on a booking link: an unknown booking or a wrong key reads the same. */
export function linkError(error, what) {
  if (error.status === 401 || error.status === 404) return `We couldn't find this ${what}. Please check the link.`;
  return explain(error);
}

/**
 * The booking `bookingId` as its `key` may see it, or null once the page says why not (`what` names
 * it in that sentence: "booking", "session").
 */
export async function loadBooking(bookingId, key, what) {
  if (!key) {
    fail("This link is missing its private key. Please open the whole link from your confirmation.");
    return null;
  }
  try {
    return await api("GET", `/api/v1/bookings/${bookingId}`, { key });
  } catch (error) {
    fail(linkError(error, what));
    return null;
  }
}
