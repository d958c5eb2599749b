// The questionnaires a client completes before a session (PHQ-9, GAD-7, ...): on the join page before
// the waiting room, and from the manage page. One question per screen: a radio group in a
// fieldset whose legend is the question, "Question 3 of 10", Back and Next, then Send. Every answer
// of one questionnaire goes in one request (stored whole or not at all, scored on the server). When
// an answer asks for it the server returns crisis lines for where the client is: they are shown at
// once, and stay on the page, without stopping the way on ("Continue to the waiting room").

import { api, ApiError, explain } from "./api.js";
import { el } from "./dom.js";

/** The text of the final button, by where the flow goes next. */
const CONTINUE = { join: "Continue to the waiting room", manage: "Back to my booking" };

/** The step's stylesheet, added once to whichever page runs it (same origin: the page's CSP allows it). */
function ensureStyles() {
  if (document.querySelector('link[href="/static/measures.css"]')) return;
  document.head.append(el("link", { rel: "stylesheet", href: "/static/measures.css" }));
}

function focusFirst(node) {
  node.setAttribute("tabindex", "-1");
  node.focus();
}

function telHref(phone) {
  return `tel:${phone.replace(/[^0-9+]/g, "")}`;
}

/** The crisis lines as a list: name, number as a link to call, hours and note. */
export function crisisBox(lines) {
  const box = el("section", { class: "card stack crisis", "aria-labelledby": "crisis-title", id: "crisis-resources" });
  box.append(
    el("h2", { id: "crisis-title", text: "If you are in danger or thinking of harming yourself" }),
    el("p", {
      text: "You are not alone, and help is there right now. Your therapist will see your answers. If you might act on these thoughts, call one of these now:",
    }),
  );
  const list = el("ul", { class: "crisis-lines" });
  for (const line of lines) {
    const item = el("li");
    item.append(el("strong", { text: line.name }));
    if (line.phone) item.append(" ", el("a", { href: telHref(line.phone), text: line.phone }));
    const details = [line.hours, line.note].filter(Boolean).join(". ");
    if (details) item.append(el("span", { class: "hint", text: ` ${details}` }));
    if (line.url) item.append(" ", el("a", { href: line.url, rel: "noopener noreferrer", text: "Website" }));
    list.append(item);
  }
  box.append(list);
  return box;
}

class Questionnaire {
  constructor(instrument, screen) {
    this.instrument = instrument;
    this.screen = screen;
    this.answers = {};
    this.index = 0;
  }

  get items() {
    return this.instrument.items;
  }

  /** Show question `index`; resolves with the answers when the last one is sent on. */
  run() {
    return new Promise((resolve) => {
      this.done = resolve;
      this.show(0);
    });
  }

  show(index) {
    this.index = index;
    const item = this.items[index];
    const total = this.items.length;
    const name = `q-${this.instrument.id}-${item.id}`;
    const form = el("form", { class: "stack measure-question", novalidate: true });
    const progress = el("p", {
      class: "muted",
      id: `${name}-progress`,
      text: `${this.instrument.title}: question ${index + 1} of ${total}`,
    });
    const fieldset = el("fieldset", { class: "choices", "aria-describedby": `${name}-progress ${name}-intro` });
    const legend = el("legend", { class: "measure-legend", text: item.text + (item.required ? "" : " (optional)") });
    fieldset.append(legend);
    for (const option of item.options) {
      const id = `${name}-${option.value}`;
      const input = el("input", { type: "radio", name, id, value: String(option.value) });
      if (this.answers[item.id] === option.value) input.checked = true;
      const label = el("label", { class: "choice", for: id });
      label.append(input, el("span", { text: option.label }));
      fieldset.append(label);
    }
    const message = el("p", { class: "alert error", role: "alert", hidden: true });
    const last = index === total - 1;
    const back = el("button", { type: "button", class: "secondary", text: "Back", disabled: index === 0 });
    const next = el("button", { type: "submit", text: last ? "Send my answers" : "Next" });
    const buttons = el("div", { class: "row" }, back, next);
    form.append(
      progress,
      el("p", { id: `${name}-intro`, class: "hint", text: this.instrument.instructions }),
      fieldset,
      message,
      buttons,
    );
    back.addEventListener("click", () => this.show(Math.max(0, index - 1)));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = form.querySelector(`input[name="${name}"]:checked`);
      if (chosen) this.answers[item.id] = Number(chosen.value);
      else delete this.answers[item.id];
      if (!chosen && item.required) {
        message.hidden = false;
        message.textContent = "Please choose the answer that fits best, then go on.";
        fieldset.querySelector("input").focus();
        return;
      }
      if (last) this.done(this.answers);
      else this.show(index + 1);
    });
    this.screen.replaceChildren(form);
    const checked = fieldset.querySelector("input:checked");
    (checked || fieldset.querySelector("input")).focus();
  }
}

/**
 * Show the questionnaires due before this session, one question per screen, and resolve once they are
 * done (at once when none is due, or when they cannot be loaded: they never stand between a client
 * and their session). `next` names where the client goes after: "join" or "manage".
 * @param {{bookingId: string, key: string, mount: HTMLElement, next?: string}} options
 */
export async function runMeasures({ bookingId, key, mount, next = "join" }) {
  let due;
  try {
    due = (await api("GET", `/api/v1/bookings/${bookingId}/measures`, { key })).measures;
  } catch {
    return;
  }
  if (!due.length) return;
  ensureStyles();
  mount.hidden = false;
  const intro = el("section", { class: "card stack", "aria-labelledby": "measures-title" });
  const title = el("h2", { id: "measures-title", text: "A few questions before your session" });
  const screen = el("div", { class: "stack", "aria-live": "off" });
  const status = el("p", { role: "status", class: "muted" });
  intro.append(
    title,
    el("p", {
      class: "hint",
      text: "Your therapist asked you to answer these. Only your therapist sees your answers. It takes a few minutes.",
    }),
    screen,
    status,
  );
  mount.replaceChildren(intro);
  focusFirst(title);
  const shown = [];
  for (const [i, definition] of due.entries()) {
    let instrument = definition;
    let answers = await new Questionnaire(instrument, screen).run();
    for (;;) {
      status.textContent = "Sending your answers…";
      let sent;
      try {
        sent = await api("POST", `/api/v1/bookings/${bookingId}/measures/${instrument.id}`, {
          key,
          body: { version: instrument.version, answers },
        });
      } catch (error) {
        if (error instanceof ApiError && error.code === "instrument_outdated") {
          const fresh = await api("GET", `/api/v1/bookings/${bookingId}/measures`, { key });
          instrument = fresh.measures.find((m) => m.id === instrument.id);
          if (!instrument) break;
          status.textContent = "These questions were just updated; please answer them again.";
          answers = await new Questionnaire(instrument, screen).run();
          continue;
        }
        if (error instanceof ApiError && error.code === "measure_not_due") break; // sent already, elsewhere
        status.textContent = explain(error);
        const again = el("button", { type: "button", text: "Try again" });
        const skip = el("button", { type: "button", class: "secondary", text: "Skip for now" });
        screen.replaceChildren(el("div", { class: "row" }, again, skip));
        again.focus();
        const retry = await new Promise((resolve) => {
          again.addEventListener("click", () => resolve(true), { once: true });
          skip.addEventListener("click", () => resolve(false), { once: true });
        });
        if (retry) continue;
        break;
      }
      status.textContent = i + 1 < due.length ? "Thank you. Next questionnaire:" : "Thank you, your answers are sent.";
      if (sent.crisis_resources && sent.crisis_resources.length) {
        const box = crisisBox(sent.crisis_resources);
        shown.push(box);
        mount.prepend(box);
        focusFirst(box.querySelector("h2"));
        const go = el("button", {
          type: "button",
          text: i + 1 < due.length ? "Continue with the questions" : CONTINUE[next] || CONTINUE.join,
        });
        screen.replaceChildren(el("div", { class: "row" }, go));
        await new Promise((resolve) => go.addEventListener("click", resolve, { once: true }));
      }
      break;
    }
  }
  // The crisis lines stay on the page for the rest of the visit; the questions go.
  if (shown.length) mount.replaceChildren(...shown);
  else {
    mount.replaceChildren();
    mount.hidden = true;
  }
}

/**
 * The manage page's way in: show `button` while something is due for this booking; a click runs the
 * questionnaires in `mount` and hides the button when nothing is left.
 * @param {{bookingId: string, key: string, button: HTMLButtonElement, mount: HTMLElement}} options
 */
export async function offerMeasures({ bookingId, key, button, mount }) {
  const due = async () => {
    try {
      return (await api("GET", `/api/v1/bookings/${bookingId}/measures`, { key })).measures.length > 0;
    } catch {
      return false;
    }
  };
  button.hidden = !(await due());
  button.addEventListener("click", async () => {
    button.disabled = true;
    await runMeasures({ bookingId, key, mount, next: "manage" });
    button.disabled = false;
    button.hidden = !(await due());
    if (button.hidden && mount.hidden) button.closest("section")?.querySelector("h2")?.focus();
  });
}
