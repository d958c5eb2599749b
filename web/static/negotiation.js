// Perfect negotiation (W3C webrtc-pc, section 10.7 "Perfect negotiation example"): both peers add
// their tracks and make offers whenever negotiation is needed; when two offers cross, the polite
// peer (the client) rolls back and answers, the impolite peer (the therapist) ignores the other
// offer. Candidates trickle as they are found. A failed ICE connection restarts ICE, which makes a
// fresh offer through the same path.

export class Negotiator {
  /** `send(data)` relays {description} or {candidate} to the other peer. */
  constructor(pc, { polite, send }) {
    this.pc = pc;
    this.polite = polite;
    this.send = send;
    this.makingOffer = false;
    this.ignoreOffer = false;
    pc.addEventListener("negotiationneeded", () => this.offer());
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (candidate) this.send({ candidate: candidate.toJSON() });
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "failed") pc.restartIce();
    });
  }

  async offer() {
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.send({ description: this.pc.localDescription.toJSON() });
    } catch (error) {
      console.warn("offer failed", error.name);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Apply a message from the other peer. Throws only when the description cannot be applied. */
  async receive(data) {
    const { description, candidate } = data || {};
    if (description) {
      const collision = description.type === "offer" && (this.makingOffer || this.pc.signalingState !== "stable");
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await this.pc.setRemoteDescription(description);
      if (description.type === "offer") {
        await this.pc.setLocalDescription();
        this.send({ description: this.pc.localDescription.toJSON() });
      }
    } else if (candidate) {
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (error) {
        if (!this.ignoreOffer) console.warn("candidate refused", error.name);
      }
    }
  }
}
