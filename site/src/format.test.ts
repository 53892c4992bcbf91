import assert from "node:assert/strict";
import { test } from "node:test";
import { agentCommand, appLink, connectionLabel, relativeTime, startupLabel, terminalsLabel } from "./format";
import type { App, Workspace } from "./tether.gen";

const ws: Workspace = {
  id: "1",
  name: "dev",
  owner: "alice",
  owner_id: "2",
  agent_status: "connected",
  last_seen: null,
  agent_ip: "fd7a:115c:a1e0::1",
  apps: [],
  created_at: "2025-01-01T12:00:00Z",
};
const app = (name: string, subdomain: boolean): App => ({ name, url: "http://127.0.0.1:8080", subdomain, share: "owner" });

test("appLink", () => {
  const cases: { name: string; app: App; wildcard?: string; href: string; unavailable?: boolean }[] = [
    { name: "path app", app: app("web", false), href: "/@alice/dev/apps/web/" },
    { name: "path app ignores wildcard", app: app("web", false), wildcard: "*.apps.example.com", href: "/@alice/dev/apps/web/" },
    { name: "subdomain app", app: app("code", true), wildcard: "*.apps.example.com", href: "//code--dev--alice.apps.example.com/" },
    { name: "wildcard with port", app: app("code", true), wildcard: "*.apps.example.com:8443", href: "//code--dev--alice.apps.example.com:8443/" },
    { name: "wildcard with scheme", app: app("code", true), wildcard: "https://*.apps.example.com", href: "//code--dev--alice.apps.example.com/" },
    { name: "suffix wildcard", app: app("code", true), wildcard: "*--apps.example.com", href: "//code--dev--alice--apps.example.com/" },
    { name: "no wildcard", app: app("code", true), href: "", unavailable: true },
    { name: "wildcard without star", app: app("code", true), wildcard: "apps.example.com", href: "", unavailable: true },
  ];
  for (const c of cases) {
    const got = appLink(ws, c.app, c.wildcard);
    assert.equal(got.href, c.href, c.name);
    assert.equal(got.reason !== "", Boolean(c.unavailable), c.name);
  }
});

test("connectionLabel", () => {
  assert.equal(connectionLabel(undefined), "");
  assert.equal(connectionLabel(null), "");
  assert.equal(connectionLabel({ path: "direct", endpoint: "203.0.113.7:41641", peers: 1 }), "Direct");
  assert.equal(connectionLabel({ path: "derp", derp_region: "code", peers: 2 }), "Relay (code)");
  assert.equal(connectionLabel({ path: "relay", endpoint: "198.18.1.2:3479", peers: 1 }), "UDP relay (198.18.1.2:3479)");
  assert.equal(connectionLabel({ path: "derp", peers: 1 }), "Relay");
});

test("relativeTime", () => {
  const now = Date.parse("2025-01-01T12:00:00Z");
  const cases: [string | null, string][] = [
    [null, "never"],
    ["garbage", "unknown"],
    ["2025-01-01T12:00:00Z", "just now"],
    ["2025-01-01T11:59:30Z", "30 s ago"],
    ["2025-01-01T11:55:00Z", "5 min ago"],
    ["2025-01-01T09:00:00Z", "3 h ago"],
    ["2024-12-25T12:00:00Z", "7 days ago"],
  ];
  for (const [t, want] of cases) assert.equal(relativeTime(t, now), want, String(t));
});

test("startupLabel", () => {
  const at = "2025-01-01T12:00:00Z";
  assert.deepEqual(startupLabel({ status: "running", exit_code: null, started_at: at, finished_at: null }), {
    text: "Startup running",
    tone: "info",
  });
  assert.deepEqual(startupLabel({ status: "succeeded", exit_code: 0, started_at: at, finished_at: at }), {
    text: "Startup OK",
    tone: "ok",
  });
  assert.deepEqual(startupLabel({ status: "failed", exit_code: 3, started_at: at, finished_at: at }), {
    text: "Startup failed (exit 3)",
    tone: "error",
  });
  assert.deepEqual(startupLabel({ status: "failed", exit_code: -1, started_at: at, finished_at: at }), {
    text: "Startup failed",
    tone: "error",
  });
  assert.deepEqual(startupLabel({ status: "timed_out", exit_code: -1, started_at: at, finished_at: at }), {
    text: "Startup timed out",
    tone: "error",
  });
});

test("agentCommand prefers the install one-liner", () => {
  const base = { agent_token: "tok", agent_url: "https://tether.example.com" };
  assert.equal(agentCommand(base), "TETHER_AGENT_TOKEN=tok tether agent --url https://tether.example.com");
  assert.equal(
    agentCommand({ ...base, install_command: "curl -fsSL https://tether.example.com/install.sh | TETHER_AGENT_TOKEN=tok sh" }),
    "curl -fsSL https://tether.example.com/install.sh | TETHER_AGENT_TOKEN=tok sh",
  );
});

test("terminalsLabel", () => {
  const cases: [number, number, string][] = [
    [0, 0, ""],
    [1, 0, "Web terminal: direct"],
    [0, 1, "Web terminal: relayed"],
    [2, 1, "3 web terminals: 2 direct, 1 relayed"],
    [0, 2, "2 web terminals: 2 relayed"],
  ];
  for (const [direct, relayed, want] of cases) assert.equal(terminalsLabel({ direct, relayed }), want, `${direct} direct, ${relayed} relayed`);
  assert.equal(terminalsLabel(undefined), "");
});
