// Client-side routes. The pages and their paths are listed once, in
// routes.json, which the server reads too (site/routes.go): it serves
// index.html only at those paths, and 404 elsewhere. The path alone
// decides which page to show.

import table from "./routes.json";

export type Route =
  | { page: "login" }
  | { page: "workspaces" }
  | { page: "health" }
  | { page: "terminal"; owner: string; workspace: string }
  | { page: "notfound" };

/**
 * matchPath matches pathname (percent-encoded, as location.pathname is)
 * against a pattern of routes.json, segment by segment: "{name}" takes one
 * non-empty segment, "@{name}" one that starts with "@"; one trailing slash
 * is allowed after a pattern other than "/". It returns the parameters,
 * still encoded, or null.
 */
export function matchPath(pattern: string, pathname: string): Record<string, string> | null {
  const want = pattern.split("/").slice(1);
  let segs = pathname.split("/").slice(1);
  if (segs.length === want.length + 1 && segs[segs.length - 1] === "" && pattern !== "/") segs = segs.slice(0, -1);
  if (segs.length !== want.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const m = /^([^{]*)\{(\w+)\}$/.exec(want[i]);
    if (m) {
      const [, lit, name] = m;
      if (!segs[i].startsWith(lit) || segs[i].length === lit.length) return null;
      params[name] = segs[i].slice(lit.length);
    } else if (segs[i] !== want[i]) {
      return null;
    }
  }
  return params;
}

export function parseRoute(pathname: string): Route {
  for (const { page, paths } of table.pages) {
    for (const pattern of paths) {
      const params = matchPath(pattern, pathname);
      if (!params) continue;
      try {
        const decoded: Record<string, string> = {};
        for (const [k, v] of Object.entries(params)) decoded[k] = decodeURIComponent(v);
        return { page, ...decoded } as Route;
      } catch {
        return { page: "notfound" };
      }
    }
  }
  return { page: "notfound" };
}

export function terminalHref(owner: string, workspace: string): string {
  return `/@${encodeURIComponent(owner)}/${encodeURIComponent(workspace)}/terminal`;
}

/** spaPages are the pages this app renders itself; every other path is a
 * document of its own (the terminal, apps, API URLs) and needs a page load. */
const spaPages = new Set<Route["page"]>(["login", "workspaces", "health"]);

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
