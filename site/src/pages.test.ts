import assert from "node:assert/strict";
import { test } from "node:test";
import { nextPage } from "./pages";

test("nextPage follows Link rel=next", () => {
  const cases: [string, string | null, string | null][] = [
    ["/workspaces?limit=1000", `<?after=alice%2Fdev&limit=1000>; rel="next"`, "/workspaces?after=alice%2Fdev&limit=1000"],
    ["/workspaces?owner=me", `<?after=x&owner=me>; rel=next`, "/workspaces?after=x&owner=me"],
    ["/users", `<?after=a>; rel="prev", <?after=b>; rel="next"`, "/users?after=b"],
    ["/users", null, null],
    ["/users", `<?after=a>; rel="prev"`, null],
    ["/users", `<https://evil.example/api/v2/users?after=a>; rel="next"`, null],
  ];
  for (const [current, link, want] of cases) assert.equal(nextPage(current, link), want, `${current} ${link}`);
});
