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

import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
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
const RESTART_SETTINGS = ["cell.server.path", "cell.server.env", "cell.server.enable"];
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
  private readonly output: vscode.OutputChannel;
  private readonly traceOutput: vscode.OutputChannel;
  private readonly status: vscode.LanguageStatusItem;
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
          void this.serialized(async () => {
            await this.stop();
            await this.start({ force: false });
          });
        }
      }),
      // A workspace may start depending on cell-sdk while it is open.
      manifests.onDidChange(() => this.startIfWanted()),
      manifests.onDidCreate(() => this.startIfWanted()),
    );
  }

  /** Starts the server unless disabled, already up, or (auto mode) not a Cell workspace. */
  startIfWanted(): Promise<void> {
    return this.serialized(async () => {
      if (this.state === "running" || this.state === "starting") {
        return;
      }
      await this.start({ force: false });
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
    const client = this.createClient(found.path);
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client === client && e.newState === State.Stopped && this.state === "running") {
        this.setState("failed");
      }
    });
    try {
      await client.start();
      this.setState("running");
      this.log(`cell-lsp ${found.version} is running (${found.path}).`);
    } catch (err) {
      this.setState("failed");
      const why = err instanceof Error ? err.message : String(err);
      this.log(`cell-lsp ${found.version} at ${found.path} failed to start: ${why}`);
      void this.offerOutput(
        vscode.window.showErrorMessage(
          `Cell: cell-lsp ${found.version} failed to start (${why}). See the "Cell" output for its error.`,
          "Show Output",
        ),
      );
    }
  }

  private async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
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
    if (this.state === "running" || this.state === "starting" || this.state === "failed") {
      this.setState("stopped");
    }
  }

  private createClient(serverPath: string): LanguageClient {
    const extraEnv = this.config().get<Record<string, string>>("server.env", {});
    const serverOptions: ServerOptions = {
      command: serverPath,
      // The client appends `--stdio` for the stdio transport.
      transport: TransportKind.stdio,
      options: { env: { ...process.env, ...extraEnv }, cwd: this.folder()?.uri.fsPath },
    };
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
      },
      outputChannel: this.output,
      traceOutputChannel: this.traceOutput,
    };
    // The id "cell" makes the client honour the "cell.trace.server" setting.
    return new LanguageClient(SECTION, "Cell Language Server", serverOptions, clientOptions);
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

function ensureNewline(s: string): string {
  return s.endsWith("\n") ? s : `${s}\n`;
}
