import assert from "node:assert/strict";
import { test } from "node:test";
import { requestHeaders } from "./api";
import { CSRFHeader } from "./tether.gen";

test("every API request carries the CSRF header", () => {
  for (const json of [false, true]) {
    const h = requestHeaders(json);
    assert.equal(h["Tether-CSRF"], "1", "the header the server checks (tether.CSRFHeader)");
    assert.equal(h["Content-Type"], json ? "application/json" : undefined);
  }
  assert.equal(CSRFHeader, "Tether-CSRF");
});
