/**
 * Paths and scratch files shared by the tests: the real `cell-lsp` built by cargo, temporary
 * directories, executable scripts, and the LSP fixture server.
 */

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { TestContext } from "node:test";

/** `vscode-extension/` (tests run from `out/test/…`). */
export const EXTENSION_ROOT = path.resolve(__dirname, "..", "..", "..");
/** The Cell repository root. */
export const REPO_ROOT = path.resolve(EXTENSION_ROOT, "..");

/**
 * The real `cell-lsp` binary: `$CELL_LSP_TEST_BIN`, else the release then debug build in
 * `$CARGO_TARGET_DIR` (default `<repo>/target`). Fails loudly when it is not built: these
 * tests are about real binaries, so there is nothing sensible to skip to.
 */
export function cellLspBinary(): string {
  const explicit = process.env.CELL_LSP_TEST_BIN;
  if (explicit) {
    return explicit;
  }
  const target = process.env.CARGO_TARGET_DIR ?? path.join(REPO_ROOT, "target");
  for (const profile of ["release", "debug"]) {
    const bin = path.join(target, profile, "cell-lsp");
    if (fs.existsSync(bin)) {
      return bin;
    }
  }
  throw new Error(
    `cell-lsp is not built under ${target}: run \`cargo build -p cell-lsp\` (or set CELL_LSP_TEST_BIN)`,
  );
}

/** The version cargo gives `cell-lsp` (the workspace package version). */
export function cargoVersion(): string {
  const manifest = fs.readFileSync(path.join(REPO_ROOT, "Cargo.toml"), "utf8");
  const section = manifest.split("[workspace.package]")[1] ?? "";
  const match = /^version\s*=\s*"([^"]+)"/m.exec(section);
  if (!match) {
    throw new Error("no version in [workspace.package] of the root Cargo.toml");
  }
  return match[1];
}

const scratch: string[] = [];
// Removed when the test process exits rather than after each test: a server shutting down in
// another test's `after` hook may still be writing its log into one of them.
process.on("exit", () => scratch.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A fresh directory, removed when the test process exits. */
export function tempDir(_t: TestContext, prefix = "cell-ext-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** Writes an executable `sh` script and returns its path. */
export function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

/**
 * An executable that behaves like a working `cell-lsp`: `--version`, `--stdio` (a minimal
 * JSON-RPC server that logs what it receives to `logFile`), `--check` and `index`. It stands in
 * for the server until `cell-lsp` implements these modes; see `fixtures/lsp-fixture-server.js`.
 */
export function fixtureServer(dir: string, name: string, logFile: string, opts: { crash?: boolean } = {}): string {
  const server = path.join(EXTENSION_ROOT, "test", "fixtures", "lsp-fixture-server.js");
  const crash = opts.crash ? "CELL_FIXTURE_CRASH=1 " : "";
  return script(dir, name, `${crash}CELL_FIXTURE_LOG='${logFile}' exec '${process.execPath}' '${server}' "$@"`);
}

/** One line of the fixture server's log. */
export interface FixtureEvent {
  argv?: string[];
  /** `RUST_LOG` as the process saw it (logged with `argv`). */
  rustLog?: string | null;
  method?: string;
  params?: Record<string, unknown>;
}

/** The fixture server's log so far (empty when it never ran). */
export function fixtureLog(logFile: string): FixtureEvent[] {
  if (!fs.existsSync(logFile)) {
    return [];
  }
  return fs
    .readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as FixtureEvent);
}

/** A Cargo workspace folder whose manifest depends on cell-sdk (or not). */
export function cargoWorkspace(t: TestContext, dependsOnCell: boolean): string {
  const dir = tempDir(t, "cell-ws-");
  const deps = dependsOnCell ? 'cell-sdk = { path = "../cell-sdk" }\n' : 'serde = "1"\n';
  fs.writeFileSync(
    path.join(dir, "Cargo.toml"),
    `[package]\nname = "app"\nversion = "0.1.0"\nedition = "2024"\n\n[dependencies]\n${deps}`,
  );
  fs.mkdirSync(path.join(dir, "src"));
  fs.writeFileSync(path.join(dir, "src", "main.rs"), "fn main() {}\n");
  return dir;
}
