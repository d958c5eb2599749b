// The therapist's room: alerts and latest scores of outcome measures (issue 11). A placeholder until
// the measures module lands: it shows nothing and leaves its mount point hidden.

/**
 * Fill the measures panel of the room for this booking.
 * @param {{bookingId: string, mount: HTMLElement}} options
 */
export async function showMeasures({ bookingId, mount }) {
  void bookingId;
  void mount;
}
