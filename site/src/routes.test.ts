import assert from "node:assert/strict";
import { test } from "node:test";
import cases from "../testdata/route-cases.json";
import { isSPAPage, parseRoute, safeRedirect, terminalHref } from "./routes";
import table from "./routes.json";

// The same cases run in Go (site/routes_test.go), against the server's
// side of routes.json.
test("parseRoute", () => {
  for (const { path, route } of cases) assert.deepEqual(parseRoute(path), route, path);
  assert.deepEqual(parseRoute("/@alice/%E0%A4%A/terminal"), { page: "notfound" });
});

test("the cases cover every page of routes.json", () => {
  const covered = new Set(cases.map((c) => c.route.page));
  for (const { page } of table.pages) assert.ok(covered.has(page), `no case in testdata/route-cases.json for ${page}`);
});

test("terminalHref round-trips through parseRoute", () => {
  assert.equal(terminalHref("alice", "dev"), "/@alice/dev/terminal");
  assert.deepEqual(parseRoute(terminalHref("bob", "my-box")), { page: "terminal", owner: "bob", workspace: "my-box" });
});

test("safeRedirect stays on the site", () => {
  const origin = "https://tether.example.com";
  const home = origin + "/";
  const cases: [string | null, string][] = [
    [null, home],
    ["", home],
    ["/health", origin + "/health"],
    ["/@alice/dev/terminal?session=abc", origin + "/@alice/dev/terminal?session=abc"],
    ["/@alice/dev/apps/web/?q=1#top", origin + "/@alice/dev/apps/web/?q=1#top"],
    ["/api/v2/applications/auth-redirect?redirect_uri=x", origin + "/api/v2/applications/auth-redirect?redirect_uri=x"],
    ["/a/b/../c", origin + "/a/c"],
    // Issue 10's open redirects, and their cousins.
    ["//evil.example/", home],
    ["/.//evil.example/@x/y/terminal", home],
    ["/%2e//evil.example/", home],
    ["/%2E//evil.example/", home],
    ["/a/..//evil.example/", home],
    ["/././/evil.example/", home],
    ["/\\evil.example/", home],
    ["\\evil.example/", home],
    ["\\\\evil.example/", home],
    ["/\\/evil.example/", home],
    ["/%5Cevil.example/", origin + "/%5Cevil.example/"],
    ["/\t/evil.example/", home],
    ["/\n/evil.example/", home],
    ["/\r\n/evil.example/", home],
    ["\t//evil.example/", home],
    ["/ /evil.example/", origin + "/%20/evil.example/"],
    ["https://evil.example/", home],
    ["https://tether.example.com.evil.example/", home],
    ["http://tether.example.com/", home],
    ["javascript:alert(1)", home],
    ["/javascript:alert(1)", origin + "/javascript:alert(1)"],
    ["data:text/html,hi", home],
    ["/login?redirect=/login", home],
    ["/login", home],
  ];
  for (const [param, want] of cases) {
    const got = safeRedirect(param, origin);
    assert.equal(got, want, JSON.stringify(param));
    assert.equal(new URL(got).origin, origin, JSON.stringify(param));
  }
});

test("isSPAPage: other documents need a page load", () => {
  for (const p of ["/", "/workspaces", "/login", "/health"]) assert.equal(isSPAPage(p), true, p);
  for (const p of ["/@alice/dev/terminal", "/@alice/dev/apps/web/", "/api/v2/applications/auth-redirect", "/nothing"]) {
    assert.equal(isSPAPage(p), false, p);
  }
});
