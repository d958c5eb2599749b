// Before the join window: when the room opens, and a live countdown to it.

import { $ } from "./dom.js";
import { formatTime } from "./timezones.js";

function remaining(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/**
 * Show the #early section counting down to `opensAt`; resolve when it is reached. The server's
 * clock decides (it said when), so `serverSkewMs` corrects for a device clock that is off.
 */
export function waitUntilOpen(opensAt, zone, serverSkewMs = 0) {
  const section = $("early");
  const target = new Date(opensAt).getTime();
  const opensDay = new Date(opensAt).toDateString() === new Date().toDateString() ? "" : ` on ${new Date(opensAt).toLocaleDateString()}`;
  $("opens-at").textContent = `${formatTime(opensAt, zone)}${opensDay}`;
  const counter = $("countdown");
  section.hidden = false;
  return new Promise((resolve) => {
    const tick = () => {
      const left = target - (Date.now() + serverSkewMs);
      counter.textContent = remaining(left);
      if (left <= 0) {
        clearInterval(timer);
        section.hidden = true;
        resolve();
      }
    };
    const timer = setInterval(tick, 1000);
    tick();
  });
}

/** Show that the session cannot be joined any more. */
export function showClosed(title, text) {
  const section = $("closed");
  $("closed-title").textContent = title;
  $("closed-text").textContent = text;
  section.hidden = false;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Ask for a room token until the join window is open: resolves true inside it, false when the
 * session is over (shown with `closedText`). Before the window, shows the countdown and asks
 * again when it ends; the server's clock decides, so a device clock running ahead never hammers
 * it. Any other error is thrown for the page to explain.
 */
export async function waitForWindow(requestToken, zone, { onWait, closedText }) {
  for (;;) {
    try {
      await requestToken();
      return true;
    } catch (error) {
      if (error.status === 403 && error.code === "too_early" && error.body.opens_at) {
        onWait();
        await waitUntilOpen(error.body.opens_at, zone);
        await sleep(1000);
        continue;
      }
      if (error.status === 410) {
        onWait();
        const ended = error.body && error.body.reason === "ended";
        showClosed("This session is over", ended ? "Your therapist has ended this session." : closedText);
        return false;
      }
      throw error;
    }
  }
}
