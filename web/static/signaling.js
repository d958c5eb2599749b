// The WebSocket to /ws (docs/signaling.md): send `join` with a room token first, then JSON
// messages each way. Events: "message" (detail: the parsed message) and "close" (detail: {code}).

import { NORMAL_CLOSURE } from "./close-codes.js";

export function socketUrl(signalingUrl) {
  if (/^wss?:\/\//.test(signalingUrl)) return signalingUrl;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${signalingUrl.startsWith("/") ? "" : "/"}${signalingUrl}`;
}

export class SignalingSocket extends EventTarget {
  constructor(signalingUrl) {
    super();
    this.url = socketUrl(signalingUrl);
    this.ws = null;
  }

  /** Open the socket and send `join` as its first message. */
  open(join) {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => ws.send(JSON.stringify(join)));
    ws.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === "string") {
        this.dispatchEvent(new CustomEvent("message", { detail: message }));
      }
    });
    ws.addEventListener("close", (event) => {
      this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason: event.reason } }));
    });
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  close(code = NORMAL_CLOSURE) {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code);
  }
}
