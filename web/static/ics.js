// "Add to calendar": the .ics file comes from GET /api/v1/bookings/{id}/ics with the booking key in
// a header (never in a URL), and is handed to the browser as a Blob download. If the server has no
// such file to give, we write a minimal RFC 5545 event here so the button still works.

import { api } from "./api.js";

function stamp(iso) {
  return new Date(iso).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

function escapeText(text) {
  return text.replace(/\\/g, "\\\\").replace(/;/g, "\\;").replace(/,/g, "\\,").replace(/\n/g, "\\n");
}

// RFC 5545 section 3.1: lines longer than 75 octets continue on the next line after a space.
function fold(line) {
  const parts = [];
  let rest = line;
  while (rest.length > 74) {
    parts.push(rest.slice(0, 74));
    rest = rest.slice(74);
  }
  parts.push(rest);
  return parts.join("\r\n ");
}

function localEvent(bookingId, { start, end, title, url }) {
  const lines = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//Teleroom//Booking page//EN",
    "BEGIN:VEVENT",
    `UID:${bookingId}@teleroom`,
    `DTSTAMP:${stamp(new Date().toISOString())}`,
    `DTSTART:${stamp(start)}`,
    `DTEND:${stamp(end)}`,
    `SUMMARY:${escapeText(title)}`,
    `DESCRIPTION:${escapeText(`Join from this link: ${url}`)}`,
    "END:VEVENT",
    "END:VCALENDAR",
  ];
  return lines.map(fold).join("\r\n") + "\r\n";
}

function save(blob, name) {
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export async function downloadIcs(bookingId, key, fallback) {
  let blob = null;
  try {
    const response = await api("GET", `/api/v1/bookings/${bookingId}/ics`, {
      key,
      raw: true,
      headers: { Accept: "text/calendar" },
    });
    blob = await response.blob();
  } catch {
    blob = new Blob([localEvent(bookingId, fallback)], { type: "text/calendar" });
  }
  save(blob, "teleroom-session.ics");
}
