// Client-side routes. The server answers every non-API path with the same
// index.html, so the path alone decides which page to show.

export type Route =
  | { page: "login" }
  | { page: "workspaces" }
  | { page: "health" }
  | { page: "templates" }
  | { page: "users" }
  | { page: "account" }
  | { page: "terminal"; owner: string; workspace: string }
  | { page: "notfound" };

const terminalPath = /^\/@([^/]+)\/([^/]+)\/terminal\/?$/;

export function parseRoute(pathname: string): Route {
  switch (pathname) {
    case "/":
    case "/workspaces":
      return { page: "workspaces" };
    case "/login":
      return { page: "login" };
    case "/health":
      return { page: "health" };
    case "/templates":
      return { page: "templates" };
    case "/users":
      return { page: "users" };
    case "/account":
      return { page: "account" };
  }
  const m = terminalPath.exec(pathname);
  if (m) {
    try {
      return { page: "terminal", owner: decodeURIComponent(m[1]), workspace: decodeURIComponent(m[2]) };
    } catch {
      return { page: "notfound" };
    }
  }
  return { page: "notfound" };
}

export function terminalHref(owner: string, workspace: string): string {
  return `/@${encodeURIComponent(owner)}/${encodeURIComponent(workspace)}/terminal`;
}

/** spaPages are the pages this app renders itself; every other path is a
 * document of its own (the terminal, apps, API URLs) and needs a page load. */
const spaPages = new Set<Route["page"]>(["login", "workspaces", "health", "templates", "users", "account"]);

export function isSPAPage(pathname: string): boolean {
  return spaPages.has(parseRoute(pathname).page);
}

/**
 * safeRedirect returns where to go after signing in, as an absolute URL on
 * origin: the redirect parameter resolved against origin if it stays
 * there, else the dashboard. Resolving (rather than checking the raw text)
 * is what a browser does too: it drops tabs and newlines, reads "\" as
 * "/", and collapses "/./" and "/a/../", so "/.//evil", "/\evil" or
 * "/\t/evil" would leave the site if used as a path. The answer is never a
 * path that a browser could read as protocol-relative.
 */
export function safeRedirect(param: string | null, origin: string): string {
  const home = new URL("/", origin).href;
  if (!param || !param.startsWith("/")) return home;
  let u: URL;
  try {
    u = new URL(param, origin);
  } catch {
    return home;
  }
  if (u.origin !== new URL(origin).origin) return home;
  // A same-origin URL whose path starts with "//" is harmless as an
  // absolute URL, but means nothing here.
  if (u.pathname.startsWith("//") || u.pathname === "/login") return home;
  return u.href;
}
