// The weekly-hours and date-overrides editor on the dashboard (GET/PUT .../availability).
// An end time of 00:00 means midnight at the end of the day (the API's 24:00).
import { $ } from "./dom.js";

const DAYS = [
  ["mon", "Monday"],
  ["tue", "Tuesday"],
  ["wed", "Wednesday"],
  ["thu", "Thursday"],
  ["fri", "Friday"],
  ["sat", "Saturday"],
  ["sun", "Sunday"],
];
let counter = 0;

function field(labelText, type, value) {
  const wrap = document.createElement("div");
  const id = `av-${++counter}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = labelText;
  const input = document.createElement("input");
  input.id = id;
  input.type = type;
  input.value = value;
  input.required = true;
  wrap.append(label, input);
  return [wrap, input];
}

function button(text, className, ariaLabel) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
  return b;
}

function intervalRow(where, start = "09:00", end = "17:00") {
  const row = document.createElement("div");
  row.className = "interval";
  const [from] = field("From", "time", start);
  const [to] = field("To", "time", end === "24:00" ? "00:00" : end);
  const remove = button("Remove", "secondary", `Remove these hours on ${where}`);
  remove.addEventListener("click", () => {
    const list = row.parentElement;
    row.remove();
    emptyNote(list);
  });
  row.append(from, to, remove);
  return row;
}

function emptyNote(list) {
  const note = list.querySelector(".none");
  if (note) note.hidden = list.querySelectorAll(".interval").length > 0;
}

function intervalList(where, intervals, emptyText) {
  const list = document.createElement("div");
  list.className = "stack intervals";
  const none = document.createElement("p");
  none.className = "none muted";
  none.textContent = emptyText;
  list.append(none);
  for (const iv of intervals) list.append(intervalRow(where, iv.start, iv.end));
  emptyNote(list);
  return list;
}

function dayBlock(key, name, intervals) {
  const block = document.createElement("div");
  block.className = "day";
  block.dataset.day = key;
  const head = document.createElement("div");
  head.className = "day-head";
  const title = document.createElement("span");
  title.className = "day-name";
  title.textContent = name;
  const add = button("Add hours", "secondary", `Add hours on ${name}`);
  head.append(title, add);
  const list = intervalList(name, intervals, "Not available");
  add.addEventListener("click", () => {
    list.append(intervalRow(name));
    emptyNote(list);
    list.querySelector(".interval:last-child input")?.focus();
  });
  block.append(head, list);
  return block;
}

function overrideBlock(date, intervals) {
  const block = document.createElement("div");
  block.className = "day override";
  const head = document.createElement("div");
  head.className = "day-head";
  const [dateField, dateInput] = field("Date", "date", date);
  dateField.className = "override-date";
  const where = () => dateInput.value || "this date";
  const add = button("Add hours", "secondary", "Add hours on this date");
  const remove = button("Remove date", "secondary");
  head.append(dateField, add, remove);
  const list = intervalList(where(), intervals, "Away all day");
  add.addEventListener("click", () => {
    list.append(intervalRow(where()));
    emptyNote(list);
  });
  remove.addEventListener("click", () => block.remove());
  block.append(head, list);
  return [block, dateInput];
}

function readIntervals(list) {
  return [...list.querySelectorAll(".interval")].map((row) => {
    const [start, end] = [...row.querySelectorAll("input")].map((i) => i.value);
    return { start, end: end === "00:00" ? "24:00" : end };
  });
}

export async function startAvailability({ slug, call, onSaved }) {
  const weekly = $("weekly");
  const overrides = $("overrides");
  const message = $("hours-message");
  const save = $("save-hours");
  const path = `/api/v1/therapists/${slug}/availability`;
  let timezone = $("dashboard").dataset.timezone;

  function say(text, isError = false) {
    message.textContent = text;
    message.className = isError ? "alert error" : "alert";
  }

  try {
    const current = await call("GET", path);
    timezone = current.timezone;
    $("hours-zone").textContent = timezone;
    weekly.replaceChildren(
      ...DAYS.map(([key, name]) => dayBlock(key, name, current.weekly.filter((rule) => rule.day === key))),
    );
    for (const o of current.overrides) overrides.append(overrideBlock(o.date, o.intervals)[0]);
    weekly.setAttribute("aria-busy", "false");
  } catch (error) {
    weekly.replaceChildren();
    say(error.message || "Your hours could not be loaded.", true);
    return;
  }

  $("add-override").addEventListener("click", () => {
    const [block, dateInput] = overrideBlock("", []);
    overrides.append(block);
    dateInput.focus();
  });

  save.addEventListener("click", async () => {
    const body = {
      timezone,
      weekly: [...weekly.querySelectorAll(".day")].flatMap((block) =>
        readIntervals(block).map((iv) => ({ day: block.dataset.day, ...iv })),
      ),
      overrides: [...overrides.querySelectorAll(".override")].map((block) => ({
        date: block.querySelector('input[type="date"]').value,
        intervals: readIntervals(block),
      })),
    };
    if (body.overrides.some((o) => !o.date)) {
      say("Pick a date for each override, or remove it.", true);
      return;
    }
    save.disabled = true;
    try {
      const saved = await call("PUT", path, { body });
      const outside = saved.outside_hours?.length ?? 0;
      const sessions = outside === 1 ? "1 booked session is" : `${outside} booked sessions are`;
      say(outside ? `Your hours are saved. ${sessions} now outside them: see “Sessions outside your hours”.` : "Your hours are saved.");
      onSaved?.(saved);
    } catch (error) {
      say(error.message || "Your hours could not be saved.", true);
    } finally {
      save.disabled = false;
    }
  });
}
