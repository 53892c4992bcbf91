// A development server: rebuilds src/ on every save and serves it the way
// the Go handler does (assets, and index.html for every other path),
// proxying /api (WebSockets included) to a running `tether server`.
//
//   TETHER_URL=http://127.0.0.1:3000 PORT=5173 npm run dev
//
// The proxy rewrites Host and Origin to the server's, so the server sees
// same-origin requests; that is for local development only.

import * as esbuild from "esbuild";
import { readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildOptions, entryFiles, indexHTML } from "./build.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const target = new URL(process.env.TETHER_URL ?? "http://127.0.0.1:3000");
const port = Number(process.env.PORT ?? 5173);
const out = path.join(here, ".dev");

const types = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".svg": "image/svg+xml",
};

let index = "<!doctype html><p>Building…</p>";
const ctx = await esbuild.context({
  ...buildOptions,
  outdir: path.join(out, "assets"),
  entryNames: "[name]",
  chunkNames: "[name]-[hash]",
  sourcemap: "linked",
  logLevel: "info",
  plugins: [
    {
      name: "index",
      setup(b) {
        b.onEnd(async (r) => {
          if (!r.metafile) return;
          const html = await indexHTML({ ...entryFiles(r.metafile, out), favicon: "/favicon.svg" });
          index = html.replace(/^.*rel="license".*\n/m, "");
        });
      },
    },
  ],
});
await ctx.watch();

const proxied = (p) => p.startsWith("/api/") || p === "/derp" || p.startsWith("/derp/");

function proxyHeaders(h) {
  const headers = { ...h, host: target.host };
  if (headers.origin) headers.origin = target.origin;
  return headers;
}

const server = http.createServer(async (req, res) => {
  const p = new URL(req.url, "http://x").pathname;
  if (proxied(p)) {
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: proxyHeaders(req.headers) },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", (err) => {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: `dev proxy: cannot reach ${target.origin}`, detail: String(err) }));
    });
    req.pipe(up);
    return;
  }
  if (p === "/favicon.svg") {
    res.writeHead(200, { "content-type": types[".svg"] });
    res.end(await readFile(path.join(here, "src/favicon.svg")));
    return;
  }
  if (p.startsWith("/assets/")) {
    const file = path.join(out, path.normalize(p).replace(/^(\.\.[/\\])+/, ""));
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
    return;
  }
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" });
  res.end(index);
});

// WebSockets (the terminal): pass the upgrade through as raw bytes.
server.on("upgrade", (req, socket, head) => {
  if (!proxied(new URL(req.url, "http://x").pathname)) {
    socket.destroy();
    return;
  }
  const up = net.connect(Number(target.port || 80), target.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [k, v] of Object.entries(proxyHeaders(req.headers))) {
      for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
    }
    up.write(lines.join("\r\n") + "\r\n\r\n");
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  up.on("error", () => socket.destroy());
  socket.on("error", () => up.destroy());
});

server.listen(port, "127.0.0.1", () => {
  console.log(`dashboard on http://127.0.0.1:${port}/, API proxied to ${target.origin}`);
});
