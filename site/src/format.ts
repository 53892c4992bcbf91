// Presentation helpers kept free of the DOM so that they can be tested alone.

import {
  PathDERP,
  PathDirect,
  PathRelay,
  StartupScriptFailed,
  StartupScriptRunning,
  StartupScriptSucceeded,
  StartupScriptTimedOut,
  type App,
  type StartupScriptStatus,
  type WebTerminals,
  type Workspace,
  type WorkspaceConnection,
} from "./tether.gen";
import type { Tone } from "./ui";

/** relativeTime says how long ago t was, as a person would: "3 min ago". */
export function relativeTime(t: string | null | undefined, now: number): string {
  if (!t) return "never";
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return "unknown";
  const s = Math.round((now - ms) / 1000);
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

/** connectionLabel describes how the workspace's agent reaches its peers. */
export function connectionLabel(c: WorkspaceConnection | null | undefined): string {
  if (!c) return "";
  if (c.path === PathDirect) return "Direct";
  if (c.path === PathRelay) return c.endpoint ? `UDP relay (${c.endpoint})` : "UDP relay";
  if (c.path === PathDERP) return c.derp_region ? `Relay (${c.derp_region})` : "Relay";
  return c.path;
}

/** terminalsLabel says how a workspace's open web terminals go. */
export function terminalsLabel(t: WebTerminals | null | undefined): string {
  if (!t) return "";
  const n = t.direct + t.relayed;
  if (n === 0) return "";
  if (n === 1) return t.direct ? "Web terminal: direct" : "Web terminal: relayed";
  const parts = [];
  if (t.direct) parts.push(`${t.direct} direct`);
  if (t.relayed) parts.push(`${t.relayed} relayed`);
  return `${n} web terminals: ${parts.join(", ")}`;
}

export interface AppLink {
  /** href is empty when the app cannot be opened from here. */
  href: string;
  /** reason explains an app that cannot be opened. */
  reason: string;
}

/**
 * appLink is where a browser opens an app: path apps under the server's own
 * origin, subdomain apps at APP--WS--OWNER on the wildcard domain (given
 * like "*.apps.example.com", with an optional port and scheme). base is
 * the origin of a workspace proxy that serves path apps, "" for this one.
 */
export function appLink(ws: Workspace, app: App, wildcard: string | undefined, base = ""): AppLink {
  const e = encodeURIComponent;
  if (!app.subdomain) {
    return { href: `${base}/@${e(ws.owner)}/${e(ws.name)}/apps/${e(app.name)}/`, reason: "" };
  }
  let host = (wildcard ?? "").trim().replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
  if (!host.includes("*")) {
    return {
      href: "",
      reason: "Subdomain apps need a wildcard access URL: start the server with --wildcard-access-url.",
    };
  }
  host = host.replace("*", `${app.name}--${ws.name}--${ws.owner}`);
  return { href: `//${host}/`, reason: "" };
}

export function capitalize(s: string): string {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

/** startupLabel is a startup script's status as a badge says it. */
export function startupLabel(st: StartupScriptStatus): { text: string; tone: Tone } {
  switch (st.status) {
    case StartupScriptRunning:
      return { text: "Startup running", tone: "info" };
    case StartupScriptSucceeded:
      return { text: "Startup OK", tone: "ok" };
    case StartupScriptFailed:
      return {
        text: st.exit_code != null && st.exit_code >= 0 ? `Startup failed (exit ${st.exit_code})` : "Startup failed",
        tone: "error",
      };
    case StartupScriptTimedOut:
      return { text: "Startup timed out", tone: "error" };
  }
  return { text: `Startup ${st.status}`, tone: "neutral" };
}

/**
 * agentCommand is what to run inside a new workspace to start its agent:
 * the install one-liner when the server gives one (install_command, from
 * servers that serve /install.sh), else the command `tether create` prints,
 * for a machine that has the tether binary.
 */
export function agentCommand(resp: { agent_token: string; agent_url: string; install_command?: string }): string {
  if (resp.install_command) return resp.install_command;
  return `TETHER_AGENT_TOKEN=${resp.agent_token} tether agent --url ${resp.agent_url}`;
}

/** formatDate writes a time as a short local date and time. */
export function formatDate(t: string | null | undefined): string {
  if (!t) return "never";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return "unknown";
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
