/**
 * Server discovery against real executables: the `cell-lsp` cargo built, missing paths,
 * scripts that fail or print the wrong thing, directories and non-executable files.
 */

import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { candidates, describeFailure, type Discovery, discover, skippedOverrides } from "../src/discovery";
import { cargoVersion, cellLspBinary, script, tempDir } from "./support/env";

/** A `PATH` that holds nothing called `cell-lsp`. */
function emptyPath(t: Parameters<typeof tempDir>[0]): string {
  return tempDir(t, "cell-path-");
}

function reasons(d: Discovery): string[] {
  return d.attempts.map((a) => `${a.candidate.source}: ${a.ok ? `ok ${a.version}` : a.reason}`);
}

test("the env var wins and the real cell-lsp is verified with its cargo version", async (t) => {
  const d = await discover({
    env: { CELL_LSP_PATH: cellLspBinary(), PATH: emptyPath(t) },
    settingPath: "/nonexistent/setting/cell-lsp",
    extensionPath: tempDir(t),
  });
  assert.equal(d.server?.candidate.source, "env");
  assert.equal(d.server?.path, cellLspBinary());
  assert.equal(d.server?.version, cargoVersion());
  assert.equal(d.attempts.length, 1, "nothing after a working candidate is run");
});

test("the setting is used when the env var is unset", async (t) => {
  const d = await discover({
    env: { PATH: emptyPath(t) },
    settingPath: cellLspBinary(),
    extensionPath: tempDir(t),
  });
  assert.equal(d.server?.candidate.source, "setting");
  assert.equal(d.server?.version, cargoVersion());
});

test("the bundled server/cell-lsp is used when nothing overrides it", async (t) => {
  const ext = tempDir(t);
  fs.mkdirSync(path.join(ext, "server"));
  fs.copyFileSync(cellLspBinary(), path.join(ext, "server", "cell-lsp"));
  fs.chmodSync(path.join(ext, "server", "cell-lsp"), 0o755);
  const d = await discover({ env: { PATH: emptyPath(t) }, extensionPath: ext });
  assert.equal(d.server?.candidate.source, "bundled");
  assert.equal(d.server?.path, path.join(ext, "server", "cell-lsp"));
});

test("PATH is searched last", async (t) => {
  const bin = tempDir(t, "cell-bin-");
  fs.symlinkSync(cellLspBinary(), path.join(bin, "cell-lsp"));
  const d = await discover({
    env: { PATH: `${emptyPath(t)}:${bin}` },
    extensionPath: tempDir(t),
  });
  assert.deepEqual(reasons(d), ["bundled: does not exist", `path: ok ${cargoVersion()}`]);
  assert.equal(d.server?.path, path.join(bin, "cell-lsp"));
});

test("a missing env path falls through to the setting and is reported as skipped", async (t) => {
  const d = await discover({
    env: { CELL_LSP_PATH: "/nonexistent/cell-lsp", PATH: emptyPath(t) },
    settingPath: cellLspBinary(),
    extensionPath: tempDir(t),
  });
  assert.equal(d.server?.candidate.source, "setting");
  const skipped = skippedOverrides(d);
  assert.equal(skipped.length, 1);
  assert.equal(skipped[0].candidate.path, "/nonexistent/cell-lsp");
  assert.deepEqual(reasons(d).slice(0, 1), ["env: does not exist"]);
});

test("a binary that fails --version is rejected with its exit code and stderr", async (t) => {
  const dir = tempDir(t);
  const failing = script(dir, "cell-lsp", 'echo "error while loading shared libraries: libfoo.so" >&2\nexit 3');
  const d = await discover({ env: { PATH: emptyPath(t) }, settingPath: failing, extensionPath: dir });
  assert.equal(d.server, undefined);
  assert.equal(
    reasons(d)[0],
    "setting: exited with code 3: error while loading shared libraries: libfoo.so",
  );
});

test("a binary that prints garbage for --version is rejected, quoting what it printed", async (t) => {
  const dir = tempDir(t);
  const garbage = script(dir, "not-cell-lsp", 'echo "rust-analyzer 1.95.0 (2026-01-01)"');
  const d = await discover({ env: { CELL_LSP_PATH: garbage, PATH: emptyPath(t) }, extensionPath: dir });
  assert.equal(d.server, undefined);
  assert.equal(
    reasons(d)[0],
    'env: `--version` printed "rust-analyzer 1.95.0 (2026-01-01)", expected "cell-lsp <version>"',
  );
});

test("a binary that prints nothing is rejected", async (t) => {
  const dir = tempDir(t);
  const silent = script(dir, "silent", "exit 0");
  const d = await discover({ env: { CELL_LSP_PATH: silent, PATH: emptyPath(t) }, extensionPath: dir });
  assert.equal(reasons(d)[0], 'env: `--version` printed nothing, expected "cell-lsp <version>"');
});

test("a file without the executable bit is rejected with the fix", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "cell-lsp");
  fs.copyFileSync(cellLspBinary(), file);
  fs.chmodSync(file, 0o644);
  const d = await discover({ env: { CELL_LSP_PATH: file, PATH: emptyPath(t) }, extensionPath: dir });
  assert.equal(reasons(d)[0], "env: is not executable (chmod +x it)");
});

test("a directory is rejected", async (t) => {
  const dir = tempDir(t);
  const d = await discover({ env: { CELL_LSP_PATH: dir, PATH: emptyPath(t) }, extensionPath: dir });
  assert.equal(reasons(d)[0], "env: is a directory, not an executable");
});

test("a binary that hangs on --version is given up on", async (t) => {
  const dir = tempDir(t);
  const hanging = script(dir, "hangs", "exec sleep 30");
  const d = await discover({
    env: { CELL_LSP_PATH: hanging, PATH: emptyPath(t) },
    extensionPath: dir,
    timeoutMs: 300,
  });
  assert.equal(reasons(d)[0], "env: did not answer `--version` within 300 ms");
});

test("when nothing works, the report lists every candidate with its reason and the fix", async (t) => {
  const dir = tempDir(t);
  const garbage = script(dir, "garbage", "echo hello");
  const d = await discover({
    env: { CELL_LSP_PATH: "/nonexistent/cell-lsp", PATH: emptyPath(t) },
    settingPath: garbage,
    extensionPath: dir,
  });
  assert.equal(d.server, undefined);
  assert.deepEqual(reasons(d), [
    "env: does not exist",
    'setting: `--version` printed "hello", expected "cell-lsp <version>"',
    "bundled: does not exist",
    "path: not found on PATH",
  ]);
  const report = describeFailure(d);
  assert.match(report, /^Could not find a working cell-lsp server\. Tried, in order:/);
  assert.match(report, /CELL_LSP_PATH: \/nonexistent\/cell-lsp — does not exist/);
  assert.match(report, /setting cell\.server\.path: .*garbage — `--version` printed "hello"/);
  assert.match(report, /the server bundled with the extension: .*server\/cell-lsp — does not exist/);
  assert.match(report, /PATH: cell-lsp — not found on PATH/);
  assert.match(report, /Fix: install the server/);
});

test("relative and ~ setting paths are expanded", (t) => {
  const ws = tempDir(t);
  const rel = candidates({ env: {}, settingPath: "bin/cell-lsp", extensionPath: "/ext", workspaceFolder: ws });
  assert.equal(rel[0].path, path.join(ws, "bin", "cell-lsp"));
  const home = candidates({ env: {}, settingPath: "~/bin/cell-lsp", extensionPath: "/ext" });
  assert.equal(home[0].path, path.join(os.homedir(), "bin", "cell-lsp"));
});

test("blank env var and setting are treated as unset", () => {
  const list = candidates({ env: { CELL_LSP_PATH: "  ", PATH: "" }, settingPath: " ", extensionPath: "/ext" });
  assert.deepEqual(
    list.map((c) => c.source),
    ["bundled"],
  );
});
