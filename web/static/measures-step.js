// The join page's questionnaire step (issue 11, outcome measures). A placeholder until the measures
// module lands: nothing is ever due, so it resolves at once and the join goes on to the waiting room.

/**
 * Show the measures due before this session, one question per screen, and resolve once they are
 * done (or at once when none is due).
 * @param {{bookingId: string, key: string, mount: HTMLElement}} options
 */
export async function runMeasures({ bookingId, key, mount }) {
  void bookingId;
  void key;
  void mount;
}
