// Invite and reset pages: the link's secret is in the URL fragment (#t=...), which the browser
// never sends to a server. We read it, drop it from the address bar, and send it as a bearer token.
import { api, explain, fragmentSecret } from "./api.js";
import { $, fail } from "./dom.js";

const page = $("password-page");
const statusBox = $("status");
const errorBox = $("error");
const form = $("password-form");
const forgotHint = $("forgot-hint");
const first = $("new-password");
const second = $("confirm-password");

function showError(message, { offerNewLink = false } = {}) {
  fail(message);
  forgotHint.hidden = !offerNewLink;
}

const secret = fragmentSecret("t", /^tr[ir]_[A-Za-z0-9_-]+$/);
// Keep the secret out of the history and of anything that reads the address later.
history.replaceState(null, "", location.pathname);

async function start() {
  if (!secret) {
    showError("This link is incomplete. Open the whole link you were given, or ask for a new one.", {
      offerNewLink: true,
    });
    return;
  }
  try {
    const link = await api("GET", "/api/v1/account/password-link", { key: secret });
    statusBox.textContent = "";
    const who = $("for-whom");
    who.textContent =
      page.dataset.purpose === "invite"
        ? `Hello ${link.name}. Choose a password for ${link.email} to open your dashboard.`
        : `Choose a new password for ${link.email}.`;
    $("username").value = link.email;
    form.hidden = false;
    first.focus();
  } catch (error) {
    showError(explain(error), { offerNewLink: true });
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  if (first.value.length < 10) {
    showError("Choose a password of at least 10 characters.");
    first.focus();
    return;
  }
  if (first.value !== second.value) {
    showError("The two passwords are not the same. Type them again.");
    second.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  statusBox.textContent = "Saving…";
  try {
    const done = await api("POST", "/api/v1/account/password", { key: secret, body: { password: first.value } });
    statusBox.textContent = "Password saved. Opening your dashboard…";
    location.assign(done.redirect);
  } catch (error) {
    button.disabled = false;
    const dead = error.code === "link_used" || error.code === "link_expired" || error.code === "link_unknown";
    showError(explain(error), { offerNewLink: dead });
  }
});

start();
