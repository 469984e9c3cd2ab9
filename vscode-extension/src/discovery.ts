/**
 * Finding the `cell-lsp` binary.
 *
 * Candidates are tried in a fixed order — the `CELL_LSP_PATH` environment variable, the
 * `cell.server.path` setting, the binary bundled in the extension (`server/cell-lsp`), then
 * `PATH` — and each one is *verified* by running `<bin> --version` and checking that it prints
 * `cell-lsp <version>`. A path that exists is not enough: a stale build, a binary for another
 * architecture or an unrelated program of the same name would otherwise fail later with an
 * opaque "connection closed" from the language client.
 *
 * This module deliberately does not import `vscode`: it runs in plain Node, so the tests drive
 * it with real executables (the cargo-built server, a missing path, a script that fails,
 * a script that prints something else).
 */

import { type ExecFileException, execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Where a candidate came from, in the order they are tried. */
export type CandidateSource = "env" | "setting" | "bundled" | "path";

/** A path that may hold a `cell-lsp` binary, and why we look there. */
export interface Candidate {
  source: CandidateSource;
  /** Absolute path of the executable. */
  path: string;
  /** Human description of the origin, e.g. "CELL_LSP_PATH" or "the bundled server". */
  origin: string;
}

/** The outcome of verifying one candidate. */
export type Attempt =
  | { candidate: Candidate; ok: true; version: string }
  | { candidate: Candidate; ok: false; reason: string };

/** Result of a discovery: the first working server, if any, and every attempt made. */
export interface Discovery {
  server?: { path: string; version: string; candidate: Candidate };
  attempts: Attempt[];
}

/** Inputs of a discovery; everything the outside world contributes is passed in. */
export interface DiscoveryOptions {
  /** Environment to read `CELL_LSP_PATH` and `PATH` from (usually `process.env`). */
  env: NodeJS.ProcessEnv;
  /** Value of the `cell.server.path` setting; empty or undefined means unset. */
  settingPath?: string;
  /** Root of the installed extension; the bundled server is `<root>/server/cell-lsp`. */
  extensionPath: string;
  /** Folder that relative `cell.server.path` values are resolved against. */
  workspaceFolder?: string;
  /** Time allowed for `<bin> --version`. */
  timeoutMs?: number;
  /** Platform, for the executable name (`cell-lsp.exe` on Windows). */
  platform?: NodeJS.Platform;
}

/** Name of the environment variable that overrides every other candidate. */
export const ENV_VAR = "CELL_LSP_PATH";

const DEFAULT_TIMEOUT_MS = 5000;

/** `cell-lsp 0.1.0` (clap's `--version` output), possibly followed by more words. */
const VERSION_LINE = /^cell-lsp (\d+\.\d+\.\d+[0-9A-Za-z.+-]*)\s*$/m;

/** Lists the candidates in priority order, without touching the disk beyond `PATH` lookup. */
export function candidates(opts: DiscoveryOptions): Candidate[] {
  const platform = opts.platform ?? process.platform;
  const exe = platform === "win32" ? "cell-lsp.exe" : "cell-lsp";
  const out: Candidate[] = [];

  const fromEnv = opts.env[ENV_VAR]?.trim();
  if (fromEnv) {
    out.push({ source: "env", path: expand(fromEnv, opts.workspaceFolder), origin: ENV_VAR });
  }
  const fromSetting = opts.settingPath?.trim();
  if (fromSetting) {
    out.push({
      source: "setting",
      path: expand(fromSetting, opts.workspaceFolder),
      origin: "setting cell.server.path",
    });
  }
  out.push({
    source: "bundled",
    path: path.join(opts.extensionPath, "server", exe),
    origin: "the server bundled with the extension",
  });
  const onPath = lookupOnPath(exe, opts.env, platform);
  if (onPath) {
    out.push({ source: "path", path: onPath, origin: "PATH" });
  }
  return out;
}

/**
 * Tries every candidate in order and returns the first that answers `--version` correctly,
 * together with all attempts (including the failed ones before it, so callers can warn that an
 * explicit override was skipped).
 */
export async function discover(opts: DiscoveryOptions): Promise<Discovery> {
  const attempts: Attempt[] = [];
  for (const candidate of candidates(opts)) {
    const attempt = await verify(candidate, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    attempts.push(attempt);
    if (attempt.ok) {
      return {
        server: { path: candidate.path, version: attempt.version, candidate },
        attempts,
      };
    }
  }
  if (!attempts.some((a) => a.candidate.source === "path")) {
    // Record the PATH miss too, so the failure report lists every place we looked.
    attempts.push({
      candidate: { source: "path", path: "cell-lsp", origin: "PATH" },
      ok: false,
      reason: "not found on PATH",
    });
  }
  return { attempts };
}

/** Runs `<candidate> --version` and checks that it identifies itself as `cell-lsp`. */
export async function verify(candidate: Candidate, timeoutMs: number): Promise<Attempt> {
  const fail = (reason: string): Attempt => ({ candidate, ok: false, reason });
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(candidate.path);
  } catch {
    return fail("does not exist");
  }
  if (stat.isDirectory()) {
    return fail("is a directory, not an executable");
  }
  const run = await execute(candidate.path, ["--version"], timeoutMs);
  if (run.error) {
    return fail(run.error);
  }
  const match = VERSION_LINE.exec(run.stdout);
  if (!match) {
    return fail(`\`--version\` printed ${quote(run.stdout)}, expected "cell-lsp <version>"`);
  }
  return { candidate, ok: true, version: match[1] };
}

/**
 * A multi-line explanation of a failed discovery: every candidate with the reason it was
 * rejected, then how to fix it. Shown in the output channel and (first line) in the error
 * notification.
 */
export function describeFailure(discovery: Discovery): string {
  const lines = ["Could not find a working cell-lsp server. Tried, in order:"];
  for (const a of discovery.attempts) {
    lines.push(`  - ${a.candidate.origin}: ${a.candidate.path} — ${a.ok ? "ok" : a.reason}`);
  }
  lines.push(
    "Fix: install the server (`cargo install --path cell-lsp` from the Cell repository, or",
    "`cargo build --release -p cell-lsp`), then either put it on PATH, set the setting",
    `"cell.server.path" to its absolute path, or set ${ENV_VAR} before starting VS Code.`,
    "Check it with `cell-lsp --version`: it must print `cell-lsp <version>`.",
  );
  return lines.join("\n");
}

/** Candidates tried before the one that worked and rejected: explicit overrides that failed. */
export function skippedOverrides(discovery: Discovery): Attempt[] {
  return discovery.attempts.filter(
    (a) => !a.ok && (a.candidate.source === "env" || a.candidate.source === "setting"),
  );
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** What a finished child process left behind. */
export interface Execution {
  stdout: string;
  stderr: string;
  /** Exit status, or null when the process could not start or was killed. */
  code: number | null;
  /** Why the run counts as failed, or undefined when it exited with 0. */
  error?: string;
}

/**
 * Runs a program without a shell, never rejects, and explains any failure in one line
 * (used for `--version` here and for `--check` / `index` by the commands).
 */
export function execute(file: string, args: string[], timeoutMs: number, cwd?: string): Promise<Execution> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, cwd, maxBuffer: 16 * 1024 * 1024, windowsHide: true },
      (err, stdout, stderr) => {
        const out = { stdout: String(stdout), stderr: String(stderr) };
        if (!err) {
          resolve({ ...out, code: 0 });
          return;
        }
        const code = typeof err.code === "number" ? err.code : null;
        resolve({ ...out, code, error: explain(err, out.stderr, `\`${args.join(" ")}\``, timeoutMs) });
      },
    );
  });
}

function explain(err: ExecFileException, stderr: string, command: string, timeoutMs: number): string {
  switch (err.code) {
    case "ENOENT":
      return "does not exist";
    case "EACCES":
      return "is not executable (chmod +x it)";
    case "ENOEXEC":
      return "is not a program this system can run (wrong architecture or corrupt file)";
  }
  if (err.killed && err.signal === "SIGTERM") {
    return `did not answer ${command} within ${timeoutMs} ms`;
  }
  if (err.signal) {
    return `was killed by ${err.signal}`;
  }
  const detail = firstLine(stderr);
  const status = typeof err.code === "number" ? `exited with code ${err.code}` : err.message;
  return detail ? `${status}: ${detail}` : status;
}

function lookupOnPath(exe: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string | undefined {
  const sep = platform === "win32" ? ";" : ":";
  for (const dir of (env.PATH ?? "").split(sep)) {
    if (!dir) {
      continue;
    }
    const full = path.join(dir, exe);
    try {
      if (fs.statSync(full).isFile()) {
        return full;
      }
    } catch {
      // Not in this directory; keep looking.
    }
  }
  return undefined;
}

/** `~` and `~/x` → the home directory; relative paths → against the workspace folder. */
function expand(p: string, workspaceFolder: string | undefined): string {
  let out = p;
  if (out === "~" || out.startsWith("~/")) {
    out = path.join(os.homedir(), out.slice(1));
  }
  if (!path.isAbsolute(out) && workspaceFolder) {
    out = path.resolve(workspaceFolder, out);
  }
  return out;
}

function firstLine(s: string): string {
  return s.split(/\r?\n/).find((l) => l.trim() !== "")?.trim() ?? "";
}

function quote(s: string): string {
  const line = s.trim();
  if (line === "") {
    return "nothing";
  }
  const short = line.length > 80 ? `${line.slice(0, 80)}…` : line;
  return JSON.stringify(short);
}
