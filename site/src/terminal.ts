// The web terminal: a full-window xterm.js attached to a reconnecting PTY
// on the workspace's agent, through the server.
//
// Wire protocol of /api/v2/workspaces/OWNER/WS/pty?reconnect=ID&height=H&width=W
// (server/terminal.go): the server sends binary messages, each raw terminal
// output (a message may end inside a UTF-8 sequence: xterm decodes
// Uint8Array input as a stream); the browser sends text messages, each a
// TerminalInput: {"data": "..."} for input and {"height": H, "width": W}
// for a resize. On a reconnect with the same id the server first replays
// the session's recent output, so the page resets its screen before the
// replay instead of showing everything twice.
//
// xterm.js draws with its DOM renderer (no WebGL or canvas addon is loaded),
// so the screen's text is in .xterm-rows, where browser tests read it; they
// also get the Terminal object as window.tetherTerminal.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal, type ITheme } from "@xterm/xterm";
import { ApiError, api } from "./api";
import { stampStyleNonces } from "./csp";
import { capitalize } from "./format";
import { chooseSession, type KeyValue } from "./session";
import { AgentConnected, CloseAccessRevoked, type TerminalInput } from "./tether.gen";

declare global {
  interface Window {
    tetherTerminal?: Terminal;
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
  root.append(container, status);

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

  const conn = new PTYConnection(term, owner, workspace, session.id, status);
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

  constructor(
    private readonly term: Terminal,
    private readonly owner: string,
    private readonly workspace: string,
    private readonly id: string,
    private readonly status: HTMLElement,
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
    sock.onopen = () => {
      opened = true;
      this.openedAt = Date.now();
      this.announced = false;
      this.hideStatus();
      if (this.everConnected) {
        // RIS, in the output stream so that it lands after anything still
        // queued from before and before the replay.
        this.term.write("\x1bc");
      }
      this.everConnected = true;
      this.resize(this.term.rows, this.term.cols);
    };
    sock.onmessage = (ev: MessageEvent) => {
      if (ev.data instanceof ArrayBuffer) this.term.write(new Uint8Array(ev.data));
      else if (typeof ev.data === "string") this.term.write(ev.data);
    };
    sock.onclose = (ev: CloseEvent) => {
      if (this.sock !== sock) return;
      this.sock = null;
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
    this.send({ data });
  }

  resize(height: number, width: number): void {
    this.send({ height, width });
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

