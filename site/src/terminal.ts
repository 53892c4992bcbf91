// The web terminal: a full-window xterm.js attached to a reconnecting PTY
// on the workspace's agent, through the server.
//
// Wire protocol of /api/v2/workspaces/OWNER/WS/pty?reconnect=ID&height=H&width=W
// (server/terminal.go): the server sends binary messages, each raw terminal
// output (a message may end inside a UTF-8 sequence: xterm decodes
// Uint8Array input as a stream), and text messages, each a TerminalEvent;
// the browser sends text messages, each a TerminalInput: {"data": "..."}
// for input and {"height": H, "width": W} for a resize. On a reconnect with
// the same id the server first replays the session's recent output, so the
// page resets its screen before the replay instead of showing everything
// twice.
//
// The terminal starts on the server's relay and moves to a direct WebRTC
// data channel to the agent when the server offers one and it comes up
// (direct.ts); when the channel dies the relay takes over again from the
// last byte on the screen (positions.ts). The path shows beside the
// terminal (.terminal-path, data-path "relayed" or "direct").
//
// xterm.js draws with its DOM renderer (no WebGL or canvas addon is loaded),
// so the screen's text is in .xterm-rows, where browser tests read it; they
// also get the Terminal object as window.tetherTerminal.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal, type ITheme } from "@xterm/xterm";
import { ApiError, api } from "./api";
import { stampStyleNonces } from "./csp";
import { capitalize } from "./format";
import { DirectPath, type Attached } from "./direct";
import { Screen, Stream } from "./positions";
import { chooseSession, type KeyValue } from "./session";
import { AgentConnected, CloseAccessRevoked, type TerminalEvent, type TerminalInput } from "./tether.gen";

declare global {
  interface Window {
    tetherTerminal?: Terminal;
    // The direct path's peer connection while there is one, for tests and
    // for people diagnosing it (chrome://webrtc-internals has more).
    tetherTerminalPeer?: RTCPeerConnection;
  }
}

// Themes keep every ANSI colour readable on their background; xterm's
// defaults assume a dark one.
const darkTheme: ITheme = {
  background: "#0f1117",
  foreground: "#e3e6eb",
  cursor: "#e3e6eb",
  cursorAccent: "#0f1117",
  selectionBackground: "#3b4a66",
  black: "#1c1f26",
  red: "#f47067",
  green: "#57c785",
  yellow: "#e0b341",
  blue: "#6cb6ff",
  magenta: "#dcbdfb",
  cyan: "#56d4dd",
  white: "#c9d1d9",
  brightBlack: "#6e7681",
  brightRed: "#ff938a",
  brightGreen: "#7ee2a8",
  brightYellow: "#f2cc60",
  brightBlue: "#96d0ff",
  brightMagenta: "#eedcff",
  brightCyan: "#8ae6ec",
  brightWhite: "#f0f3f6",
};

const lightTheme: ITheme = {
  background: "#ffffff",
  foreground: "#1f2328",
  cursor: "#1f2328",
  cursorAccent: "#ffffff",
  selectionBackground: "#b6d4fe",
  black: "#24292f",
  red: "#c7222d",
  green: "#116329",
  yellow: "#7d4e00",
  blue: "#0550ae",
  magenta: "#8250df",
  cyan: "#1b7c83",
  white: "#6e7781",
  brightBlack: "#57606a",
  brightRed: "#a40e26",
  brightGreen: "#1a7f37",
  brightYellow: "#633c01",
  brightBlue: "#0969da",
  brightMagenta: "#a475f9",
  brightCyan: "#3192aa",
  brightWhite: "#8c959f",
};

const disconnectedLine = "[disconnected — reconnecting…]";

// Reconnect delays grow from minDelay to maxDelay; a connection that stayed
// up for stableAfter counts as a success and starts the series again.
const minDelay = 500;
const maxDelay = 10_000;
const stableAfter = 5_000;

// A direct path that failed is tried again after directRetryMin, doubling
// up to directRetryMax; one that came up starts the series again.
const directRetryMin = 2_000;
const directRetryMax = 60_000;

export function startTerminal(root: HTMLElement, owner: string, workspace: string): void {
  document.title = `${workspace} — Tether terminal`;
  document.body.classList.add("terminal-page");

  let storage: KeyValue | null = null;
  try {
    storage = window.sessionStorage;
  } catch {
    // Storage disabled: the URL alone keeps the session.
  }
  const session = chooseSession(new URL(location.href), storage, owner, workspace);
  if (session.url) history.replaceState(history.state, "", session.url);

  root.replaceChildren();
  const container = document.createElement("div");
  container.id = "terminal";
  const status = document.createElement("div");
  status.className = "terminal-status";
  status.hidden = true;
  status.setAttribute("role", "status");
  const path = document.createElement("div");
  path.className = "terminal-path";
  path.hidden = true;
  root.append(container, status, path);

  stampStyleNonces();
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const term = new Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, "SF Mono", "Cascadia Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: 14,
    // The DOM renderer clips each row to its line height; at 1.0 common
    // monospace fonts (DejaVu Sans Mono) lose the underscore, which sits
    // below the descent. 1.2 leaves room for it.
    lineHeight: 1.2,
    scrollback: 10_000,
    theme: dark.matches ? darkTheme : lightTheme,
  });
  dark.addEventListener("change", () => {
    term.options.theme = dark.matches ? darkTheme : lightTheme;
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  window.tetherTerminal = term;

  const conn = new PTYConnection(term, owner, workspace, session.id, status, path);
  term.onData((d) => conn.input(d));
  term.onBinary((d) => conn.input(d));
  term.onResize(({ rows, cols }) => conn.resize(rows, cols));

  // Fit on any size change of the container (window resizes, zoom, the
  // browser's UI appearing), at most once per frame.
  let frame = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => fit.fit());
  }).observe(container);

  window.addEventListener("online", () => conn.reconnectNow());
  // On a workspace proxy, buildinfo names the primary: if the proxy goes
  // away, the page offers the same terminal there.
  api.buildInfo().then(
    (b) => {
      if (b.primary_url) conn.setPrimary(b.primary_url);
    },
    () => {},
  );
  conn.connect();
  term.focus();
}

class PTYConnection {
  private sock: WebSocket | null = null;
  private attempt = 0;
  private timer = 0;
  private countdown = 0;
  private openedAt = 0;
  // everConnected: the screen holds a previous connection's output, which
  // the server's replay will repeat.
  private everConnected = false;
  // announced: the disconnected line is on screen for this outage.
  private announced = false;
  private stopped = false;
  // primary is the primary's URL when this page is on a workspace proxy.
  private primary = "";
  // screen is where the terminal's output stands; relay is the relayed
  // stream's position, null on an agent that sends no positions.
  private readonly screen = new Screen();
  private relay: Stream | null = null;
  // The direct path: its ICE servers once the server offers it, the
  // attempt in progress or up, and its output stream once attached.
  private iceServers: string[] | null = null;
  private direct: DirectPath | null = null;
  private directStream: Stream | null = null;
  private isDirect = false;
  private directAttempt = 0;
  private directTimer = 0;

  constructor(
    private readonly term: Terminal,
    private readonly owner: string,
    private readonly workspace: string,
    private readonly id: string,
    private readonly status: HTMLElement,
    private readonly pathEl: HTMLElement,
  ) {}

  connect(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.showStatus(this.everConnected ? "Reconnecting…" : "Connecting…");
    const e = encodeURIComponent;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url =
      `${scheme}//${location.host}/api/v2/workspaces/${e(this.owner)}/${e(this.workspace)}/pty` +
      `?reconnect=${e(this.id)}&height=${this.term.rows}&width=${this.term.cols}`;
    let sock: WebSocket;
    try {
      sock = new WebSocket(url);
    } catch (err) {
      this.term.writeln(`\r\n[cannot connect: ${String(err)}]`);
      return;
    }
    sock.binaryType = "arraybuffer";
    this.sock = sock;
    let opened = false;
    let first = true;
    const reconnected = this.everConnected;
    this.relay = null;
    sock.onopen = () => {
      opened = true;
      this.openedAt = Date.now();
      this.announced = false;
      this.hideStatus();
      this.everConnected = true;
      this.resize(this.term.rows, this.term.cols);
      this.setPath("relayed");
    };
    sock.onmessage = (ev: MessageEvent) => {
      const wasFirst = first;
      first = false;
      if (typeof ev.data === "string") {
        this.event(ev.data);
        return;
      }
      if (!(ev.data instanceof ArrayBuffer)) return;
      const b = new Uint8Array(ev.data);
      if (this.relay) {
        const out = this.screen.take(this.relay, b);
        if (out) this.term.write(out);
        return;
      }
      // An agent without positions: the replay comes as it did before.
      if (wasFirst && reconnected) {
        // RIS, in the output stream so that it lands after anything still
        // queued from before and before the replay.
        this.term.write("\x1bc");
      }
      this.term.write(b);
    };
    sock.onclose = (ev: CloseEvent) => {
      if (this.sock !== sock) return;
      this.sock = null;
      this.stopDirect();
      this.setPath("");
      // The server ends the terminal of a user who lost access (suspended,
      // deleted, signed out, or no longer allowed to reach the workspace)
      // with CloseAccessRevoked; its reason says which, and reconnecting
      // cannot help.
      if (ev.code === CloseAccessRevoked) {
        this.stopped = true;
        const why = ev.reason || "your access to this workspace was revoked";
        this.term.write(`\r\n[${why}]\r\n`);
        this.showStatus(capitalize(why) + ".");
        return;
      }
      if (opened && Date.now() - this.openedAt >= stableAfter) this.attempt = 0;
      void this.afterFailure(opened, ev.reason);
    };
  }

  input(data: string): void {
    if (this.isDirect && this.direct?.open) this.direct.input(data);
    else this.send({ data });
  }

  resize(height: number, width: number): void {
    if (this.isDirect && this.direct?.open) this.direct.resize(height, width);
    else this.send({ height, width });
  }

  // event handles a TerminalEvent from the server.
  private event(text: string): void {
    let e: TerminalEvent;
    try {
      e = JSON.parse(text) as TerminalEvent;
    } catch {
      return;
    }
    if (e.attached) {
      this.attachedAt(e.attached);
      this.relay = new Stream(e.attached.instance, e.attached.offset);
    }
    if (e.direct) {
      this.iceServers = e.direct.ice_servers ?? [];
      this.directAttempt = 0;
      this.tryDirect();
    }
    if (e.signal) void this.direct?.onSignal(e.signal);
  }

  // attachedAt starts the screen over when a path brings a replay rather
  // than the continuation of what it shows.
  private attachedAt(a: Attached): void {
    if (!a.replay && a.instance === this.screen.instance) return;
    if (this.screen.instance !== "" || this.everWrote()) this.term.write("\x1bc");
    this.screen.reset(a.instance, a.offset);
  }

  private everWrote(): boolean {
    return this.term.buffer.active.length > this.term.rows || this.term.buffer.active.cursorY > 0;
  }

  // tryDirect starts an attempt at the direct path, if the server offered
  // one and none is under way.
  private tryDirect(): void {
    clearTimeout(this.directTimer);
    if (this.iceServers === null || this.direct || this.stopped || this.sock?.readyState !== WebSocket.OPEN) return;
    const d = new DirectPath(this.iceServers, {
      signal: (m) => {
        if (this.direct === d) this.send({ signal: m });
      },
      header: () => ({
        resume: this.screen.instance ? this.screen.position() : null,
        height: this.term.rows,
        width: this.term.cols,
      }),
      attached: (a) => {
        this.attachedAt(a);
        this.directStream = new Stream(a.instance, a.offset);
        // Input goes direct from now on; the server stops relaying
        // output, and what it relayed meanwhile is written once.
        this.isDirect = true;
        this.directAttempt = 0;
        this.send({ relay: { on: false } });
        this.setPath("direct");
      },
      output: (b) => {
        if (!this.directStream) return;
        const out = this.screen.take(this.directStream, b);
        if (out) this.term.write(out);
      },
      ended: (why) => {
        if (this.direct !== d) return;
        console.debug(`web terminal: direct path ended: ${why}`);
        const refused = why.includes("offers no direct") || why.includes("are off");
        this.dropDirect();
        if (!refused) this.retryDirect();
      },
    });
    this.direct = d;
    window.tetherTerminalPeer = d.pc;
  }

  // dropDirect forgets the direct path and, if it carried the terminal,
  // has the server relay again from the screen's last byte.
  private dropDirect(): void {
    const was = this.isDirect;
    this.direct = null;
    this.directStream = null;
    this.isDirect = false;
    window.tetherTerminalPeer = undefined;
    if (was) {
      this.send({ relay: { on: true, resume: this.screen.position() } });
      this.send({ height: this.term.rows, width: this.term.cols });
      this.setPath("relayed");
    }
  }

  private retryDirect(): void {
    const delay = Math.min(directRetryMax, directRetryMin * 2 ** this.directAttempt);
    this.directAttempt++;
    clearTimeout(this.directTimer);
    this.directTimer = window.setTimeout(() => this.tryDirect(), delay);
  }

  // stopDirect ends the direct path with its WebSocket, which authorized
  // it (the server ends the agent's side too).
  private stopDirect(): void {
    clearTimeout(this.directTimer);
    this.direct?.close();
    this.direct = null;
    this.directStream = null;
    this.isDirect = false;
    this.iceServers = null;
    window.tetherTerminalPeer = undefined;
  }

  private setPath(path: "" | "relayed" | "direct"): void {
    this.pathEl.hidden = path === "";
    this.pathEl.dataset.path = path;
    this.pathEl.textContent = path === "direct" ? "Direct" : "Relayed";
    this.pathEl.title =
      path === "direct"
        ? "Direct: this terminal goes straight to the workspace (WebRTC); the server only holds its WebSocket"
        : "Relayed: this terminal goes through the server";
  }

  setPrimary(url: string): void {
    this.primary = url.replace(/\/+$/, "");
  }

  reconnectNow(): void {
    if (this.sock || this.stopped) return;
    this.connect();
  }

  private send(msg: TerminalInput): void {
    if (this.sock?.readyState === WebSocket.OPEN) this.sock.send(JSON.stringify(msg));
  }

  // afterFailure decides what a lost or refused connection means. A
  // WebSocket refused before it opened says nothing about why, so ask the
  // API: a signed-out user goes to sign in (api does that on a 401), a
  // deleted workspace stops the retries, anything else is retried with
  // growing delays.
  private async afterFailure(opened: boolean, reason: string): Promise<void> {
    let note = "";
    let proxyDown = false;
    if (this.primary) {
      // On a workspace proxy there is no API to ask: ask whether the proxy
      // itself still answers.
      proxyDown = !(await fetch("/healthz", { cache: "no-store" }).then(
        (r) => r.ok,
        () => false,
      ));
      if (proxyDown) note = "the workspace proxy is not reachable";
    } else if (!opened) {
      try {
        const ws = await api.workspace(this.owner, this.workspace);
        if (ws.agent_status !== AgentConnected) note = "the workspace's agent is not connected; waiting for it";
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
          this.stopped = true;
          this.term.write(`\r\n[${err.message}]\r\n`);
          this.showStatus(capitalize(err.message));
          return;
        }
        // The server itself is unreachable: keep retrying.
      }
    }
    // One notice per outage, however many attempts it takes.
    if (!this.announced) {
      this.announced = true;
      if (reason) this.term.write(`\r\n\x1b[2m[${reason}]\x1b[0m`);
      if (note) this.term.write(`\r\n\x1b[2m[${note}]\x1b[0m`);
      this.term.write(`\r\n\x1b[2m${disconnectedLine}\x1b[0m\r\n`);
    }
    const delay = Math.min(maxDelay, minDelay * 2 ** this.attempt) * (0.8 + 0.4 * Math.random());
    this.attempt++;
    const due = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      if (proxyDown) {
        this.showStatus(`The workspace proxy is not reachable. Retrying in ${s} s…`, true, this.primaryHref());
      } else {
        this.showStatus(`Disconnected. Reconnecting in ${s} s…`, true);
      }
    };
    tick();
    this.countdown = window.setInterval(tick, 1000);
    this.timer = window.setTimeout(() => this.connect(), delay);
  }

  // primaryHref is this terminal on the primary.
  private primaryHref(): string {
    return this.primary + location.pathname + location.search;
  }

  private showStatus(text: string, offerNow = false, elsewhere = ""): void {
    this.status.replaceChildren(text);
    if (elsewhere) {
      const a = document.createElement("a");
      a.className = "button open-primary";
      a.href = elsewhere;
      a.textContent = "Open on the primary";
      this.status.append(" ", a);
    }
    if (offerNow) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Reconnect now";
      b.onclick = () => {
        this.connect();
        this.term.focus();
      };
      this.status.append(" ", b);
    }
    this.status.hidden = false;
  }

  private hideStatus(): void {
    this.status.hidden = true;
  }
}

