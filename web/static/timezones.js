// Time zones: the visitor's own zone by default, a select to change it, and formatting in a zone.

export function detectedZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

function allZones(extra) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  const set = new Set(zones);
  for (const z of extra) if (z) set.add(z);
  return [...set].sort();
}

/** Fill `select` with zones, pick `initial`, and call `onChange(zone)` when the visitor changes it. */
export function zonePicker(select, initial, onChange, extra = []) {
  const zones = allZones([initial, ...extra]);
  const frag = document.createDocumentFragment();
  for (const z of zones) {
    const option = document.createElement("option");
    option.value = z;
    option.textContent = z.replaceAll("_", " ");
    frag.append(option);
  }
  select.replaceChildren(frag);
  select.value = initial;
  select.addEventListener("change", () => onChange(select.value));
}

export function formatTime(iso, zone) {
  return new Intl.DateTimeFormat(undefined, { timeZone: zone, hour: "numeric", minute: "2-digit" }).format(new Date(iso));
}

export function formatDay(iso, zone) {
  return new Intl.DateTimeFormat(undefined, {
    timeZone: zone,
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
  }).format(new Date(iso));
}

/** "Tuesday, 12 May 2026, 10:00 – 10:50 (Europe/Berlin)" */
export function formatSpan(startIso, endIso, zone) {
  return `${formatDay(startIso, zone)}, ${formatTime(startIso, zone)} – ${formatTime(endIso, zone)} (${zone.replaceAll("_", " ")})`;
}

/** Today's date in `zone` as YYYY-MM-DD. */
export function todayIn(zone) {
  return dateKey(new Date(), zone);
}

export function dateKey(date, zone) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(date)
    .reduce((acc, p) => ({ ...acc, [p.type]: p.value }), {});
  return `${parts.year}-${parts.month}-${parts.day}`;
}
