// The web terminal's direct path: a WebRTC data channel from the browser
// to the workspace's agent, signalled through the terminal's WebSocket
// (tether.TerminalEvent in tether.gen.ts explains the exchange). The
// channel speaks the reconnecting PTY's protocol with positions
// (ptyproto): the browser sends a header line and then frames of input and
// resizes; the agent answers with a line that says where its output
// starts, then the output.
//
// Only the ICE servers the server names are used (the deployment's STUN
// servers); with none, host candidates alone may still connect on one
// network.

import type { ICECandidate, TerminalSignal } from "./tether.gen";
import type { Position } from "./positions";

// The label the agent accepts (agent/rtcterm).
const channelLabel = "pty";
// The agent takes messages of up to 64 KiB; browsers all take 16 KiB.
const maxFrame = 16 << 10;
// openTimeout bounds an attempt: offer to an attached channel.
const openTimeout = 15_000;

const encoder = new TextEncoder();

export interface Attached extends Position {
  replay: boolean;
}

export interface DirectHandlers {
  // signal sends a signalling message to the agent, through the server.
  signal(m: TerminalSignal): void;
  // header is what the channel's header line says: where the screen is,
  // and the terminal's size.
  header(): { resume: Position | null; height: number; width: number };
  // attached: the channel carries the session's output from a.
  attached(a: Attached): void;
  // output is the channel's output, in order, after attached.
  output(data: Uint8Array): void;
  // ended: the path is gone (never came up, or died); why is for logs.
  ended(why: string): void;
}

// frame is a ptyproto frame: type byte, big-endian length, payload.
function frame(type: string, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(3 + payload.length);
  b[0] = type.charCodeAt(0);
  b[1] = payload.length >> 8;
  b[2] = payload.length & 0xff;
  b.set(payload, 3);
  return b;
}

export class DirectPath {
  readonly pc: RTCPeerConnection;
  private readonly dc: RTCDataChannel;
  private done = false;
  private answer = ""; // the agent's answer line, until its '\n'
  private isAttached = false;
  private timer: number;
  private signals: Promise<void> = Promise.resolve(); // onSignal's queue
  private early: RTCIceCandidateInit[] = []; // the agent's candidates before its answer

  constructor(
    iceServers: string[],
    private readonly h: DirectHandlers,
  ) {
    this.pc = new RTCPeerConnection({ iceServers: iceServers.length ? [{ urls: iceServers }] : [] });
    this.dc = this.pc.createDataChannel(channelLabel, { ordered: true });
    this.dc.binaryType = "arraybuffer";
    this.timer = window.setTimeout(() => this.end("the direct path did not come up in time"), openTimeout);

    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (!c || !c.candidate) return;
      const cand: ICECandidate = { candidate: c.candidate };
      if (c.sdpMid != null) cand.sdp_mid = c.sdpMid;
      if (c.sdpMLineIndex != null) cand.sdp_mline_index = c.sdpMLineIndex;
      if (c.usernameFragment != null) cand.username_fragment = c.usernameFragment;
      this.h.signal({ type: "candidate", candidate: cand });
    };
    this.pc.onconnectionstatechange = () => {
      const s = this.pc.connectionState;
      // "disconnected" is ICE's consent failing for a few seconds: the
      // relay takes over at once rather than waiting for "failed".
      if (s === "failed" || s === "disconnected" || s === "closed") this.end(`peer connection ${s}`);
    };
    this.dc.onopen = () => {
      const hdr = this.h.header();
      const line = JSON.stringify({ id: "", height: hdr.height, width: hdr.width, ...(hdr.resume ? { resume: hdr.resume } : {}) });
      this.dc.send(encoder.encode(line + "\n"));
    };
    this.dc.onmessage = (ev: MessageEvent) => this.message(ev.data);
    this.dc.onclose = () => this.end("the data channel closed");
    this.dc.onerror = () => this.end("the data channel failed");

    void this.offer();
  }

  private async offer(): Promise<void> {
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      if (!this.done) this.h.signal({ type: "offer", sdp: offer.sdp ?? "" });
    } catch (err) {
      this.end(`cannot make an offer: ${String(err)}`);
    }
  }

  // onSignal takes the agent's signalling, one message at a time, in
  // order. Candidates that come before the answer (older agents sent them
  // as pion found them) wait for it: the browser refuses a candidate while
  // it has no remote description, which ended the attempt and left the
  // terminal relayed until the next one.
  onSignal(m: TerminalSignal): Promise<void> {
    this.signals = this.signals.then(() => this.handleSignal(m));
    return this.signals;
  }

  private async handleSignal(m: TerminalSignal): Promise<void> {
    if (this.done) return;
    try {
      switch (m.type) {
        case "answer":
          await this.pc.setRemoteDescription({ type: "answer", sdp: m.sdp ?? "" });
          for (const c of this.early.splice(0)) await this.pc.addIceCandidate(c);
          break;
        case "candidate":
          if (m.candidate?.candidate) {
            const c: RTCIceCandidateInit = {
              candidate: m.candidate.candidate,
              sdpMid: m.candidate.sdp_mid ?? null,
              sdpMLineIndex: m.candidate.sdp_mline_index ?? null,
              usernameFragment: m.candidate.username_fragment ?? null,
            };
            if (this.pc.remoteDescription) await this.pc.addIceCandidate(c);
            else this.early.push(c);
          }
          break;
        case "error":
          this.end(m.message || "the agent refused the direct path");
          break;
        case "close":
          this.end("the agent ended the direct path");
          break;
      }
    } catch (err) {
      this.end(`signalling failed: ${String(err)}`);
    }
  }

  private message(data: unknown): void {
    if (this.done || !(data instanceof ArrayBuffer)) return;
    let b = new Uint8Array(data);
    if (!this.isAttached) {
      const nl = b.indexOf(10);
      const head = nl < 0 ? b : b.subarray(0, nl);
      this.answer += new TextDecoder().decode(head);
      if (this.answer.length > 4096) return this.end("the agent's answer is too long");
      if (nl < 0) return;
      let a: Attached;
      try {
        a = JSON.parse(this.answer) as Attached;
      } catch {
        return this.end("the agent's answer is not JSON");
      }
      if (typeof a.instance !== "string" || typeof a.offset !== "number") return this.end("the agent's answer names no position");
      this.isAttached = true;
      clearTimeout(this.timer);
      this.h.attached(a);
      b = b.subarray(nl + 1);
    }
    if (b.length > 0) this.h.output(b);
  }

  get open(): boolean {
    return !this.done && this.isAttached && this.dc.readyState === "open";
  }

  // input types text into the terminal.
  input(text: string): void {
    const p = encoder.encode(text);
    for (let i = 0; i < p.length; i += maxFrame) this.send(frame("d", p.subarray(i, i + maxFrame)));
  }

  resize(height: number, width: number): void {
    const p = new Uint8Array([height >> 8, height & 0xff, width >> 8, width & 0xff]);
    this.send(frame("r", p));
  }

  private send(b: Uint8Array<ArrayBuffer>): void {
    try {
      this.dc.send(b);
    } catch {
      this.end("the data channel refused a message");
    }
  }

  // close gives the path up without telling anyone.
  close(): void {
    this.done = true;
    clearTimeout(this.timer);
    try {
      this.dc.close();
      this.pc.close();
    } catch {
      // already closed
    }
  }

  private end(why: string): void {
    if (this.done) return;
    this.close();
    this.h.signal({ type: "close" });
    this.h.ended(why);
  }
}
