import assert from "node:assert/strict";
import { test } from "node:test";
import { pickRegion, regionURL } from "./regions";
import type { Region } from "./tether.gen";

const primary: Region = { name: "primary", display_name: "Primary", url: "https://t.example.com", primary: true, healthy: true };
const edge: Region = { name: "edge", display_name: "Edge", url: "https://edge.example.com", primary: false, healthy: true };
const far: Region = { name: "far", display_name: "Far", url: "https://far.example.com/", primary: false, healthy: true };

test("pickRegion takes the lowest measured latency", () => {
  const lat = new Map([["primary", 100], ["edge", 5], ["far", 50]]);
  assert.equal(pickRegion([primary, edge, far], lat, null)?.name, "edge");
});

test("pickRegion keeps a saved choice while it is offered", () => {
  const lat = new Map([["primary", 100], ["edge", 5]]);
  assert.equal(pickRegion([primary, edge, far], lat, "primary")?.name, "primary");
  assert.equal(pickRegion([primary, far], lat, "edge")?.name, "primary", "a saved proxy that is gone falls back to measuring");
});

test("pickRegion skips unmeasured and unhealthy proxies, and falls back to the primary", () => {
  assert.equal(pickRegion([primary, edge], new Map(), null)?.name, "primary");
  const sick = { ...edge, healthy: false };
  assert.equal(pickRegion([primary, sick], new Map([["edge", 1], ["primary", 90]]), null)?.name, "primary");
  assert.equal(pickRegion([primary, sick], new Map([["edge", 1]]), "edge")?.name, "primary");
});

test("regionURL is relative on the primary and absolute on a proxy", () => {
  assert.equal(regionURL(primary, "/@a/dev/terminal"), "/@a/dev/terminal");
  assert.equal(regionURL(undefined, "/@a/dev/terminal"), "/@a/dev/terminal");
  assert.equal(regionURL(far, "/@a/dev/terminal"), "https://far.example.com/@a/dev/terminal");
});
