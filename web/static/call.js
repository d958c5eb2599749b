// One side of a two-person session: the signaling socket, the peer connection, and recovery.
//
// Events (CustomEvent detail in brackets):
//   state [{state, text}]  connecting | waiting | connected | reconnecting | ended | failed
//   waiting                this participant waits to be admitted
//   admitted               this participant is in the room
//   queue [list]           (therapist) who is waiting: [{id, name, location}]
//   peer [{id, role}|null] the other participant arrived or left the room
//   ending [at]            the room closes at `at`
//   finished [reason]      left | ended | removed | replaced | unavailable
//
// Recovery: when the socket drops we fetch a fresh room token and join again (the server replaces
// the old connection and does not make an admitted client wait twice); when the media path fails
// the negotiator restarts ICE; an offer the old connection cannot take gets a new connection.

import { CloseCode, NORMAL_CLOSURE } from "./close-codes.js";
import { Negotiator } from "./negotiation.js";
import { SignalingSocket } from "./signaling.js";

// Close codes after which reconnecting would be wrong (docs/signaling.md).
const FINAL = new Map([
  [CloseCode.REMOVED, "removed"],
  [CloseCode.REPLACED, "replaced"],
  [CloseCode.ROOM_ENDED, "ended"],
]);
const MAX_BACKOFF_MS = 10_000;

export class Call extends EventTarget {
  /**
   * role: "client" | "therapist"; fetchToken(): the room-token response; stream: local MediaStream;
   * remoteVideo: the <video> for the other person; location: what a client confirmed (or null).
   */
  constructor({ role, fetchToken, stream, remoteVideo, location = null }) {
    super();
    this.role = role;
    this.fetchToken = fetchToken;
    this.stream = stream;
    this.remoteVideo = remoteVideo;
    this.location = location;
    this.admitted = false;
    this.peers = new Map();
    this.queue = new Map();
    this.pc = null;
    this.remoteId = null;
    this.negotiator = null;
    this.announced = null;
    this.socket = null;
    this.iceServers = [];
    this.attempt = 0;
    this.joinedOnce = false;
    this.finishedWith = null;
    this.retryTimer = null;
    this.disconnectTimer = null;
    this.onOnline = () => {
      if (!this.socket || !this.socket.isOpen) this.reconnectNow();
    };
  }

  emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, text) {
    this.state = state;
    this.emit("state", { state, text });
  }

  start() {
    window.addEventListener("online", this.onOnline);
    return this.connect();
  }

  async connect() {
    if (this.finishedWith) return;
    if (!this.joinedOnce) this.setState("connecting", "Connecting…");
    let grant;
    try {
      grant = await this.fetchToken();
    } catch (error) {
      if (error.status === 410) return this.finish("ended");
      if (error.status === 401 || error.status === 404) return this.finish("unavailable");
      return this.scheduleRetry();
    }
    if (this.finishedWith) return;
    this.iceServers = grant.ice_servers || [];
    const socket = new SignalingSocket(grant.signaling_url);
    this.socket = socket;
    socket.addEventListener("message", (event) => this.onMessage(event.detail));
    socket.addEventListener("close", (event) => this.onClose(socket, event.detail.code));
    const join = { type: "join", token: grant.token };
    if (this.location) join.location = this.location;
    socket.open(join);
  }

  scheduleRetry() {
    if (this.finishedWith) return;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) + Math.random() * 300;
    this.attempt += 1;
    if (this.pc && this.pc.connectionState === "connected") {
      // Media flows peer to peer without the server: stay in the call while the socket comes back.
      this.setState("connected", "Connected (restoring the link to the server…)");
    } else {
      this.setState("reconnecting", navigator.onLine === false ? "Offline. Waiting for the network…" : "Reconnecting…");
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.connect();
  }

  onClose(socket, code) {
    if (socket !== this.socket || this.finishedWith) return;
    if (FINAL.has(code)) return this.finish(FINAL.get(code));
    this.scheduleRetry();
  }

  onMessage(message) {
    switch (message.type) {
      case "joined":
        this.attempt = 0;
        this.joinedOnce = true;
        this.self = message.participant;
        if (message.ice_servers) this.iceServers = message.ice_servers;
        this.peers = new Map((message.peers || []).map((p) => [p.id, p.role]));
        if (this.role === "therapist" || message.state === "admitted") {
          this.admitted = true;
          this.emit("admitted");
          this.updateState();
          this.connectPeer();
        } else {
          this.emit("waiting");
          this.setState("waiting", "Connected. Waiting for your therapist");
        }
        break;
      case "waiting":
        this.queue.set(message.participant.id, message.participant);
        this.emit("queue", [...this.queue.values()]);
        break;
      case "admitted":
        this.admitted = true;
        this.emit("admitted");
        this.updateState();
        this.connectPeer();
        break;
      case "peer-joined":
        this.peers.set(message.participant.id, message.participant.role);
        if (this.queue.delete(message.participant.id)) this.emit("queue", [...this.queue.values()]);
        this.connectPeer();
        break;
      case "peer-left":
        this.peers.delete(message.participant.id);
        if (this.queue.delete(message.participant.id)) this.emit("queue", [...this.queue.values()]);
        if (message.participant.id === this.remoteId) this.announcePeer();
        break;
      case "signal":
        this.onSignal(message.from, message.data);
        break;
      case "ending":
        this.emit("ending", message.at);
        break;
      case "ended":
        this.finish("ended");
        break;
      case "error":
        console.warn("signaling error", message.code);
        break;
      default:
        break;
    }
  }

  otherPeer() {
    for (const [id, role] of this.peers) if (role !== this.role) return id;
    return null;
  }

  /** Start (or repair) the media connection with the other participant once both are in. */
  connectPeer() {
    if (!this.admitted) return;
    const id = this.otherPeer();
    if (!id) return;
    if (this.pc && this.remoteId === id) {
      if (["disconnected", "failed"].includes(this.pc.connectionState)) this.pc.restartIce();
      return;
    }
    this.createPc(id);
  }

  createPc(id) {
    if (this.pc) this.pc.close();
    this.remoteId = id;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.announcePeer();
    this.negotiator = new Negotiator(pc, {
      polite: this.role === "client",
      send: (data) => this.socket && this.socket.send({ type: "signal", to: id, data }),
    });
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    pc.addEventListener("track", ({ track, streams }) => {
      const remote = streams[0] || new MediaStream([track]);
      if (this.remoteVideo.srcObject !== remote) this.remoteVideo.srcObject = remote;
      this.remoteVideo.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      clearTimeout(this.disconnectTimer);
      if (pc.connectionState === "disconnected") {
        // Often a brief network change; give it a moment, then restart ICE ourselves.
        this.disconnectTimer = setTimeout(() => pc === this.pc && pc.restartIce(), 4000);
      }
      this.announcePeer();
      this.updateState();
    });
    this.updateState();
    return pc;
  }

  /** Emit "peer" when the other person's video starts or stops reaching us (not on signaling blips). */
  announcePeer() {
    const here = this.pc && this.pc.connectionState === "connected" ? this.remoteId : null;
    if (here === this.announced) return;
    this.announced = here;
    this.emit("peer", here ? { id: here, role: this.role === "client" ? "therapist" : "client" } : null);
  }

  async onSignal(from, data) {
    if (!this.admitted) return;
    if (!this.pc || this.remoteId !== from) this.createPc(from);
    try {
      await this.negotiator.receive(data);
    } catch (error) {
      // The other side started over (a reload): its offer belongs with a fresh connection.
      if (data && data.description && data.description.type === "offer") {
        this.createPc(from);
        await this.negotiator.receive(data).catch((e) => console.warn("offer refused", e.name));
      } else {
        console.warn("signal refused", error.name);
      }
    }
  }

  updateState() {
    if (this.finishedWith) return;
    if (!this.socket || !this.socket.isOpen) return;
    const other = this.role === "client" ? "your therapist" : "your client";
    const s = this.pc ? this.pc.connectionState : "new";
    if (s === "connected") this.setState("connected", "Connected");
    else if (!this.pc || !this.peers.has(this.remoteId)) this.setState("connecting", `Connected. Waiting for ${other} to join`);
    else if (s === "disconnected" || s === "failed") this.setState("reconnecting", "Connection interrupted. Reconnecting…");
    else this.setState("connecting", `Connecting to ${other}…`);
  }

  admit(id) {
    this.socket && this.socket.send({ type: "admit", participant: id });
  }

  remove(id) {
    this.socket && this.socket.send({ type: "remove", participant: id });
  }

  end() {
    this.socket && this.socket.send({ type: "end" });
  }

  leave() {
    this.finish("left");
  }

  finish(reason) {
    if (this.finishedWith) return;
    this.finishedWith = reason;
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.retryTimer);
    clearTimeout(this.disconnectTimer);
    if (this.socket) this.socket.close(NORMAL_CLOSURE);
    if (this.pc) this.pc.close();
    this.pc = null;
    this.remoteVideo.srcObject = null;
    this.announcePeer();
    const text = { left: "You left the session", ended: "The session has ended", removed: "You were removed from the session" }[reason];
    this.setState("ended", text || "Disconnected");
    this.emit("finished", reason);
  }
}

/** Mute / camera buttons: the name always says what pressing it will do. */
export function bindMediaButtons(stream, muteButton, cameraButton) {
  const audio = stream.getAudioTracks()[0];
  const video = stream.getVideoTracks()[0];
  muteButton.disabled = !audio;
  cameraButton.disabled = !video;
  muteButton.addEventListener("click", () => {
    audio.enabled = !audio.enabled;
    muteButton.textContent = audio.enabled ? "Mute" : "Unmute";
  });
  cameraButton.addEventListener("click", () => {
    video.enabled = !video.enabled;
    cameraButton.textContent = video.enabled ? "Camera off" : "Camera on";
  });
}

/** Keep a status element in step with the call's state. */
export function showState(call, element) {
  call.addEventListener("state", ({ detail }) => {
    element.dataset.state = detail.state;
    element.textContent = detail.text;
  });
}
