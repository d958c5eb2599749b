// A month view of free slots: days with free times are buttons, the chosen day lists its times.
// Slots come from GET /api/v1/therapists/{slug}/slots in the visitor's zone, so each slot's
// RFC 3339 string already carries the local date in its first ten characters.

import { api, explain } from "./api.js";
import { el } from "./dom.js";
import { formatTime, todayIn } from "./timezones.js";

const MONTHS_AHEAD = 12;

function utcDate(key) {
  const [y, m, d] = key.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function fmt(date, options) {
  return new Intl.DateTimeFormat(undefined, { timeZone: "UTC", ...options }).format(date);
}

export class SlotCalendar {
  /** `onPick(slot)` is called with {start, end} when the visitor chooses a time. */
  constructor(root, { slug, sessionType, zone, onPick }) {
    this.root = root;
    this.slug = slug;
    this.sessionType = sessionType;
    this.zone = zone;
    this.onPick = onPick;
    this.byDay = new Map();
    this.selectedDay = null;
    this.loads = 0;
    this.autoAdvanced = 0;
    const today = todayIn(zone);
    this.year = Number(today.slice(0, 4));
    this.month = Number(today.slice(5, 7));
    this.build();
  }

  build() {
    this.prev = el("button", { type: "button", class: "secondary icon", "aria-label": "Previous month", text: "‹" });
    this.next = el("button", { type: "button", class: "secondary icon", "aria-label": "Next month", text: "›" });
    this.title = el("h3", { class: "cal-title", "aria-live": "polite" });
    this.status = el("p", { class: "cal-status muted", role: "status" });
    this.grid = el("div", { class: "cal-grid-wrap" });
    this.times = el("div", { class: "cal-times" });
    this.prev.addEventListener("click", () => this.shift(-1));
    this.next.addEventListener("click", () => this.shift(1));
    this.root.replaceChildren(
      el("div", { class: "cal-head" }, this.prev, this.title, this.next),
      this.status,
      this.grid,
      this.times,
    );
  }

  setZone(zone) {
    this.zone = zone;
    this.load();
  }

  setSessionType(id) {
    this.sessionType = id;
    this.load();
  }

  monthOffset() {
    const today = todayIn(this.zone);
    return (this.year - Number(today.slice(0, 4))) * 12 + (this.month - Number(today.slice(5, 7)));
  }

  shift(delta) {
    const index = this.year * 12 + (this.month - 1) + delta;
    this.year = Math.floor(index / 12);
    this.month = (index % 12) + 1;
    this.selectedDay = null;
    this.load();
  }

  async load() {
    const load = ++this.loads;
    const today = todayIn(this.zone);
    const first = `${this.year}-${pad(this.month)}-01`;
    const lastDay = new Date(Date.UTC(this.year, this.month, 0)).getUTCDate();
    const last = `${this.year}-${pad(this.month)}-${pad(lastDay)}`;
    const from = first < today ? today : first;
    this.title.textContent = fmt(utcDate(first), { month: "long", year: "numeric" });
    this.prev.disabled = this.monthOffset() <= 0;
    this.next.disabled = this.monthOffset() >= MONTHS_AHEAD;
    this.status.textContent = "Loading free times…";
    this.root.setAttribute("aria-busy", "true");
    let slots = [];
    try {
      if (from <= last) {
        const q = new URLSearchParams({ session_type: this.sessionType, from, to: last, tz: this.zone });
        const body = await api("GET", `/api/v1/therapists/${encodeURIComponent(this.slug)}/slots?${q}`);
        slots = body.slots;
      }
    } catch (error) {
      if (load !== this.loads) return;
      this.status.textContent = explain(error);
      this.root.removeAttribute("aria-busy");
      return;
    }
    if (load !== this.loads) return;
    this.root.removeAttribute("aria-busy");
    this.byDay = new Map();
    for (const slot of slots) {
      const day = slot.start.slice(0, 10);
      if (!this.byDay.has(day)) this.byDay.set(day, []);
      this.byDay.get(day).push(slot);
    }
    if (this.byDay.size === 0 && this.autoAdvanced < 2 && this.monthOffset() < MONTHS_AHEAD) {
      // Late in a month the first free day is often in the next one: look there before giving up.
      this.autoAdvanced += 1;
      this.shift(1);
      return;
    }
    if (!this.selectedDay || !this.byDay.has(this.selectedDay)) {
      this.selectedDay = this.byDay.size ? [...this.byDay.keys()].sort()[0] : null;
    }
    this.status.textContent = this.byDay.size
      ? `${this.byDay.size} ${this.byDay.size === 1 ? "day has" : "days have"} free times this month.`
      : "No free times this month. Try the next month.";
    this.renderGrid(first, lastDay);
    this.renderTimes();
  }

  renderGrid(first, lastDay) {
    const weekdays = [];
    for (let i = 0; i < 7; i++) {
      const d = new Date(Date.UTC(2024, 0, 1 + i)); // 1 January 2024 was a Monday
      weekdays.push(
        el("th", { scope: "col" }, el("abbr", { title: fmt(d, { weekday: "long" }), text: fmt(d, { weekday: "short" }) })),
      );
    }
    const body = el("tbody");
    const lead = (utcDate(first).getUTCDay() + 6) % 7;
    let row = el("tr");
    for (let i = 0; i < lead; i++) row.append(el("td"));
    for (let day = 1; day <= lastDay; day++) {
      const key = `${first.slice(0, 8)}${pad(day)}`;
      const slots = this.byDay.get(key) || [];
      const label = fmt(utcDate(key), { weekday: "long", day: "numeric", month: "long" });
      const button = el("button", {
        type: "button",
        class: "day",
        "data-day": key,
        "aria-label": slots.length ? `${label}, ${slots.length} free ${slots.length === 1 ? "time" : "times"}` : `${label}, no free times`,
        "aria-pressed": slots.length ? String(key === this.selectedDay) : null,
        disabled: slots.length === 0,
        text: String(day),
      });
      button.addEventListener("click", () => {
        this.selectedDay = key;
        for (const b of this.grid.querySelectorAll("button.day[aria-pressed]")) {
          b.setAttribute("aria-pressed", String(b.dataset.day === key));
        }
        this.renderTimes();
        const firstTime = this.times.querySelector("button");
        if (firstTime) firstTime.focus();
      });
      row.append(el("td", {}, button));
      if ((lead + day) % 7 === 0) {
        body.append(row);
        row = el("tr");
      }
    }
    if (row.children.length) body.append(row);
    const table = el(
      "table",
      { class: "cal-grid" },
      el("caption", { class: "visually-hidden", text: `${this.title.textContent}: choose a day` }),
      el("thead", {}, el("tr", {}, ...weekdays)),
      body,
    );
    this.grid.replaceChildren(table);
  }

  renderTimes() {
    if (!this.selectedDay) {
      this.times.replaceChildren();
      return;
    }
    const label = fmt(utcDate(this.selectedDay), { weekday: "long", day: "numeric", month: "long" });
    const list = el("ul", { class: "time-list" });
    for (const slot of this.byDay.get(this.selectedDay) || []) {
      const time = formatTime(slot.start, this.zone);
      const button = el(
        "button",
        { type: "button", class: "secondary time", "data-start": slot.start },
        el("span", { class: "visually-hidden", text: "Book " }),
        time,
      );
      button.addEventListener("click", () => this.onPick(slot));
      list.append(el("li", {}, button));
    }
    this.times.replaceChildren(el("h3", { class: "times-title", text: `Free times on ${label}` }), list);
  }
}
