// Parse an iCalendar stream from stdin with ical.js (Thunderbird's parser) and print its events as JSON.
// Used by the Python tests as an independent check of what Teleroom renders.
import ICAL from "ical.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const text = Buffer.concat(chunks).toString("utf8");

const calendar = new ICAL.Component(ICAL.parse(text));
const events = calendar.getAllSubcomponents("vevent").map((vevent) => {
  const event = new ICAL.Event(vevent);
  return {
    uid: event.uid,
    summary: event.summary,
    description: event.description,
    start: event.startDate.toJSDate().toISOString(),
    end: event.endDate.toJSDate().toISOString(),
    sequence: event.sequence,
    status: vevent.getFirstPropertyValue("status"),
  };
});
const props = {};
for (const name of ["prodid", "version", "x-wr-calname", "refresh-interval", "x-published-ttl", "method"]) {
  const value = calendar.getFirstPropertyValue(name);
  props[name] = value === null ? null : value.toString();
}
process.stdout.write(JSON.stringify({ calendar: props, events }));
