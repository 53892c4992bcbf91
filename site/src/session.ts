// Which terminal session a page attaches to.
//
// A session id names a shell on the agent that outlives connections. The
// page keeps its id in two places: in the URL (?session=ID, so a reload, a
// bookmark or a copied link reattaches) and in sessionStorage, which is per
// tab and survives reloads. A new tab opened from the dashboard (with
// rel=noopener, so it does not inherit sessionStorage) and without
// ?session in its URL starts a new session.

const validID = /^[A-Za-z0-9._-]{1,128}$/;

/** newSessionID returns a random UUID (v4). crypto.randomUUID exists only
 * in secure contexts, and a dashboard served over plain http is not one. */
export function newSessionID(rand: (b: Uint8Array) => void = (b) => crypto.getRandomValues(b)): string {
  const b = new Uint8Array(16);
  rand(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** KeyValue is the part of Storage used here; null when storage is off. */
export interface KeyValue {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface SessionChoice {
  id: string;
  /** url is the page's URL with ?session=ID, or null if it already has it. */
  url: URL | null;
}

export function chooseSession(
  page: URL,
  storage: KeyValue | null,
  owner: string,
  workspace: string,
  newID: () => string = newSessionID,
): SessionChoice {
  const key = `tether.terminal.${owner}/${workspace}`;
  const fromURL = page.searchParams.get("session");
  let id = fromURL && validID.test(fromURL) ? fromURL : null;
  if (!id) {
    const stored = safeGet(storage, key);
    id = stored && validID.test(stored) ? stored : newID();
  }
  safeSet(storage, key, id);
  if (fromURL === id) return { id, url: null };
  const url = new URL(page.href);
  url.searchParams.set("session", id);
  return { id, url };
}

// Storage throws when the browser forbids it (private modes, policies);
// the URL alone still keeps the session then.
function safeGet(s: KeyValue | null, key: string): string | null {
  try {
    return s?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function safeSet(s: KeyValue | null, key: string, value: string): void {
  try {
    s?.setItem(key, value);
  } catch {
    // See safeGet.
  }
}
