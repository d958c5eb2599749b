// The Webhooks page: register an endpoint (its signing secret is shown once), list endpoints with
// their state, rotate a secret, switch an endpoint off and on, delete one, and per endpoint a
// delivery log with "Send again" (broker/routes/webhooks.py: .../webhooks, .../webhooks/{id}/deliveries).
import { $, el } from "./dom.js";
import { call, formatTime, lastTryFailed, logTable, say, sayError, stateLabel } from "./outbound.js";

const root = $("webhooks-page");
const zone = root.dataset.timezone;
const base = `/api/v1/therapists/${encodeURIComponent(root.dataset.slug)}/webhooks`;
const listBox = $("endpoints");
const listMessage = $("endpoints-message");

// --- The secret, shown once ---------------------------------------------------------------------

const secretBox = $("secret-box");
const secretValue = $("secret-value");

function showSecret(secret, sentence) {
  secretValue.value = secret;
  $("secret-for").textContent = sentence;
  secretBox.hidden = false;
  $("secret-title").focus();
}

$("copy-secret").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(secretValue.value);
  } catch {
    secretValue.select();
    document.execCommand("copy");
  }
  say(listMessage, "Secret copied.");
});

$("secret-done").addEventListener("click", () => {
  secretValue.value = "";
  secretBox.hidden = true;
  $("endpoints-title").setAttribute("tabindex", "-1");
  $("endpoints-title").focus();
});

// --- Registering --------------------------------------------------------------------------------

const form = $("webhook-form");
const formMessage = $("webhook-form-message");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const url = form.elements.url.value.trim();
  const events = [...form.querySelectorAll('input[name="events"]:checked')].map((box) => box.value);
  const description = form.elements.description.value.trim();
  if (!/^https?:\/\/\S+$/i.test(url)) {
    say(formMessage, "Enter the address the messages go to, starting with https://", true);
    form.elements.url.focus();
    return;
  }
  if (!events.length) {
    say(formMessage, "Choose at least one event to send.", true);
    form.querySelector('input[name="events"]').focus();
    return;
  }
  const body = { url, events };
  if (description) body.description = description;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say(formMessage, "");
  try {
    const created = await call("POST", base, { body });
    form.elements.url.value = "";
    form.elements.description.value = "";
    say(formMessage, "Endpoint added.");
    await loadEndpoints();
    showSecret(created.secret, `For ${created.url}.`);
  } catch (error) {
    sayError(formMessage, error);
    if (error.code && /url/.test(error.code)) form.elements.url.focus();
  } finally {
    button.disabled = false;
  }
});

// --- Endpoints ----------------------------------------------------------------------------------

function endpointName(endpoint) {
  return endpoint.description || endpoint.url;
}

function stateBadge(endpoint) {
  if (endpoint.enabled) return el("span", { class: "badge", text: "On" });
  return el("span", { class: "badge off", text: "Off" });
}

function actionButton(action, text, label) {
  return el("button", { type: "button", class: "secondary", "data-action": action, "aria-label": label, text });
}

function endpointCard(endpoint) {
  const name = endpointName(endpoint);
  const titleId = `endpoint-${endpoint.id}`;
  const card = el(
    "article",
    { class: "endpoint stack", "data-endpoint": endpoint.id, "aria-labelledby": titleId },
    el("h3", { id: titleId, class: "endpoint-title" }, el("span", { text: name }), " ", stateBadge(endpoint)),
  );
  if (endpoint.description) card.append(el("p", { class: "endpoint-url", text: endpoint.url }));
  if (!endpoint.enabled) {
    const why = endpoint.disabled_reason || "Switched off.";
    card.append(el("p", { class: "alert error", text: `Not sending: ${why}` }));
  }
  if (endpoint.previous_secret_valid_until) {
    const until = formatTime(endpoint.previous_secret_valid_until, zone);
    card.append(el("p", { class: "hint", text: `The previous secret also signs until ${until}.` }));
  }
  card.append(
    el(
      "p",
      { class: "hint" },
      "Events: ",
      ...endpoint.events.flatMap((e, i) => [i ? ", " : "", el("code", { text: e })]),
    ),
    el(
      "div",
      { class: "row endpoint-actions" },
      actionButton("rotate", "Rotate secret", `Rotate secret of ${name}`),
      endpoint.enabled
        ? actionButton("disable", "Switch off", `Switch off ${name}`)
        : actionButton("enable", "Switch on", `Switch on ${name}`),
      actionButton("delete", "Delete", `Delete ${name}`),
    ),
    el("div", { class: "confirm-box", hidden: true }),
    el("div", { class: "endpoint-message", role: "status" }),
    el(
      "div",
      { class: "deliveries stack" },
      el(
        "div",
        { class: "row deliveries-head" },
        el("h4", { id: `log-${endpoint.id}`, text: "Delivery log" }),
        actionButton("refresh", "Refresh", `Refresh delivery log of ${name}`),
      ),
      el("div", { class: "deliveries-body", "aria-busy": "true" }, el("p", { class: "muted", text: "Loading…" })),
    ),
  );
  card.endpoint = endpoint;
  return card;
}

function statusCode(delivery) {
  return delivery.last_status ? String(delivery.last_status) : "—";
}

function deliveriesTable(endpoint, deliveries) {
  const columns = ["Time", "Event", "Status code", "Attempts", "State", ""];
  const rows = deliveries.map((d) => {
    const when = formatTime(d.last_attempt_at || d.created_at, zone);
    let label = stateLabel(d);
    if (d.state === "pending" && lastTryFailed(d) && d.next_attempt_at) {
      label += ` at ${formatTime(d.next_attempt_at, zone)}`;
    }
    const state = el("td", {}, el("span", { text: label }));
    if (d.last_error && d.state !== "delivered") {
      state.append(el("span", { class: "hint error-text", text: ` (${d.last_error})` }));
    }
    const action = el("td", { class: "actions" });
    if (d.state !== "pending") {
      action.append(
        el("button", {
          type: "button",
          class: "secondary",
          "data-action": "send-again",
          "data-delivery": d.id,
          "aria-label": `Send again: ${d.event} of ${when}`,
          text: "Send again",
        }),
      );
    }
    return {
      attrs: { "data-delivery": d.id, "data-state": d.state },
      cells: [
        el("td", { text: when }),
        el("td", {}, el("code", { text: d.event })),
        el("td", { class: "number status-code", text: statusCode(d) }),
        el("td", { class: "number attempts", text: String(d.attempts) }),
        state,
        action,
      ],
    };
  });
  return logTable(`log-${endpoint.id}`, columns, rows);
}

async function loadDeliveries(card) {
  const body = card.querySelector(".deliveries-body");
  body.setAttribute("aria-busy", "true");
  try {
    const { deliveries } = await call("GET", `${base}/${card.endpoint.id}/deliveries`);
    body.replaceChildren(
      deliveries.length
        ? deliveriesTable(card.endpoint, deliveries)
        : el("p", { class: "muted", text: "Nothing sent yet. Deliveries appear here as bookings change." }),
    );
  } catch (error) {
    sayError(card.querySelector(".endpoint-message"), error);
  } finally {
    body.setAttribute("aria-busy", "false");
  }
}

async function loadEndpoints() {
  try {
    const { webhooks: endpoints } = await call("GET", base);
    if (!endpoints.length) {
      listBox.replaceChildren(el("p", { class: "muted", text: "No endpoints yet. Add one above." }));
      return;
    }
    const cards = endpoints.map(endpointCard);
    listBox.replaceChildren(...cards);
    await Promise.all(cards.map(loadDeliveries));
  } catch (error) {
    sayError(listMessage, error);
  } finally {
    listBox.setAttribute("aria-busy", "false");
  }
}

function askToDelete(card) {
  const name = endpointName(card.endpoint);
  const box = card.querySelector(".confirm-box");
  const yes = el("button", { type: "button", class: "danger", "data-action": "confirm-delete" });
  yes.textContent = "Yes, delete endpoint";
  box.replaceChildren(
    el("p", { text: `Delete ${name}? Messages not yet sent to it are dropped, and its delivery log goes too.` }),
    el(
      "div",
      { class: "row" },
      yes,
      el("button", { type: "button", class: "secondary", "data-action": "keep", text: "Keep it" }),
    ),
  );
  box.hidden = false;
  yes.focus();
}

const ACTIONS = {
  async rotate(card) {
    const rotated = await call("POST", `${base}/${card.endpoint.id}/rotate-secret`);
    const until = formatTime(rotated.previous_valid_until, zone);
    showSecret(
      rotated.secret,
      `New secret for ${card.endpoint.url}. Until ${until} Teleroom signs with both the old and the new secret: ` +
        "switch your receiver over to the new one before then.",
    );
    await loadEndpoints();
  },
  async disable(card) {
    await call("PATCH", `${base}/${card.endpoint.id}`, { body: { enabled: false } });
    await loadEndpoints();
    say(listMessage, `${endpointName(card.endpoint)} is switched off.`);
  },
  async enable(card) {
    await call("PATCH", `${base}/${card.endpoint.id}`, { body: { enabled: true } });
    await loadEndpoints();
    say(listMessage, `${endpointName(card.endpoint)} is switched on.`);
  },
  async delete(card) {
    askToDelete(card);
  },
  async keep(card) {
    card.querySelector(".confirm-box").hidden = true;
    card.querySelector('[data-action="delete"]').focus();
  },
  async "confirm-delete"(card) {
    await call("DELETE", `${base}/${card.endpoint.id}`);
    await loadEndpoints();
    say(listMessage, `${endpointName(card.endpoint)} is deleted.`);
    $("endpoints-title").setAttribute("tabindex", "-1");
    $("endpoints-title").focus();
  },
  async refresh(card) {
    await loadDeliveries(card);
    say(card.querySelector(".endpoint-message"), "Delivery log refreshed.");
  },
  async "send-again"(card, button) {
    await call("POST", `${base}/${card.endpoint.id}/deliveries/${button.dataset.delivery}/send-again`);
    await loadDeliveries(card);
    card.querySelector('[data-action="refresh"]').focus();
    say(card.querySelector(".endpoint-message"), "Queued to send again. Refresh the log to see how it went.");
  },
};

listBox.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  const card = button?.closest(".endpoint");
  if (!card) return;
  const message = card.querySelector(".endpoint-message");
  button.disabled = true;
  try {
    await ACTIONS[button.dataset.action](card, button);
  } catch (error) {
    sayError(message, error);
  } finally {
    button.disabled = false;
  }
});

loadEndpoints();
