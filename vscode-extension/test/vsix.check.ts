/**
 * Checks the packaged `.vsix` (run after `scripts/package.sh`; `npm run test:vsix`).
 *
 * The archive is read with yauzl — the zip library VS Code's own installer is built on — so the
 * check needs no `unzip` on the machine. The bundled server is extracted with the mode bits the
 * archive records (which is what VS Code does on install) and must then answer `--version` with
 * the version cargo gave it; a package that lost the executable bit fails here. Finally the
 * extracted extension is activated (with the `vscode` stub) with no override and an empty
 * `PATH`, and must pick its own bundled server.
 */

import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import * as yauzl from "yauzl";
import { EXTENSION_ROOT, cargoVersion, cargoWorkspace, tempDir } from "./support/env";
import { install, reset } from "./support/vscode-stub";

interface Entry {
  name: string;
  mode: number;
  data: Buffer;
}

function vsixPath(): string {
  const version = JSON.parse(fs.readFileSync(path.join(EXTENSION_ROOT, "package.json"), "utf8")).version;
  const file = process.env.CELL_VSIX ?? path.join(EXTENSION_ROOT, `cell-lsp-linux-x64-${version}.vsix`);
  if (!fs.existsSync(file)) {
    throw new Error(`${file} does not exist: run scripts/package.sh first (or set CELL_VSIX)`);
  }
  return file;
}

/** Every entry of the archive with its Unix mode and contents. */
function readZip(file: string): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) {
        reject(err ?? new Error("cannot open zip"));
        return;
      }
      const entries: Entry[] = [];
      zip.on("error", reject);
      zip.on("end", () => resolve(entries));
      zip.on("entry", (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) {
            reject(e ?? new Error(`cannot read ${entry.fileName}`));
            return;
          }
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("error", reject);
          stream.on("end", () => {
            entries.push({ name: entry.fileName, mode: (entry.externalFileAttributes >>> 16) & 0o7777, data: Buffer.concat(chunks) });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

/** Writes the entries under `dir`, with their recorded modes. */
function extract(entries: Entry[], dir: string): void {
  for (const e of entries) {
    const out = path.join(dir, e.name);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, e.data, { mode: e.mode || 0o644 });
  }
}

let cached: Promise<Entry[]> | undefined;
const entries = () => (cached ??= readZip(vsixPath()));

test("the .vsix holds the bundle, the server and the docs, and nothing else", async () => {
  const names = (await entries()).map((e) => e.name).sort();
  assert.deepEqual(names, [
    "[Content_Types].xml",
    "extension.vsixmanifest",
    "extension/LICENSE.txt",
    "extension/dist/extension.js",
    "extension/package.json",
    "extension/readme.md",
    "extension/server/cell-lsp",
  ]);
});

test("the .vsix targets linux-x64", async () => {
  const manifest = (await entries()).find((e) => e.name === "extension.vsixmanifest");
  assert.match(manifest?.data.toString("utf8") ?? "", /TargetPlatform="linux-x64"/);
});

test("the bundled server keeps its executable bit and answers --version", async (t) => {
  const all = await entries();
  const server = all.find((e) => e.name === "extension/server/cell-lsp");
  assert.ok(server, "server/cell-lsp is in the package");
  assert.equal(server.mode & 0o111, 0o111, `mode ${server.mode.toString(8)} is executable`);
  const dir = tempDir(t, "cell-vsix-");
  extract([server], dir);
  const out = execFileSync(path.join(dir, "extension", "server", "cell-lsp"), ["--version"], { encoding: "utf8" });
  assert.equal(out.trim(), `cell-lsp ${cargoVersion()}`);
});

test("the installed extension finds its bundled server with nothing else configured", async (t) => {
  const dir = tempDir(t, "cell-vsix-");
  extract(await entries(), dir);
  const root = path.join(dir, "extension");
  install();
  reset([cargoWorkspace(t, true)]);
  const saved = { path: process.env.PATH, env: process.env.CELL_LSP_PATH };
  process.env.PATH = tempDir(t, "cell-path-");
  delete process.env.CELL_LSP_PATH;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ext = require(path.join(root, "dist", "extension.js"));
  const context = { subscriptions: [] as { dispose(): unknown }[], extensionPath: root };
  try {
    const api = ext.activate(context);
    await api.ready;
    assert.deepEqual(api.server(), { path: path.join(root, "server", "cell-lsp"), version: cargoVersion() });
  } finally {
    await ext.deactivate();
    context.subscriptions.forEach((s) => s.dispose());
    process.env.PATH = saved.path;
    if (saved.env !== undefined) {
      process.env.CELL_LSP_PATH = saved.env;
    }
  }
});
