// The device check shown on /test and before joining: camera preview, microphone level and a
// connection check against the echo peer, each with a plain-language result.

import { micMeter, openMedia, preview } from "./devices.js";
import { $ } from "./dom.js";
import { echoCheck } from "./echo-check.js";

const MARKS = { pending: "…", ok: "✓", fail: "✗" };

function mark(id, state, text) {
  const item = $(id);
  item.dataset.state = state;
  item.querySelector(".mark").textContent = MARKS[state];
  item.querySelector(".text").textContent = text;
}

async function checkConnection(stream, iceServers) {
  mark("check-net", "pending", "Connection: checking…");
  $("recheck").hidden = true;
  const result = await echoCheck(stream, { iceServers });
  if (result.ok) {
    mark("check-net", "ok", "Connection: working");
  } else {
    const why = {
      busy: "Connection: too many checks right now. Try again in a minute.",
      failed: "Connection: video could not get through. A different network (or mobile data) may help.",
      timeout: "Connection: no video came back in time. A different network may help.",
      unreachable: "Connection: we couldn't reach Teleroom. Check your internet connection.",
    };
    mark("check-net", "fail", why[result.reason] || why.unreachable);
    $("recheck").hidden = false;
  }
  $("check-summary").textContent = result.ok ? "Everything looks good." : "The connection check did not pass.";
  return result.ok;
}

/** Start the camera and microphone and run the checks; resolves with the stream (or throws). */
export async function runDeviceCheck({ iceServers = [] } = {}) {
  let stream;
  try {
    stream = await openMedia();
  } catch (error) {
    mark("check-camera", "fail", "Camera: not available");
    mark("check-mic", "fail", "Microphone: not available");
    mark("check-net", "pending", "Connection: needs your camera first");
    throw error;
  }
  preview($("preview"), stream);
  const video = stream.getVideoTracks()[0];
  mark("check-camera", video ? "ok" : "fail", video ? `Camera: working (${video.label || "camera"})` : "Camera: none found");
  if (stream.getAudioTracks().length) {
    micMeter(stream, $("mic-level"), () => mark("check-mic", "ok", "Microphone: we can hear you"));
  } else {
    mark("check-mic", "fail", "Microphone: none found");
  }
  $("recheck").addEventListener("click", () => checkConnection(stream, iceServers));
  checkConnection(stream, iceServers);
  return stream;
}
