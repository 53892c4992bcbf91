// Runs the unit tests (src/**/*.test.ts) with Node's test runner, after
// esbuild turns them into JavaScript; Node 20 cannot run TypeScript.

import * as esbuild from "esbuild";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, ".test-out");
const tests = readdirSync(path.join(here, "src"), { recursive: true })
  .filter((f) => String(f).endsWith(".test.ts"))
  .map((f) => path.join("src", String(f)));

await rm(out, { recursive: true, force: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: tests,
  outdir: out,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  jsx: "automatic",
  jsxImportSource: "preact",
  logLevel: "warning",
});
const files = tests.map((t) => path.join(out, path.relative("src", t).replace(/\.ts$/, ".mjs")));
const r = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
await rm(out, { recursive: true, force: true });
process.exit(r.status ?? 1);
