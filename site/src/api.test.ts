import assert from "node:assert/strict";
import { test } from "node:test";
import { csrfHeader, requestHeaders } from "./api";

test("every API request carries the CSRF header", () => {
  for (const json of [false, true]) {
    const h = requestHeaders(json);
    assert.equal(h[csrfHeader], "1");
    assert.equal(h["Content-Type"], json ? "application/json" : undefined);
  }
  assert.equal(csrfHeader, "Tether-CSRF", "the name the server checks (tether.CSRFHeader)");
});
