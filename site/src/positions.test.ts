import assert from "node:assert/strict";
import { test } from "node:test";
import { Screen, Stream } from "./positions";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null) => (b ? new TextDecoder().decode(b) : null);

test("each offset is written once, whichever path brings it", () => {
  const screen = new Screen();
  screen.reset("a", 0);
  const relay = new Stream("a", 0);
  assert.equal(text(screen.take(relay, bytes("hello "))), "hello ");
  // The direct channel attaches at the screen's position; the relay still
  // brings what was in flight.
  const direct = new Stream("a", screen.offset);
  assert.equal(text(screen.take(direct, bytes("world"))), "world");
  assert.equal(text(screen.take(relay, bytes("wor"))), null);
  assert.equal(text(screen.take(relay, bytes("ld!"))), "!");
  assert.equal(text(screen.take(direct, bytes("!?"))), "?");
  assert.equal(screen.offset, 13);
  assert.deepEqual(screen.position(), { instance: "a", offset: 13 });
});

test("output of another session instance is not written", () => {
  const screen = new Screen();
  screen.reset("new", 100);
  const old = new Stream("old", 0);
  assert.equal(screen.take(old, bytes("stale")), null);
  assert.equal(old.offset, 5);
  assert.equal(screen.offset, 100);
});

test("a relay resumed at the screen's position continues it", () => {
  const screen = new Screen();
  screen.reset("a", 10);
  const direct = new Stream("a", 10);
  screen.take(direct, bytes("abc"));
  const relay = new Stream("a", screen.offset);
  assert.equal(text(screen.take(relay, bytes("def"))), "def");
  assert.equal(screen.offset, 16);
});
