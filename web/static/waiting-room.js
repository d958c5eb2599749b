// The waiting room, from both sides: the client's "your therapist will let you in" panel, and the
// therapist's list of who is waiting (name and the location they confirmed) with Admit and Remove.

/** Client side: show the waiting panel until admitted, and the notes on the video stage. */
export function showWaiting(call, panel, stageNote, endingNote) {
  call.addEventListener("waiting", () => {
    panel.hidden = false;
    stageNote.textContent = "Your therapist will let you in";
  });
  call.addEventListener("admitted", () => {
    panel.hidden = true;
    stageNote.textContent = "Connecting to your therapist…";
  });
  call.addEventListener("peer", ({ detail }) => {
    stageNote.hidden = Boolean(detail);
    if (!detail) stageNote.textContent = "The other person's connection dropped. Waiting for them to come back…";
  });
  showEnding(call, endingNote);
}

export function showEnding(call, note) {
  call.addEventListener("ending", ({ detail }) => {
    const at = new Date(detail).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
    note.hidden = false;
    note.textContent = `This session closes at ${at}.`;
  });
}

/** Therapist side: render the queue; `onAdmit(person)` and `onRemove(person)` act on an entry. */
export function renderQueue(list, empty, people, { onAdmit, onRemove }) {
  empty.hidden = people.length > 0;
  const items = people.map((person) => {
    const li = document.createElement("li");
    const about = document.createElement("div");
    about.id = `waiting-${person.id}`;
    const name = document.createElement("strong");
    name.textContent = person.name;
    const where = document.createElement("div");
    where.className = "hint";
    where.textContent = person.location ? `Is in: ${person.location}` : "Location not confirmed";
    about.append(name, where);
    const actions = document.createElement("div");
    actions.className = "row";
    const admit = document.createElement("button");
    admit.type = "button";
    admit.textContent = "Admit";
    admit.setAttribute("aria-describedby", about.id);
    admit.addEventListener("click", () => onAdmit(person));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-describedby", about.id);
    remove.addEventListener("click", () => onRemove(person));
    actions.append(admit, remove);
    li.append(about, actions);
    return li;
  });
  list.replaceChildren(...items);
}
