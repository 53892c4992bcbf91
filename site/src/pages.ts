// List endpoints answer a page at a time: when more follow, the response's
// Link header names the next page, as a reference relative to the request
// (`<?after=CURSOR&limit=N>; rel="next"`).

/**
 * nextPage returns the API path (below /api/v2) of the page after the one
 * fetched from `current`, per its Link header, or null when it was the last.
 */
export function nextPage(current: string, link: string | null): string | null {
  if (!link) return null;
  for (const part of link.split(",")) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (!m || !/(^|;)\s*rel\s*=\s*"?next"?\s*(;|$)/.test(m[2])) continue;
    const base = new URL("/api/v2" + current, "http://api.invalid");
    const next = new URL(m[1], base);
    if (next.origin !== base.origin || !next.pathname.startsWith("/api/v2/")) return null;
    return next.pathname.slice("/api/v2".length) + next.search;
  }
  return null;
}
