// Connection check: send our camera and microphone to the server's echo peer
// (POST /api/v1/echo/offer with an SDP offer; the answer comes back in the response) and
// confirm our own video returns. That proves a media path to the server exists, so a real
// session will most likely connect too.

import { api } from "./api.js";

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function bytesReceived(pc) {
  let total = 0;
  const stats = await pc.getStats();
  stats.forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") total += report.bytesReceived || 0;
  });
  return total;
}

/** Resolve {ok: true, rttMs} once our echoed video arrives, or {ok: false, reason}. */
export async function echoCheck(stream, { iceServers = [], timeoutMs = 15_000 } = {}) {
  const pc = new RTCPeerConnection({ iceServers });
  const started = performance.now();
  try {
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    await pc.setLocalDescription(await pc.createOffer());
    // The echo peer takes one complete offer (no trickle), so wait for our candidates first.
    await gathered(pc, 3000);
    const answer = await api("POST", "/api/v1/echo/offer", {
      body: { sdp: pc.localDescription.sdp, type: pc.localDescription.type },
    });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const deadline = started + timeoutMs;
    while (performance.now() < deadline) {
      if (pc.connectionState === "failed") return { ok: false, reason: "failed" };
      if ((await bytesReceived(pc)) > 0) return { ok: true, rttMs: Math.round(performance.now() - started) };
      await new Promise((r) => setTimeout(r, 250));
    }
    return { ok: false, reason: "timeout" };
  } catch (error) {
    return { ok: false, reason: error.status === 429 || error.status === 503 ? "busy" : "unreachable" };
  } finally {
    pc.close();
  }
}
