// Regions: the primary and the healthy workspace proxies, each of which
// serves the web terminal and apps. The dashboard measures its latency to
// each (LatencyPath, which every region answers to any origin), offers the
// lowest by default, and remembers a choice the user makes.

import { LatencyPath, type Region } from "./tether.gen";

/** The storage key of the user's choice: a region's name, or absent for
 * "the lowest latency". */
export const regionChoiceKey = "tether.region";

/**
 * pickRegion chooses where to open terminals and apps: the saved choice if
 * that region is still offered, else the region with the lowest measured
 * latency, else the primary. Regions not measured (yet, or unreachable)
 * are never picked automatically, except the primary.
 */
export function pickRegion(regions: Region[], latency: Map<string, number>, saved: string | null): Region | undefined {
  const offered = regions.filter((r) => r.healthy || r.primary);
  if (saved) {
    const r = offered.find((r) => r.name === saved);
    if (r) return r;
  }
  let best: Region | undefined;
  for (const r of offered) {
    const ms = latency.get(r.name);
    if (ms === undefined) continue;
    if (!best || ms < (latency.get(best.name) ?? Infinity)) best = r;
  }
  return best ?? offered.find((r) => r.primary);
}

/**
 * regionURL is where path on a region opens: relative on the primary (the
 * dashboard's own origin), absolute on a proxy.
 */
export function regionURL(region: Region | undefined, path: string): string {
  if (!region || region.primary) return path;
  return region.url.replace(/\/+$/, "") + path;
}

/**
 * measureLatency times a few requests to a region's latency endpoint and
 * returns the fastest, in milliseconds, or undefined if it does not answer.
 * The first request opens the connection and is not counted.
 */
export async function measureLatency(baseURL: string, tries = 3, timeoutMs = 3000): Promise<number | undefined> {
  const url = baseURL.replace(/\/+$/, "") + LatencyPath;
  let best: number | undefined;
  for (let i = 0; i <= tries; i++) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    const start = performance.now();
    try {
      const res = await fetch(url, { mode: "cors", cache: "no-store", credentials: "omit", signal: ctl.signal });
      if (!res.ok) return undefined;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
    const ms = performance.now() - start;
    if (i > 0 && (best === undefined || ms < best)) best = ms;
  }
  return best;
}
