// Expand the recurring events of an iCalendar stream from stdin with ical.js (Thunderbird's parser),
// VTIMEZONEs registered from the stream itself, and print every occurrence's start and end as JSON.
// Used by the Python tests to check that a series' RRULE/EXDATE reads to the instants Teleroom booked.
import ICAL from "ical.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const calendar = new ICAL.Component(ICAL.parse(Buffer.concat(chunks).toString("utf8")));
for (const vtimezone of calendar.getAllSubcomponents("vtimezone")) {
  ICAL.TimezoneService.register(vtimezone);
}
const occurrences = [];
for (const vevent of calendar.getAllSubcomponents("vevent")) {
  const event = new ICAL.Event(vevent);
  if (!event.isRecurring()) {
    occurrences.push({ uid: event.uid, start: event.startDate.toJSDate().toISOString(), end: event.endDate.toJSDate().toISOString() });
    continue;
  }
  const iterator = event.iterator();
  for (let next = iterator.next(), guard = 0; next && guard < 1000; next = iterator.next(), guard++) {
    const details = event.getOccurrenceDetails(next);
    occurrences.push({
      uid: event.uid,
      start: details.startDate.toJSDate().toISOString(),
      end: details.endDate.toJSDate().toISOString(),
    });
  }
}
process.stdout.write(JSON.stringify(occurrences));
