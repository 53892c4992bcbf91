import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRoute, safeRedirect, terminalHref } from "./routes";

test("parseRoute", () => {
  const cases: [string, ReturnType<typeof parseRoute>][] = [
    ["/", { page: "workspaces" }],
    ["/login", { page: "login" }],
    ["/health", { page: "health" }],
    ["/@alice/dev/terminal", { page: "terminal", owner: "alice", workspace: "dev" }],
    ["/@alice/dev/terminal/", { page: "terminal", owner: "alice", workspace: "dev" }],
    ["/@alice/dev", { page: "notfound" }],
    ["/@alice/dev/apps/web/", { page: "notfound" }],
    ["/@alice/%E0%A4%A/terminal", { page: "notfound" }],
    ["/nothing", { page: "notfound" }],
  ];
  for (const [path, want] of cases) assert.deepEqual(parseRoute(path), want, path);
});

test("terminalHref round-trips through parseRoute", () => {
  assert.equal(terminalHref("alice", "dev"), "/@alice/dev/terminal");
  assert.deepEqual(parseRoute(terminalHref("bob", "my-box")), { page: "terminal", owner: "bob", workspace: "my-box" });
});

test("safeRedirect stays on the site", () => {
  const cases: [string | null, string][] = [
    [null, "/"],
    ["", "/"],
    ["/health", "/health"],
    ["/@alice/dev/terminal?session=abc", "/@alice/dev/terminal?session=abc"],
    ["//evil.example/", "/"],
    ["/\\evil.example/", "/"],
    ["https://evil.example/", "/"],
    ["javascript:alert(1)", "/"],
    ["/login?redirect=/login", "/"],
  ];
  for (const [param, want] of cases) assert.equal(safeRedirect(param), want, String(param));
});
