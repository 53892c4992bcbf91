import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseSession, newSessionID, type KeyValue } from "./session";

class MemoryStorage implements KeyValue {
  readonly m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
}

const page = "https://tether.example.com/@alice/dev/terminal";
let n = 0;
const fresh = () => `new-${++n}`;

test("a new tab starts a new session and puts it in the URL", () => {
  const s = new MemoryStorage();
  const got = chooseSession(new URL(page), s, "alice", "dev", fresh);
  assert.match(got.id, /^new-/);
  assert.equal(got.url?.searchParams.get("session"), got.id);
  assert.equal(s.getItem("tether.terminal.alice/dev"), got.id);
});

test("a reload reattaches to the session in the URL", () => {
  const s = new MemoryStorage();
  const first = chooseSession(new URL(page), s, "alice", "dev", fresh);
  const again = chooseSession(first.url!, s, "alice", "dev", fresh);
  assert.equal(again.id, first.id);
  assert.equal(again.url, null, "no URL change needed");
});

test("a link with ?session attaches to that session in a new tab", () => {
  const got = chooseSession(new URL(page + "?session=shared-1"), new MemoryStorage(), "alice", "dev", fresh);
  assert.equal(got.id, "shared-1");
  assert.equal(got.url, null);
});

test("the tab's stored session is used when the URL lost it", () => {
  const s = new MemoryStorage();
  s.setItem("tether.terminal.alice/dev", "kept-1");
  const got = chooseSession(new URL(page + "?x=1"), s, "alice", "dev", fresh);
  assert.equal(got.id, "kept-1");
  assert.equal(got.url?.search, "?x=1&session=kept-1");
});

test("sessions are per workspace", () => {
  const s = new MemoryStorage();
  s.setItem("tether.terminal.alice/dev", "kept-1");
  const got = chooseSession(new URL("https://t.example/@alice/other/terminal"), s, "alice", "other", fresh);
  assert.notEqual(got.id, "kept-1");
});

test("an invalid id in the URL is replaced", () => {
  const got = chooseSession(new URL(page + "?session=" + encodeURIComponent("a b<script>")), null, "alice", "dev", fresh);
  assert.match(got.id, /^new-/);
});

test("storage that throws is ignored", () => {
  const broken: KeyValue = {
    getItem() {
      throw new Error("denied");
    },
    setItem() {
      throw new Error("denied");
    },
  };
  const got = chooseSession(new URL(page), broken, "alice", "dev", fresh);
  assert.match(got.id, /^new-/);
});

test("newSessionID is a v4 UUID", () => {
  const id = newSessionID();
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(newSessionID(), id);
});
