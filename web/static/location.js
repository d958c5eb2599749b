// Where the client will be: remembered on this device only (never sent with the booking), offered
// again on the join page, where the client confirms it for each session.

const PREFIX = "teleroom.location.";

export function rememberLocation(bookingId, place) {
  try {
    localStorage.setItem(PREFIX + bookingId, place);
  } catch {
    // Private browsing may refuse storage; the join page simply asks again.
  }
}

export function recallLocation(bookingId) {
  try {
    return localStorage.getItem(PREFIX + bookingId) || "";
  } catch {
    return "";
  }
}
