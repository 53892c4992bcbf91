// Builds the dashboard into dist/, which the Go package embeds.
//
// The output must be byte-for-byte reproducible (a Go test rebuilds it and
// compares): esbuild is pinned in package-lock.json, file names carry
// content hashes, and nothing here writes times or absolute paths.

import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** esbuild options shared by the build and the dev server. */
export const buildOptions = {
  absWorkingDir: here,
  entryPoints: ["src/main.tsx"],
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox115", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  charset: "utf8",
  logLevel: "warning",
};

// base32 of a hash, the alphabet esbuild uses for [hash], so that every
// hashed file name looks alike to the Go handler.
function contentHash(data) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const b = createHash("sha256").update(data).digest();
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of b) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 8) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 8) break;
  }
  return out;
}

/** indexHTML fills the page template with the built files' URLs. */
export async function indexHTML(refs) {
  let html = await readFile(path.join(here, "src/index.html"), "utf8");
  for (const [k, v] of Object.entries(refs)) html = html.replaceAll(`{{${k}}}`, v);
  return html;
}

/** entryFiles finds the entry's JS and CSS among esbuild's outputs. */
export function entryFiles(metafile, outdir) {
  const refs = {};
  for (const [file, out] of Object.entries(metafile.outputs)) {
    if (out.entryPoint !== "src/main.tsx") continue;
    const url = "/" + path.relative(outdir, path.join(here, file)).split(path.sep).join("/");
    if (file.endsWith(".js")) refs.js = url;
    if (out.cssBundle) refs.css = "/" + path.relative(outdir, path.join(here, out.cssBundle)).split(path.sep).join("/");
  }
  if (!refs.js || !refs.css) throw new Error("build: entry outputs not found in metafile");
  return refs;
}

// licenses gathers the licence texts of the npm packages in the bundle:
// they are MIT licensed, which asks for their notices to travel along.
async function licenses(metafile) {
  const dirs = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) dirs.add(m[1]);
  }
  let text = "Third-party software bundled into Tether's dashboard.\n";
  for (const name of [...dirs].sort()) {
    const dir = path.join(here, "node_modules", name);
    const pkg = JSON.parse(await readFile(path.join(dir, "package.json"), "utf8"));
    text += `\n${"=".repeat(72)}\n${pkg.name} ${pkg.version} (${pkg.license})\n${"=".repeat(72)}\n\n`;
    const file = ["LICENSE", "LICENSE.md", "LICENSE.txt", "license"].find((f) => existsSync(path.join(dir, f)));
    text += file ? (await readFile(path.join(dir, file), "utf8")).trim() + "\n" : "(no licence file shipped)\n";
  }
  return text;
}

async function build() {
  const dist = path.join(here, "dist");
  const assets = path.join(dist, "assets");
  await rm(dist, { recursive: true, force: true });
  const result = await esbuild.build({
    ...buildOptions,
    outdir: assets,
    entryNames: "[name]-[hash]",
    chunkNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    minify: true,
    legalComments: "none",
    sourcemap: false,
  });
  const refs = entryFiles(result.metafile, dist);

  const favicon = await readFile(path.join(here, "src/favicon.svg"));
  const faviconName = `favicon-${contentHash(favicon)}.svg`;
  await writeFile(path.join(assets, faviconName), favicon);
  refs.favicon = `/assets/${faviconName}`;

  const lic = await licenses(result.metafile);
  const licName = `licenses-${contentHash(lic)}.txt`;
  await writeFile(path.join(assets, licName), lic);
  refs.licenses = `/assets/${licName}`;

  await mkdir(dist, { recursive: true });
  await writeFile(path.join(dist, "index.html"), await indexHTML(refs));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build();
}
