/**
 * `activate()` and the commands of the *bundled* extension (`dist/extension.js`, what the
 * `.vsix` ships), with `vscode` replaced by the stub in `support/vscode-stub.ts`.
 *
 * The language client inside the bundle is the real `vscode-languageclient`, talking JSON-RPC
 * over pipes to real processes: the cargo-built `cell-lsp` and the LSP fixture server, which
 * logs what it receives (for the argv and settings the extension sends).
 */

import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type TestContext, test } from "node:test";
import { changeSettings, fireFileEvent, install, output, reset, setExtensions, stub } from "./support/vscode-stub";
import {
  EXTENSION_ROOT,
  cargoVersion,
  cargoWorkspace,
  cellLspBinary,
  fixtureLog,
  fixtureServer,
  tempDir,
} from "./support/env";

install();

interface CellApi {
  ready: Promise<void>;
  state(): string;
  server(): { path: string; version: string } | undefined;
}
interface ExtensionModule {
  activate(context: unknown): CellApi;
  deactivate(): Promise<void>;
  COMMANDS: Record<string, string>;
}

/** The directory holding `cargo`, found before a test empties `PATH`. */
function cargoDir(): string {
  const dirs = (process.env.PATH ?? "").split(path.delimiter);
  dirs.push(path.join(process.env.CARGO_HOME ?? path.join(os.homedir(), ".cargo"), "bin"));
  for (const dir of dirs) {
    if (dir && fs.existsSync(path.join(dir, "cargo"))) {
      return dir;
    }
  }
  throw new Error("cargo is not on PATH: the real cell-lsp needs it for --check and index");
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const extension = require(path.join(EXTENSION_ROOT, "dist", "extension.js")) as ExtensionModule;
const manifest = JSON.parse(fs.readFileSync(path.join(EXTENSION_ROOT, "package.json"), "utf8"));

interface Setup {
  /** Workspace folder; by default one whose Cargo.toml depends on cell-sdk. */
  folder?: string;
  settings?: Record<string, unknown>;
  /** Other extensions installed and enabled (`rust-lang.rust-analyzer`). */
  extensions?: string[];
  /** `CELL_LSP_PATH` for this test (unset when undefined). */
  envPath?: string;
  /** Extension root; by default an empty directory (no bundled server). */
  extensionPath?: string;
}

/**
 * Activates the extension in a fresh stubbed editor. `PATH` holds only an empty directory, so
 * no `cell-lsp` installed on the machine leaks into a test. Deactivates when the test ends.
 */
function activate(t: TestContext, setup: Setup = {}): { api: CellApi; folder: string } {
  const folder = setup.folder ?? cargoWorkspace(t, true);
  reset([folder], setup.settings);
  stub.extensions = setup.extensions ?? [];
  const saved = { path: process.env.PATH, env: process.env.CELL_LSP_PATH };
  process.env.PATH = tempDir(t, "cell-path-");
  if (setup.envPath === undefined) {
    delete process.env.CELL_LSP_PATH;
  } else {
    process.env.CELL_LSP_PATH = setup.envPath;
  }
  const context = { subscriptions: [] as { dispose(): unknown }[], extensionPath: setup.extensionPath ?? tempDir(t) };
  const api = extension.activate(context);
  t.after(async () => {
    await extension.deactivate();
    context.subscriptions.forEach((s) => s.dispose());
    process.env.PATH = saved.path;
    if (saved.env === undefined) {
      delete process.env.CELL_LSP_PATH;
    } else {
      process.env.CELL_LSP_PATH = saved.env;
    }
  });
  return { api, folder };
}

function run(command: string): Promise<unknown> {
  const fn = stub.commands.get(command);
  assert.ok(fn, `command ${command} is registered`);
  return Promise.resolve(fn());
}

function methods(log: string): string[] {
  return fixtureLog(log)
    .map((e) => e.method ?? (e.argv ? `argv ${e.argv.join(" ")}` : "?"))
    .filter((m) => !m.startsWith("argv --version"));
}

/** Waits (bounded) until the fixture log shows `method`: the server handles `exit` on its own time. */
async function waitForMethod(log: string, method: string): Promise<void> {
  for (let i = 0; i < 200 && !methods(log).includes(method); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("activate() registers exactly the commands package.json contributes", async (t) => {
  const { api } = activate(t, { folder: cargoWorkspace(t, false) });
  await api.ready;
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command).sort();
  assert.deepEqual([...stub.commands.keys()].sort(), contributed);
  assert.deepEqual(Object.values(extension.COMMANDS).sort(), contributed);
});

test("package.json declares the settings the extension reads", () => {
  const props = Object.keys(manifest.contributes.configuration.properties).sort();
  assert.deepEqual(props, [
    "cell.check.onSave",
    "cell.rustAnalyzer.deduplicate",
    "cell.server.enable",
    "cell.server.env",
    "cell.server.path",
    "cell.trace.server",
  ]);
  assert.deepEqual(manifest.activationEvents, ["workspaceContains:**/Cargo.toml", "onLanguage:rust"]);
  assert.equal(manifest.engines.vscode, "^1.82.0");
});

test("every setting the code reads is declared in package.json, with the same default", () => {
  // A tidy check: src/extension.ts reads settings as `this.config().get<T>("key", default)`.
  const source = fs.readFileSync(path.join(EXTENSION_ROOT, "src", "extension.ts"), "utf8");
  const reads = [...source.matchAll(/this\.config\(\)\.get<.+?>\("([^"]+)", ([^)]+)\)/g)];
  const declared = manifest.contributes.configuration.properties;
  assert.ok(reads.length >= 4, "the regex still finds the reads");
  for (const [, key, dflt] of reads) {
    const prop = declared[`cell.${key}`];
    assert.ok(prop, `cell.${key} is declared`);
    assert.deepEqual(prop.default, JSON.parse(dflt), `default of cell.${key}`);
  }
  // The only declared setting the code does not read itself: the client reads it by id.
  const unread = Object.keys(declared).filter((k) => !reads.some(([, key]) => `cell.${key}` === k));
  assert.deepEqual(unread, ["cell.trace.server"]);
});

test("a workspace that does not mention cell-sdk does not start the server", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { folder: cargoWorkspace(t, false), envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  assert.equal(api.state(), "not-a-cell-workspace");
  assert.deepEqual(methods(log), [], "the server was never spawned");
  assert.match(output(), /no Cargo\.toml in this workspace mentions cell-sdk/);
  assert.deepEqual(stub.messages, [], "no notification for a plain Rust project");
});

test("a workspace that starts depending on cell-sdk starts the server when Cargo.toml is saved", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const folder = cargoWorkspace(t, false);
  const { api } = activate(t, { folder, envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  assert.equal(api.state(), "not-a-cell-workspace");
  const manifest = path.join(folder, "Cargo.toml");
  fs.appendFileSync(manifest, 'cell-sdk = "0.1"\n');
  await fireFileEvent("**/Cargo.toml", "change", manifest);
  assert.equal(api.state(), "running");
});

test("a failed server is not retried on every Cargo.toml save", async (t) => {
  const { api, folder } = activate(t, { envPath: "/nonexistent/cell-lsp" });
  await api.ready;
  assert.equal(api.state(), "not-found");
  await fireFileEvent("**/Cargo.toml", "change", path.join(folder, "Cargo.toml"));
  assert.equal(stub.messages.filter((m) => m.level === "error").length, 1, "still the one first error");
});

test("in a cell-sdk workspace it starts `cell-lsp --stdio` and initializes it", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const server = fixtureServer(dir, "cell-lsp", log);
  const { api, folder } = activate(t, { envPath: server });
  await api.ready;
  assert.equal(api.state(), "running");
  assert.deepEqual(api.server(), { path: server, version: "0.0.0-fixture" });
  const events = fixtureLog(log);
  assert.deepEqual(events.filter((e) => e.argv).map((e) => e.argv), [["--version"], ["--stdio"]]);
  const init = events.find((e) => e.method === "initialize");
  assert.deepEqual(init?.params?.initializationOptions, { checkOnSave: true, rustAnalyzer: false });
  assert.equal(init?.params?.rootPath, folder);
  await waitForMethod(log, "initialized");
  assert.ok(methods(log).includes("initialized"));
  assert.match(output(), /cell-lsp 0\.0\.0-fixture is running/);
});

test("cell.check.onSave reaches the server as an initialization option", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, {
    envPath: fixtureServer(dir, "cell-lsp", log),
    settings: { "cell.check.onSave": false },
  });
  await api.ready;
  const init = fixtureLog(log).find((e) => e.method === "initialize");
  assert.deepEqual(init?.params?.initializationOptions, { checkOnSave: false, rustAnalyzer: false });
});

test("with the rust-analyzer extension installed, the server is told to leave out what it gives", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, {
    envPath: fixtureServer(dir, "cell-lsp", log),
    extensions: ["rust-lang.rust-analyzer"],
  });
  await api.ready;
  const init = fixtureLog(log).find((e) => e.method === "initialize");
  assert.deepEqual(init?.params?.initializationOptions, { checkOnSave: true, rustAnalyzer: true });
});

test("cell.rustAnalyzer.deduplicate = never keeps everything even beside rust-analyzer", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, {
    envPath: fixtureServer(dir, "cell-lsp", log),
    extensions: ["rust-lang.rust-analyzer"],
    settings: { "cell.rustAnalyzer.deduplicate": "never" },
  });
  await api.ready;
  const init = fixtureLog(log).find((e) => e.method === "initialize");
  assert.deepEqual(init?.params?.initializationOptions, { checkOnSave: true, rustAnalyzer: false });
});

test("installing rust-analyzer while the server runs restarts it beside rust-analyzer", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  await setExtensions(["rust-lang.rust-analyzer"]);
  assert.equal(api.state(), "running");
  const inits = fixtureLog(log).filter((e) => e.method === "initialize");
  assert.deepEqual(
    inits.map((e) => (e.params?.initializationOptions as { rustAnalyzer?: boolean } | undefined)?.rustAnalyzer),
    [false, true],
  );
  // Another extension changing does not restart it again.
  await setExtensions(["rust-lang.rust-analyzer", "someone.else"]);
  assert.equal(fixtureLog(log).filter((e) => e.method === "initialize").length, 2);
});

test("cell.trace.server and cell.server.env reach the server process", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, {
    envPath: fixtureServer(dir, "cell-lsp", log),
    settings: { "cell.trace.server": "verbose", "cell.server.env": { RUST_LOG: "cell_lsp=debug" } },
  });
  await api.ready;
  const events = fixtureLog(log);
  assert.equal(events.find((e) => e.method === "initialize")?.params?.trace, "verbose");
  assert.equal(events.find((e) => e.argv?.[0] === "--stdio")?.rustLog, "cell_lsp=debug");
});

test("a server that keeps crashing once running is restarted 4 times, then reported once", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log, { crash: true }) });
  await api.ready;
  for (let i = 0; i < 400 && api.state() !== "failed"; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(api.state(), "failed");
  const spawns = fixtureLog(log).filter((e) => e.argv?.[0] === "--stdio").length;
  assert.equal(spawns, 5, "the first start and 4 restarts");
  const errors = stub.messages.filter((m) => m.level === "error").map((m) => m.text);
  assert.deepEqual(errors, [
    'Cell: cell-lsp crashed 5 times in three minutes and will not be restarted. Its errors are in the "Cell" output; "Cell: Restart Server" tries again.',
  ]);
  assert.match(output(), /fixture: crashing on purpose/);
});

test("deactivate() shuts the server down cleanly", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  await extension.deactivate();
  await waitForMethod(log, "exit");
  const ending = methods(log).filter((m) => m === "shutdown" || m === "exit");
  assert.deepEqual(ending, ["shutdown", "exit"]);
});

test("Restart Server stops the running server and starts a new one", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  await run("cell.restartServer");
  assert.equal(api.state(), "running");
  const seq = methods(log).filter((m) => ["initialize", "shutdown", "argv --stdio"].includes(m));
  assert.deepEqual(seq, ["argv --stdio", "initialize", "shutdown", "argv --stdio", "initialize"]);
});

test("Restart Server starts the server even where the cell-sdk check said no", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, { folder: cargoWorkspace(t, false), envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  assert.equal(api.state(), "not-a-cell-workspace");
  await run("cell.restartServer");
  assert.equal(api.state(), "running");
});

test('cell.server.enable = "never" keeps it off; "always" starts it without cell-sdk', async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api } = activate(t, {
    folder: cargoWorkspace(t, false),
    envPath: fixtureServer(dir, "cell-lsp", log),
    settings: { "cell.server.enable": "never" },
  });
  await api.ready;
  assert.equal(api.state(), "disabled");
  await changeSettings({ "cell.server.enable": "always" });
  assert.equal(api.state(), "running");
});

test("changing cell.server.path restarts on the new binary", async (t) => {
  const dir = tempDir(t);
  const logA = path.join(dir, "a.jsonl");
  const logB = path.join(dir, "b.jsonl");
  const a = fixtureServer(dir, "a/cell-lsp", logA);
  const b = fixtureServer(dir, "b/cell-lsp", logB);
  const { api } = activate(t, { settings: { "cell.server.path": a } });
  await api.ready;
  assert.equal(api.server()?.path, a);
  await changeSettings({ "cell.server.path": b });
  assert.equal(api.state(), "running");
  assert.equal(api.server()?.path, b);
  assert.ok(methods(logA).includes("shutdown"), "the old server was shut down");
  assert.ok(methods(logB).includes("initialize"), "the new server was initialized");
});

test("the bundled server is used when nothing overrides it", async (t) => {
  const ext = tempDir(t);
  const log = path.join(ext, "log.jsonl");
  const bundled = fixtureServer(ext, "server/cell-lsp", log);
  const { api } = activate(t, { extensionPath: ext });
  await api.ready;
  assert.equal(api.state(), "running");
  assert.equal(api.server()?.path, bundled);
});

test("a broken CELL_LSP_PATH falls back to the bundled server with a warning", async (t) => {
  const ext = tempDir(t);
  const bundled = fixtureServer(ext, "server/cell-lsp", path.join(ext, "log.jsonl"));
  const { api } = activate(t, { extensionPath: ext, envPath: "/nonexistent/cell-lsp" });
  await api.ready;
  assert.equal(api.server()?.path, bundled);
  const warnings = stub.messages.filter((m) => m.level === "warning");
  assert.equal(warnings.length, 1);
  assert.match(warnings[0].text, /CELL_LSP_PATH \(\/nonexistent\/cell-lsp\) does not exist; using the server bundled/);
});

test("no working server: an error with the fix, and the output lists every candidate", async (t) => {
  const dir = tempDir(t);
  const garbage = path.join(dir, "garbage");
  fs.writeFileSync(garbage, "#!/bin/sh\necho hello\n", { mode: 0o755 });
  const { api } = activate(t, { envPath: "/nonexistent/cell-lsp", settings: { "cell.server.path": garbage } });
  stub.answer = (m) => (m.items.includes("Open Settings") ? "Open Settings" : undefined);
  await api.ready;
  assert.equal(api.state(), "not-found");
  const errors = stub.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /no working cell-lsp found\. Install it or set "cell\.server\.path"/);
  assert.deepEqual(errors[0].items, ["Show Output", "Open Settings"]);
  const out = output();
  assert.match(out, /CELL_LSP_PATH: \/nonexistent\/cell-lsp — does not exist/);
  assert.match(out, /setting cell\.server\.path: .*garbage — `--version` printed "hello"/);
  assert.match(out, /the server bundled with the extension: .* — does not exist/);
  assert.match(out, /PATH: cell-lsp — not found on PATH/);
  assert.match(out, /Fix: install the server/);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(stub.executed, [{ command: "workbench.action.openSettings", args: ["cell.server.path"] }]);
});

test("the real cell-lsp starts over stdio and the extension reports it running", async (t) => {
  const { api } = activate(t, { envPath: cellLspBinary() });
  await api.ready;
  assert.equal(api.state(), "running");
  assert.deepEqual(api.server(), { path: cellLspBinary(), version: cargoVersion() });
  assert.deepEqual(
    stub.messages.filter((m) => m.level === "error"),
    [],
  );
});

test("Check Workspace runs `cell-lsp --check <folder>`; exit 1 means problems found", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api, folder } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  await run("cell.checkWorkspace");
  assert.ok(fixtureLog(log).some((e) => e.argv?.join(" ") === `--check ${folder}`));
  assert.match(output(), new RegExp(`error\\[fixture\\]: one problem in ${folder}`));
  assert.ok(stub.shown.includes("Cell"), "the output is shown");
  const warnings = stub.messages.filter((m) => m.level === "warning");
  assert.deepEqual(
    warnings.map((m) => m.text),
    ['Cell: check found problems; see the "Cell" output.'],
  );
});

test("Check Workspace with the real cell-lsp and cargo reports a clean workspace", async (t) => {
  const cargo = cargoDir();
  const { api, folder } = activate(t, { folder: cargoWorkspace(t, false), envPath: cellLspBinary() });
  await api.ready;
  // `--check` runs `cargo metadata`: give the command (not the server discovery) cargo.
  process.env.PATH = `${process.env.PATH}${path.delimiter}${cargo}`;
  await run("cell.checkWorkspace");
  assert.deepEqual(
    stub.messages.filter((m) => m.level !== "info"),
    [],
    `unexpected messages for ${folder}: ${output()}`,
  );
  assert.match(output(), /cell-lsp: no problems/);
});

test("Check Workspace reports the real cell-lsp's exit 2 (no cargo to run) with its message", async (t) => {
  const { api } = activate(t, { folder: cargoWorkspace(t, false), envPath: cellLspBinary() });
  await api.ready;
  await run("cell.checkWorkspace");
  const errors = stub.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /`cell-lsp --check` failed: exited with code 2: .*failed to start `cargo metadata`/);
  assert.match(output(), /exited with 2/);
});

test("in a multi-root workspace the commands run in the active editor's folder", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const first = cargoWorkspace(t, false);
  const second = cargoWorkspace(t, false);
  const { api } = activate(t, { folder: first, envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  stub.folders = [first, second];
  stub.activeFile = path.join(second, "src", "main.rs");
  await run("cell.checkWorkspace");
  assert.ok(fixtureLog(log).some((e) => e.argv?.join(" ") === `--check ${second}`), JSON.stringify(fixtureLog(log)));
});

test("the commands say so when no folder is open", async (t) => {
  const { api } = activate(t, { folder: cargoWorkspace(t, false) });
  await api.ready;
  stub.folders = [];
  await run("cell.showIndex");
  assert.deepEqual(
    stub.messages.map((m) => m.text),
    ["Cell: open a folder to run `cell-lsp index`."],
  );
});

test("Show Macro Index opens `cell-lsp index <folder>` output in an editor", async (t) => {
  const dir = tempDir(t);
  const log = path.join(dir, "log.jsonl");
  const { api, folder } = activate(t, { envPath: fixtureServer(dir, "cell-lsp", log) });
  await api.ready;
  await run("cell.showIndex");
  assert.deepEqual(stub.documents, [
    { content: `fixture index of ${folder}\nprovider celldb 0.1.0\n`, language: "plaintext" },
  ]);
});

test("Show Macro Index with the real cell-lsp shows its error instead of an empty editor", async (t) => {
  const { api } = activate(t, { folder: cargoWorkspace(t, false), envPath: cellLspBinary() });
  await api.ready;
  await run("cell.showIndex");
  assert.deepEqual(stub.documents, []);
  const errors = stub.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /`cell-lsp index` failed: exited with code 2: .*failed to start `cargo metadata`/);
});

test("Show Macro Index with the real cell-lsp and cargo opens the index of the folder", async (t) => {
  const cargo = cargoDir();
  const { api, folder } = activate(t, { folder: cargoWorkspace(t, false), envPath: cellLspBinary() });
  await api.ready;
  process.env.PATH = `${process.env.PATH}${path.delimiter}${cargo}`;
  await run("cell.showIndex");
  assert.equal(stub.documents.length, 1, output());
  // The folder depends on no provider: the index lists its packages and finds none.
  assert.match(stub.documents[0].content, /^\d+ packages, 0 providers$/m, `index of ${folder}`);
});

test("Show Output shows the Cell output channel", async (t) => {
  const { api } = activate(t, { folder: cargoWorkspace(t, false) });
  await api.ready;
  await run("cell.showOutput");
  assert.deepEqual(stub.shown, ["Cell"]);
});
