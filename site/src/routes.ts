// Client-side routes. The server answers every non-API path with the same
// index.html, so the path alone decides which page to show.

export type Route =
  | { page: "login" }
  | { page: "workspaces" }
  | { page: "health" }
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

/**
 * safeRedirect returns where to go after signing in: a path on this site
 * from the redirect parameter, or the dashboard. Anything that could leave
 * the site ("//evil", "https:", "/\evil") falls back to "/".
 */
export function safeRedirect(param: string | null): string {
  if (!param || !param.startsWith("/") || param.startsWith("//") || param.includes("\\")) return "/";
  try {
    const u = new URL(param, "http://x.invalid");
    if (u.origin !== "http://x.invalid") return "/";
    if (u.pathname === "/login") return "/";
    return u.pathname + u.search + u.hash;
  } catch {
    return "/";
  }
}
