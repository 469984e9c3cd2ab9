/**
 * The Cell extension: starts `cell-lsp --stdio` for Rust workspaces that use Cell and wires
 * the commands around it.
 *
 * Activation: `package.json` activates on `workspaceContains:**\/Cargo.toml` and
 * `onLanguage:rust`, and `activate()` then decides whether to start the server: with
 * `cell.server.enable = "auto"` (the default) only when some `Cargo.toml` in the workspace
 * mentions `cell-sdk`. VS Code's activation events cannot look inside files, so the cheap glob
 * gets us loaded and the content check keeps plain Rust projects free of a server they do not
 * need. The commands are registered in every case, so "Restart Server" is also how a user
 * starts it by hand where the check said no.
 *
 * Everything that can run without VS Code lives in `discovery.ts` (finding and verifying the
 * binary, running it) and `manifest.ts` (the `cell-sdk` check), which the tests drive with
 * real executables.
 */

import { type ChildProcess, spawn } from "node:child_process";
import * as vscode from "vscode";
import {
  CloseAction,
  type CloseHandlerResult,
  ErrorAction,
  type ErrorHandler,
  type ErrorHandlerResult,
  LanguageClient,
  type LanguageClientOptions,
  type MessageTransports,
  type MessageWriter,
  type ServerOptions,
  State,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-languageclient/node";
import { RUST_ANALYZER_EXTENSION, besideRustAnalyzer } from "./companion";
import { type Discovery, describeFailure, discover, execute, skippedOverrides } from "./discovery";
import { mentionsCellSdk } from "./manifest";

/** Command identifiers, as contributed in `package.json`. */
export const COMMANDS = {
  restartServer: "cell.restartServer",
  showIndex: "cell.showIndex",
  checkWorkspace: "cell.checkWorkspace",
  showOutput: "cell.showOutput",
} as const;

/** Where the extension stands, for the status item, the commands and the tests. */
export type ServerState =
  | "disabled" // cell.server.enable = "never"
  | "not-a-cell-workspace" // auto mode and no Cargo.toml mentions cell-sdk
  | "not-found" // no candidate binary answered --version
  | "starting"
  | "running"
  | "failed" // the binary was found but the client could not start or stopped
  | "stopped";

/** What `activate()` returns: a small handle for other extensions and for the tests. */
export interface CellApi {
  /** Settles when the start attempted during activation has finished (either way). */
  readonly ready: Promise<void>;
  state(): ServerState;
  /** The server binary in use (after discovery), with the version it reported. */
  server(): { path: string; version: string } | undefined;
}

const SECTION = "cell";
/** Settings that change how the server process is started: a change restarts it. */
const RESTART_SETTINGS = [
  "cell.server.path",
  "cell.server.env",
  "cell.server.enable",
  "cell.rustAnalyzer.deduplicate",
];
/** Directories never searched for `Cargo.toml` (build output, vendored JS, VCS data). */
const MANIFEST_EXCLUDE = "**/{target,node_modules,.git}/**";
const MANIFEST_LIMIT = 500;
/** `cell-lsp --check` / `index` may index a large dependency graph on a cold cache. */
const CLI_TIMEOUT_MS = 10 * 60 * 1000;

let extension: CellExtension | undefined;

/** Entry point called by VS Code. */
export function activate(context: vscode.ExtensionContext): CellApi {
  extension = new CellExtension(context);
  const ready = extension.startIfWanted();
  return {
    ready,
    state: () => extension?.state ?? "stopped",
    server: () => extension?.server,
  };
}

/** Called by VS Code on shutdown or when the extension is disabled. */
export async function deactivate(): Promise<void> {
  const ext = extension;
  extension = undefined;
  await ext?.dispose();
}

class CellExtension {
  state: ServerState = "stopped";
  server: { path: string; version: string } | undefined;

  private client: LanguageClient | undefined;
  private process: ServerProcess | undefined;
  private readonly output: vscode.OutputChannel;
  private readonly traceOutput: vscode.OutputChannel;
  private readonly status: vscode.LanguageStatusItem;
  /** The `rustAnalyzer` initialization option the running server was started with. */
  private startedBesideRustAnalyzer = false;
  /** Serializes start/stop so a restart racing a settings change cannot start two servers. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel("Cell");
    this.traceOutput = vscode.window.createOutputChannel("Cell LSP Trace");
    this.status = vscode.languages.createLanguageStatusItem("cell.server", { language: "rust" });
    this.status.name = "cell-lsp";
    this.status.command = { title: "Show Output", command: COMMANDS.showOutput };
    this.setState("stopped");

    const manifests = vscode.workspace.createFileSystemWatcher("**/Cargo.toml");
    context.subscriptions.push(
      this.output,
      this.traceOutput,
      this.status,
      manifests,
      vscode.commands.registerCommand(COMMANDS.restartServer, () => this.restart()),
      vscode.commands.registerCommand(COMMANDS.showIndex, () => this.showIndex()),
      vscode.commands.registerCommand(COMMANDS.checkWorkspace, () => this.checkWorkspace()),
      vscode.commands.registerCommand(COMMANDS.showOutput, () => this.output.show(true)),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
          this.log("Server settings changed; restarting.");
          // Returned (VS Code ignores it) so a caller that fires the event can await it.
          return this.serialized(async () => {
            await this.stop();
            await this.start({ force: false });
          });
        }
        return undefined;
      }),
      // A workspace may start depending on cell-sdk while it is open. Only that case: a server
      // that failed or was not found is not retried on every save of a manifest.
      manifests.onDidChange(() => this.startIfNewlyCell()),
      manifests.onDidCreate(() => this.startIfNewlyCell()),
      // rust-analyzer installed, enabled or removed while the server runs: the server learns
      // it only at initialization, so restart it when the answer changes.
      vscode.extensions.onDidChange(() => {
        if (this.client && this.besideRustAnalyzer() !== this.startedBesideRustAnalyzer) {
          this.log("rust-analyzer was installed or removed; restarting.");
          return this.serialized(async () => {
            await this.stop();
            await this.start({ force: false });
          });
        }
        return undefined;
      }),
    );
  }

  /** Starts the server unless disabled or (auto mode) not a Cell workspace. */
  startIfWanted(): Promise<void> {
    return this.serialized(() => this.start({ force: false }));
  }

  private startIfNewlyCell(): Promise<void> {
    return this.serialized(async () => {
      if (this.state === "not-a-cell-workspace") {
        await this.start({ force: false });
      }
    });
  }

  async dispose(): Promise<void> {
    await this.serialized(() => this.stop());
  }

  private async restart(): Promise<void> {
    await this.serialized(async () => {
      await this.stop();
      // An explicit restart starts the server even where the cell-sdk check said no.
      await this.start({ force: true });
    });
  }

  private async start({ force }: { force: boolean }): Promise<void> {
    const enable = this.config().get<string>("server.enable", "auto");
    if (enable === "never") {
      this.log('Not starting cell-lsp: "cell.server.enable" is "never".');
      this.setState("disabled");
      return;
    }
    if (enable === "auto" && !force && !(await this.isCellWorkspace())) {
      this.log(
        "Not starting cell-lsp: no Cargo.toml in this workspace mentions cell-sdk. " +
          'Run "Cell: Restart Server" or set "cell.server.enable" to "always" to start it anyway.',
      );
      this.setState("not-a-cell-workspace");
      return;
    }

    const found = await this.discoverServer({ forServer: true });
    if (!found) {
      return;
    }
    this.setState("starting");
    const server = new ServerProcess(found.path, this.serverEnv(), this.folder()?.uri.fsPath, (text) =>
      this.output.append(text),
    );
    const policy = new CrashPolicy((message) => this.crashed(message));
    const client = this.createClient(server, policy);
    this.client = client;
    this.process = server;
    // The client's own state is the truth once it runs: it restarts a crashed server by itself.
    client.onDidChangeState((e) => {
      if (this.client !== client) {
        return; // a client we are stopping on purpose
      }
      if (e.newState === State.Running) {
        policy.reachedRunning = true;
        this.setState("running");
      } else if (e.newState === State.Stopped && this.state === "running") {
        if (policy.restarting) {
          this.setState("starting");
        } else {
          this.setState("failed");
          this.log('cell-lsp stopped unexpectedly; "Cell: Restart Server" starts it again.');
        }
      }
    });
    try {
      await client.start();
      if (!policy.reachedRunning) {
        // 9.0.1 resolves `start()` when the server closes the connection during `initialize`.
        throw new Error("the server closed the connection during initialization");
      }
      this.log(`cell-lsp ${found.version} is running (${found.path}).`);
    } catch (err) {
      this.setState("failed");
      // The client only knows the pipe broke; the process knows why (its exit code and
      // stderr), so wait briefly for it to finish saying so.
      const exit = await server.exitWithin(2000);
      const why = exit ?? (err instanceof Error ? err.message : String(err));
      this.log(`cell-lsp ${found.version} at ${found.path} failed to start: ${why}`);
      void this.offerOutput(
        vscode.window.showErrorMessage(`Cell: cell-lsp ${found.version} failed to start: ${why}`, "Show Output"),
      );
    }
  }

  private async stop(): Promise<void> {
    const client = this.client;
    const server = this.process;
    this.client = undefined;
    this.process = undefined;
    if (client) {
      try {
        // `stop()` on a client that never started (or already died) rejects; that is fine.
        if (client.state !== State.Stopped) {
          await client.stop(2000);
        }
      } catch (err) {
        this.log(`Stopping cell-lsp: ${err instanceof Error ? err.message : String(err)}`);
      }
      await client.dispose().catch(() => undefined);
    }
    // A server that ignored `exit` must not outlive the client.
    await server?.terminate(2000);
    if (this.state === "running" || this.state === "starting" || this.state === "failed") {
      this.setState("stopped");
    }
  }

  private serverEnv(): NodeJS.ProcessEnv {
    const extra = this.config().get<Record<string, string>>("server.env", {});
    return { ...process.env, ...extra };
  }

  /** Whether the server should leave out what rust-analyzer gives (see `companion.ts`). */
  private besideRustAnalyzer(): boolean {
    const installed = vscode.extensions.getExtension(RUST_ANALYZER_EXTENSION) !== undefined;
    return besideRustAnalyzer(this.config().get<string>("rustAnalyzer.deduplicate", "auto"), installed);
  }

  private createClient(server: ServerProcess, policy: CrashPolicy): LanguageClient {
    this.startedBesideRustAnalyzer = this.besideRustAnalyzer();
    // We spawn the process ourselves (rather than `{ command, transport }`) to keep its exit
    // status and last stderr line for the error message when it dies during startup.
    const serverOptions: ServerOptions = async () => server.start();
    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: "file", language: "rust" },
        { scheme: "file", pattern: "**/Cargo.toml" },
      ],
      synchronize: {
        configurationSection: SECTION,
        // The server also watches on its own (changes from outside the editor); these events
        // just make edits made inside VS Code arrive sooner.
        fileEvents: vscode.workspace.createFileSystemWatcher("**/{Cargo.toml,Cargo.lock,*.rs}"),
      },
      initializationOptions: {
        checkOnSave: this.config().get<boolean>("check.onSave", true),
        rustAnalyzer: this.startedBesideRustAnalyzer,
      },
      outputChannel: this.output,
      traceOutputChannel: this.traceOutput,
      // Returning false: no retry and no generic notification from the client; `start()`
      // rejects and we report the failure once, with the process's own exit status.
      initializationFailedHandler: () => false,
      errorHandler: policy,
    };
    // The id "cell" makes the client honour the "cell.trace.server" setting.
    return new CellLanguageClient(SECTION, "Cell Language Server", serverOptions, clientOptions);
  }

  /** The server died for good while running (the crash budget is spent). */
  private crashed(message: string): void {
    this.setState("failed");
    this.log(message);
    void this.offerOutput(vscode.window.showErrorMessage(`Cell: ${message}`, "Show Output"));
  }

  /**
   * Runs discovery, reports failures and skipped overrides; undefined when nothing works.
   * `forServer` marks the discovery that picks the language server (it sets the state and the
   * status item); the CLI commands discover afresh, so a rebuilt binary is picked up.
   */
  private async discoverServer({
    forServer,
  }: { forServer: boolean }): Promise<{ path: string; version: string } | undefined> {
    const discovery = await discover({
      env: process.env,
      settingPath: this.config().get<string>("server.path", ""),
      extensionPath: this.context.extensionPath,
      workspaceFolder: this.folder()?.uri.fsPath,
    });
    return this.reportDiscovery(discovery, forServer);
  }

  private reportDiscovery(
    discovery: Discovery,
    forServer: boolean,
  ): { path: string; version: string } | undefined {
    const found = discovery.server;
    if (!found) {
      if (forServer) {
        this.server = undefined;
        this.setState("not-found");
      }
      this.log(describeFailure(discovery));
      void vscode.window
        .showErrorMessage(
          'Cell: no working cell-lsp found. Install it or set "cell.server.path"; the "Cell" output lists what was tried.',
          "Show Output",
          "Open Settings",
        )
        .then((choice) => {
          if (choice === "Show Output") {
            this.output.show(true);
          } else if (choice === "Open Settings") {
            void vscode.commands.executeCommand("workbench.action.openSettings", "cell.server.path");
          }
        });
      return undefined;
    }
    for (const skipped of skippedOverrides(discovery)) {
      if (skipped.ok) {
        continue;
      }
      const msg = `${skipped.candidate.origin} (${skipped.candidate.path}) ${skipped.reason}; using ${found.candidate.origin} instead (${found.path}).`;
      this.log(msg);
      void vscode.window.showWarningMessage(`Cell: ${msg}`);
    }
    const server = { path: found.path, version: found.version };
    if (forServer) {
      this.server = server;
    }
    return server;
  }

  private async showIndex(): Promise<void> {
    const run = await this.runCli("index", (folder) => ["index", folder]);
    if (!run) {
      return;
    }
    if (run.code === 0) {
      const doc = await vscode.workspace.openTextDocument({ content: run.stdout, language: "plaintext" });
      await vscode.window.showTextDocument(doc, { preview: false });
      return;
    }
    this.output.show(true);
    void vscode.window.showErrorMessage(`Cell: \`cell-lsp index\` failed: ${run.error ?? "unknown error"}`);
  }

  private async checkWorkspace(): Promise<void> {
    const run = await this.runCli("--check", (folder) => ["--check", folder]);
    if (!run) {
      return;
    }
    this.output.show(true);
    // Exit codes of `cell-lsp --check`: 0 clean, 1 problems found, 2 usage or I/O error.
    if (run.code === 0) {
      void vscode.window.showInformationMessage("Cell: check found no problems.");
    } else if (run.code === 1) {
      void vscode.window.showWarningMessage('Cell: check found problems; see the "Cell" output.');
    } else {
      void vscode.window.showErrorMessage(`Cell: \`cell-lsp --check\` failed: ${run.error ?? "unknown error"}`);
    }
  }

  /**
   * Runs the server binary as a CLI in the current workspace folder, echoing the command and
   * everything it printed into the output channel.
   */
  private async runCli(
    what: string,
    args: (folder: string) => string[],
  ): Promise<{ code: number | null; stdout: string; error?: string } | undefined> {
    const folder = this.folder();
    if (!folder) {
      void vscode.window.showErrorMessage(`Cell: open a folder to run \`cell-lsp ${what}\`.`);
      return undefined;
    }
    const found = await this.discoverServer({ forServer: false });
    if (!found) {
      return undefined;
    }
    const argv = args(folder.uri.fsPath);
    this.log(`$ ${found.path} ${argv.join(" ")}`);
    const run = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `cell-lsp ${what}` },
      () => execute(found.path, argv, CLI_TIMEOUT_MS, folder.uri.fsPath),
    );
    if (run.stdout) {
      this.output.append(ensureNewline(run.stdout));
    }
    if (run.stderr) {
      this.output.append(ensureNewline(run.stderr));
    }
    this.log(`cell-lsp ${what} exited with ${run.code ?? run.error ?? "no status"}`);
    return run;
  }

  private async isCellWorkspace(): Promise<boolean> {
    const manifests = await vscode.workspace.findFiles("**/Cargo.toml", MANIFEST_EXCLUDE, MANIFEST_LIMIT);
    for (const uri of manifests) {
      try {
        const bytes = await vscode.workspace.fs.readFile(uri);
        if (mentionsCellSdk(Buffer.from(bytes).toString("utf8"))) {
          this.log(`Cell workspace: ${uri.fsPath} depends on cell-sdk.`);
          return true;
        }
      } catch {
        // Unreadable manifest (deleted meanwhile, permissions): it just does not count.
      }
    }
    return false;
  }

  /** The folder of the active editor, else the first workspace folder. */
  private folder(): vscode.WorkspaceFolder | undefined {
    const active = vscode.window.activeTextEditor?.document.uri;
    const own = active ? vscode.workspace.getWorkspaceFolder(active) : undefined;
    return own ?? vscode.workspace.workspaceFolders?.[0];
  }

  private config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
  }

  private setState(state: ServerState): void {
    this.state = state;
    const version = this.server ? ` ${this.server.version}` : "";
    const texts: Record<ServerState, [string, vscode.LanguageStatusSeverity]> = {
      disabled: ["cell-lsp: disabled", vscode.LanguageStatusSeverity.Information],
      "not-a-cell-workspace": ["cell-lsp: not a Cell workspace", vscode.LanguageStatusSeverity.Information],
      "not-found": ["cell-lsp: not found", vscode.LanguageStatusSeverity.Error],
      starting: [`cell-lsp${version}: starting`, vscode.LanguageStatusSeverity.Information],
      running: [`cell-lsp${version}`, vscode.LanguageStatusSeverity.Information],
      failed: [`cell-lsp${version}: failed`, vscode.LanguageStatusSeverity.Error],
      stopped: ["cell-lsp: stopped", vscode.LanguageStatusSeverity.Information],
    };
    const [text, severity] = texts[state];
    this.status.text = text;
    this.status.severity = severity;
    this.status.detail = this.server?.path;
  }

  private log(line: string): void {
    this.output.appendLine(`[${new Date().toISOString()}] ${line}`);
  }

  private async offerOutput(choice: Thenable<string | undefined>): Promise<void> {
    if ((await choice) === "Show Output") {
      this.output.show(true);
    }
  }

  private serialized(task: () => Promise<void>): Promise<void> {
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

/**
 * What the client does when the connection errs or closes. Unlike the default handler it never
 * shows its own notifications (the extension reports failures once, with the process's exit
 * status) and never restarts a server that failed to *start* — a binary that exits at once
 * would otherwise be respawned five times, with a notification each time. A server that
 * crashes after it was running is restarted, up to `MAX_RESTARTS` times in three minutes.
 */
class CrashPolicy implements ErrorHandler {
  private static readonly MAX_RESTARTS = 4;
  private static readonly WINDOW_MS = 3 * 60 * 1000;
  /** Set when the client first reaches `Running`: from then on a close is a crash. */
  reachedRunning = false;
  /** The last close was answered with a restart (the client is bringing the server back). */
  restarting = false;
  private restarts: number[] = [];

  constructor(private readonly gaveUp: (message: string) => void) {}

  error(_error: Error, _message: unknown, count: number | undefined): ErrorHandlerResult {
    // A few write/read errors are survivable; the close that usually follows decides.
    if (count !== undefined && count <= 3) {
      return { action: ErrorAction.Continue, handled: true };
    }
    return { action: ErrorAction.Shutdown, handled: true };
  }

  closed(): CloseHandlerResult {
    this.restarting = false;
    if (!this.reachedRunning) {
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < CrashPolicy.WINDOW_MS);
    this.restarts.push(now);
    if (this.restarts.length <= CrashPolicy.MAX_RESTARTS) {
      this.restarting = true;
      return { action: CloseAction.Restart, handled: true };
    }
    const message =
      `cell-lsp crashed ${this.restarts.length} times in three minutes and will not be restarted. ` +
      'Its errors are in the "Cell" output; "Cell: Restart Server" tries again.';
    this.gaveUp(message);
    return { action: CloseAction.DoNotRestart, handled: true };
  }
}

/**
 * The stock client with three corrections for a server that dies while starting, so the user
 * sees one clear error instead of a cascade: no notifications of its own during `start()`, no
 * unhandled rejection from its dropped start promise, and a `stop()` that never rejects (on a
 * failed start the client calls `void this.stop()` on itself, which rejects with "Client is not
 * running and can't be stopped" and nobody to catch it).
 */
class CellLanguageClient extends LanguageClient {
  /**
   * When the server closes the connection during `initialize` and the error handler says "do
   * not restart", vscode-languageclient 9.0.1 drops its pending start promise (`_onStart`),
   * which then rejects with nobody listening, and `start()` itself resolves. We attach a
   * handler to that promise; the caller checks that the client reached `Running`. The version
   * is pinned exactly, and the placeholder-server test fails on an unhandled rejection if an
   * upgrade changes this.
   */
  override async start(): Promise<void> {
    this.starting = true;
    try {
      const started = super.start();
      const pending = (this as unknown as { _onStart?: Promise<void> })._onStart;
      pending?.catch(() => undefined);
      await started;
    } finally {
      this.starting = false;
    }
  }

  /** True during `start()`: its failures are reported once by the extension, not here. */
  private starting = false;

  /** Keeps the log line but drops the client's own notification while starting. */
  override error(message: string, data?: unknown, showNotification?: boolean | "force"): void {
    super.error(message, data, this.starting ? false : showNotification);
  }

  override stop(timeout?: number): Promise<void> {
    return super.stop(timeout).catch((err: unknown) => {
      this.outputChannel.appendLine(`Stopping cell-lsp: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
}

/** The `cell-lsp --stdio` process of one client: spawned on demand, watched until it exits. */
class ServerProcess {
  private child: ChildProcess | undefined;
  private stderrTail = "";
  private exited: Promise<string> | undefined;

  constructor(
    private readonly path: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly cwd: string | undefined,
    private readonly stderr: (text: string) => void,
  ) {}

  /** Spawns `<path> --stdio` and returns the JSON-RPC transports over its stdin/stdout. */
  start(): MessageTransports {
    // Called again by the client for each restart after a crash: one process at a time.
    const child = spawn(this.path, ["--stdio"], { env: this.env, cwd: this.cwd, windowsHide: true });
    this.child = child;
    this.stderrTail = "";
    child.stderr.on("data", (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      this.stderr(text);
      // A line may arrive in several chunks (unbuffered stderr): keep a bounded tail.
      this.stderrTail = (this.stderrTail + text).slice(-4096);
    });
    this.exited = new Promise((resolve) => {
      // `error` (e.g. the binary vanished since discovery) must be handled or Node throws.
      child.on("error", (err) => resolve(`could not run it: ${err.message}`));
      // `close` fires after stderr is drained, so the tail is complete.
      child.on("close", (code, signal) => {
        const status = code !== null ? `exited with code ${code}` : `was killed by ${signal}`;
        const last = this.stderrTail
          .split(/\r?\n/)
          .filter((l) => l.trim() !== "")
          .pop()
          ?.trim();
        resolve(last ? `${status}: ${last}` : status);
      });
    });
    return { reader: new StreamMessageReader(child.stdout), writer: this.writer(child) };
  }

  /**
   * A writer that drops messages once the process is gone. The plain stream writer already
   * reports a failed write through `onError` (which is how the client learns of the crash) and
   * then also rejects the write; several of the client's internal writes (`exit` during a
   * failed start, for one) never handle that rejection, and it would surface as an unhandled
   * rejection in the extension host. The error itself is not lost: `onError` has it.
   */
  private writer(child: ChildProcess): MessageWriter {
    const inner = new StreamMessageWriter(child.stdin!);
    const alive = () => child.exitCode === null && child.signalCode === null && !child.stdin?.destroyed;
    return {
      onError: inner.onError,
      onClose: inner.onClose,
      write: (msg) => (alive() ? inner.write(msg).catch(() => undefined) : Promise.resolve()),
      end: () => inner.end(),
      dispose: () => inner.dispose(),
    };
  }

  /** How the process ended, if it ends within `ms`. */
  async exitWithin(ms: number): Promise<string | undefined> {
    if (!this.exited) {
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    const result = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    return result;
  }

  /** Kills the process if it is still running `ms` after the client let go of it. */
  async terminate(ms: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    if ((await this.exitWithin(ms)) === undefined) {
      child.kill("SIGKILL");
    }
  }
}

function ensureNewline(s: string): string {
  return s.endsWith("\n") ? s : `${s}\n`;
}
