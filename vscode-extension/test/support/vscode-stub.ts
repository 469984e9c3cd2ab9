/**
 * A stand-in for the `vscode` module, which only exists inside VS Code.
 *
 * It is the one test double in this suite (VS Code cannot be downloaded here): it records what
 * the extension asks of the editor — registered commands, notifications, output channel text,
 * opened documents — and serves the workspace from a real directory on disk (`findFiles`,
 * `fs.readFile`). Everything else in the tests is real: the bundled extension, the
 * `vscode-languageclient` inside it, child processes, JSON-RPC over pipes.
 *
 * Unknown members of a namespace are served by `loose()`: event registrations return a
 * disposable and other calls return undefined, and each such access is recorded in
 * `stub.unknown`, so a test can show what the language client touched beyond the stub.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import Module from "node:module";
import * as path from "node:path";

type Listener = (e: unknown) => unknown;

/** One notification shown with `window.show{Information,Warning,Error}Message`. */
export interface Message {
  level: "info" | "warning" | "error";
  text: string;
  items: string[];
}

/** Everything the stub records; reset between tests with `reset()`. */
export interface StubState {
  commands: Map<string, (...args: unknown[]) => unknown>;
  executed: { command: string; args: unknown[] }[];
  messages: Message[];
  /** Output channel name → everything appended to it. */
  outputs: Map<string, string>;
  /** Names of output channels that were `show()`n. */
  shown: string[];
  /** Flat settings, e.g. `{ "cell.server.path": "/x" }`. */
  settings: Record<string, unknown>;
  folders: string[];
  /** Documents opened with `workspace.openTextDocument({ content })`. */
  documents: { content: string; language?: string }[];
  /** Answer given to a notification with items (e.g. "Show Output"); default: dismissed. */
  answer: (m: Message) => string | undefined;
  /** Namespace members that were used but not implemented by the stub. */
  unknown: Set<string>;
  configListeners: Listener[];
  /** The file of the active editor, if any. */
  activeFile: string | undefined;
  /** Identifiers of the other extensions installed and enabled (`extensions.getExtension`). */
  extensions: string[];
  extensionListeners: Listener[];
  /** File system watchers created, by glob, with their listeners per event kind. */
  watchers: { glob: string; listeners: Record<"change" | "create" | "delete", Listener[]> }[];
}

export const stub: StubState = {
  commands: new Map(),
  executed: [],
  messages: [],
  outputs: new Map(),
  shown: [],
  settings: {},
  folders: [],
  documents: [],
  answer: () => undefined,
  unknown: new Set(),
  configListeners: [],
  activeFile: undefined,
  extensions: [],
  extensionListeners: [],
  watchers: [],
};

/** Clears the recordings and sets the workspace folders and settings for the next test. */
export function reset(folders: string[], settings: Record<string, unknown> = {}): void {
  stub.commands.clear();
  stub.executed = [];
  stub.messages = [];
  stub.outputs.clear();
  stub.shown = [];
  stub.settings = { ...settings };
  stub.folders = folders;
  stub.documents = [];
  stub.answer = () => undefined;
  stub.configListeners = [];
  stub.activeFile = undefined;
  stub.extensions = [];
  stub.extensionListeners = [];
  stub.watchers = [];
}

/** Installs or removes other extensions and fires `extensions.onDidChange` like VS Code does. */
export async function setExtensions(ids: string[]): Promise<void> {
  stub.extensions = ids;
  await Promise.all(stub.extensionListeners.map((l) => l(undefined)));
}

/** Fires a file event on every watcher created for `glob`, like VS Code does after a save. */
export async function fireFileEvent(glob: string, kind: "change" | "create" | "delete", file: string): Promise<void> {
  const listeners = stub.watchers.filter((w) => w.glob === glob).flatMap((w) => w.listeners[kind]);
  assert(listeners.length > 0, `a watcher for ${glob} listens to ${kind}`);
  await Promise.all(listeners.map((l) => l(Uri.file(file))));
}

/** Changes settings and fires `onDidChangeConfiguration` like VS Code does. */
export async function changeSettings(changes: Record<string, unknown>): Promise<void> {
  Object.assign(stub.settings, changes);
  const event = {
    affectsConfiguration: (section: string) =>
      Object.keys(changes).some((k) => k === section || k.startsWith(`${section}.`) || section.startsWith(`${k}.`)),
  };
  await Promise.all(stub.configListeners.map((l) => l(event)));
}

/** Text appended to an output channel so far. */
export function output(name = "Cell"): string {
  return stub.outputs.get(name) ?? "";
}

// ---------------------------------------------------------------------------------------------
// The module

class Disposable {
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  constructor(private readonly fn: () => unknown = () => undefined) {}
  dispose(): void {
    this.fn();
  }
}

class EventEmitter<T> {
  private listeners: ((e: T) => unknown)[] = [];
  event = (listener: (e: T) => unknown): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(e: T): void {
    this.listeners.forEach((l) => l(e));
  }
  dispose(): void {
    this.listeners = [];
  }
}

class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  get path(): string {
    return this.fsPath;
  }
  static file(p: string): Uri {
    return new Uri("file", p);
  }
  static parse(s: string): Uri {
    return s.startsWith("file://") ? new Uri("file", decodeURIComponent(s.slice(7))) : new Uri(s.split(":")[0], s);
  }
  toString(): string {
    return `file://${this.fsPath}`;
  }
  with(): Uri {
    return this;
  }
}

class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  token = { isCancellationRequested: false, onCancellationRequested: this.emitter.event };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {}
}

/** Classes the language client extends or instantiates; their bodies do not matter here. */
class Plain {
  constructor(...args: unknown[]) {
    Object.assign(this, { args });
  }
}

function outputChannel(name: string) {
  stub.outputs.set(name, stub.outputs.get(name) ?? "");
  const append = (s: string) => stub.outputs.set(name, (stub.outputs.get(name) ?? "") + s);
  return {
    name,
    append,
    appendLine: (s: string) => append(`${s}\n`),
    replace: (s: string) => stub.outputs.set(name, s),
    clear: () => stub.outputs.set(name, ""),
    show: () => stub.shown.push(name),
    hide: () => undefined,
    dispose: () => undefined,
  };
}

function message(level: Message["level"]) {
  return (text: string, ...rest: unknown[]) => {
    const items = rest.filter((r): r is string => typeof r === "string");
    const m = { level, text, items };
    stub.messages.push(m);
    return Promise.resolve(stub.answer(m));
  };
}

function configuration(section?: string) {
  const full = (key: string) => (section ? `${section}.${key}` : key);
  const lookup = (key: string): unknown => {
    const k = full(key);
    if (k in stub.settings) {
      return stub.settings[k];
    }
    // A section read (`get("server")`) returns the nested object, as in VS Code.
    const nested: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(stub.settings)) {
      if (name.startsWith(`${k}.`)) {
        setPath(nested, name.slice(k.length + 1).split("."), value);
      }
    }
    return Object.keys(nested).length > 0 ? nested : undefined;
  };
  return {
    get: (key: string, dflt?: unknown) => lookup(key) ?? dflt,
    has: (key: string) => lookup(key) !== undefined,
    inspect: (key: string) => ({ key: full(key), globalValue: lookup(key) }),
    update: async (key: string, value: unknown) => {
      stub.settings[full(key)] = value;
    },
  };
}

function setPath(obj: Record<string, unknown>, keys: string[], value: unknown): void {
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    cur[k] = (cur[k] as Record<string, unknown>) ?? {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]] = value;
}

function workspaceFolders() {
  return stub.folders.map((f, index) => ({ uri: Uri.file(f), name: path.basename(f), index }));
}

/** `findFiles("**\/Cargo.toml", exclude, max)`: a real walk of the folders, skipping `target`. */
async function findFiles(include: string, _exclude: unknown, max = Infinity): Promise<Uri[]> {
  const name = include.replace(/^\*\*\//, "");
  const found: Uri[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (found.length >= max) {
        return;
      }
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && !["target", "node_modules", ".git"].includes(entry.name)) {
        walk(full);
      } else if (entry.isFile() && entry.name === name) {
        found.push(Uri.file(full));
      }
    }
  };
  stub.folders.forEach(walk);
  return found;
}

function loose(namespace: string, known: Record<string, unknown>): Record<string, unknown> {
  return new Proxy(known, {
    get(target, prop) {
      if (typeof prop !== "string" || prop in target) {
        return target[prop as string];
      }
      stub.unknown.add(`${namespace}.${prop}`);
      if (prop.startsWith("onDid") || prop.startsWith("onWill")) {
        return () => new Disposable();
      }
      if (prop.startsWith("register") || prop.startsWith("create")) {
        return () => ({ dispose: () => undefined });
      }
      return undefined;
    },
  });
}

function watcher(glob: string) {
  const listeners: Record<"change" | "create" | "delete", Listener[]> = { change: [], create: [], delete: [] };
  stub.watchers.push({ glob, listeners });
  const on = (kind: "change" | "create" | "delete") => (l: Listener) => {
    listeners[kind].push(l);
    return new Disposable();
  };
  return { onDidChange: on("change"), onDidCreate: on("create"), onDidDelete: on("delete"), dispose: () => undefined };
}

const vscodeModule = {
  version: "1.82.0",
  Disposable,
  EventEmitter,
  Uri,
  CancellationTokenSource,
  CancellationError: class CancellationError extends Error {},
  ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  LanguageStatusSeverity: { Information: 0, Warning: 1, Error: 2 },
  DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2, Hint: 3 },
  ViewColumn: { Active: -1, Beside: -2, One: 1 },
  // Extended or constructed by vscode-languageclient at load time.
  CallHierarchyItem: Plain,
  CodeLens: Plain,
  CompletionItem: Plain,
  DocumentLink: Plain,
  InlayHint: Plain,
  SymbolInformation: Plain,
  TypeHierarchyItem: Plain,
  CodeAction: Plain,
  Diagnostic: Plain,
  env: loose("env", { language: "en", appName: "Visual Studio Code (test stub)", machineId: "stub" }),
  commands: loose("commands", {
    registerCommand: (command: string, fn: (...args: unknown[]) => unknown) => {
      stub.commands.set(command, fn);
      return new Disposable(() => stub.commands.delete(command));
    },
    executeCommand: async (command: string, ...args: unknown[]) => {
      stub.executed.push({ command, args });
      return stub.commands.get(command)?.(...args);
    },
  }),
  window: loose("window", {
    createOutputChannel: outputChannel,
    showInformationMessage: message("info"),
    showWarningMessage: message("warning"),
    showErrorMessage: message("error"),
    withProgress: (_opts: unknown, task: (p: unknown, t: unknown) => unknown) =>
      task({ report: () => undefined }, new CancellationTokenSource().token),
    showTextDocument: async (doc: unknown) => ({ document: doc }),
    get activeTextEditor() {
      return stub.activeFile ? { document: { uri: Uri.file(stub.activeFile) } } : undefined;
    },
    visibleTextEditors: [],
    tabGroups: { all: [] },
  }),
  languages: loose("languages", {
    createLanguageStatusItem: (id: string) => ({ id, dispose: () => undefined }),
    createDiagnosticCollection: (name: string) => ({
      name,
      set: () => undefined,
      delete: () => undefined,
      clear: () => undefined,
      forEach: () => undefined,
      get: () => undefined,
      has: () => false,
      dispose: () => undefined,
    }),
    match: () => 0,
  }),
  extensions: loose("extensions", {
    getExtension: (id: string) => (stub.extensions.includes(id) ? { id, isActive: false } : undefined),
    get all() {
      return stub.extensions.map((id) => ({ id, isActive: false }));
    },
    onDidChange: (l: Listener) => {
      stub.extensionListeners.push(l);
      return new Disposable(() => {
        stub.extensionListeners = stub.extensionListeners.filter((x) => x !== l);
      });
    },
  }),
  workspace: loose("workspace", {
    get workspaceFolders() {
      return workspaceFolders();
    },
    getWorkspaceFolder: (uri: Uri) =>
      workspaceFolders().find((f) => uri.fsPath === f.uri.fsPath || uri.fsPath.startsWith(`${f.uri.fsPath}/`)),
    getConfiguration: configuration,
    onDidChangeConfiguration: (l: Listener) => {
      stub.configListeners.push(l);
      return new Disposable(() => {
        stub.configListeners = stub.configListeners.filter((x) => x !== l);
      });
    },
    createFileSystemWatcher: watcher,
    findFiles,
    fs: { readFile: async (uri: Uri) => new Uint8Array(fs.readFileSync(uri.fsPath)) },
    openTextDocument: async (opts: { content: string; language?: string }) => {
      stub.documents.push(opts);
      return { uri: Uri.parse("untitled:doc"), getText: () => opts.content };
    },
    textDocuments: [],
    notebookDocuments: [],
  }),
};

/**
 * Top-level names the stub does not define (`CodeActionKind`, `SymbolKind`, `Range`, …, used by
 * the language client's converters) become a class — so `new` and `extends` work — whose
 * static members are their own names (`CodeActionKind.Empty` → "CodeActionKind.Empty").
 */
const vscodeProxy = new Proxy(vscodeModule as Record<string, unknown>, {
  get(target, prop) {
    if (typeof prop !== "string" || prop in target) {
      return target[prop as string];
    }
    stub.unknown.add(prop);
    const standIn = new Proxy(class extends Plain {}, {
      get(cls, member) {
        if (typeof member !== "string" || member in cls) {
          return (cls as unknown as Record<string | symbol, unknown>)[member];
        }
        return `${prop}.${member}`;
      },
    });
    target[prop] = standIn;
    return standIn;
  },
});

/** Makes `require("vscode")` return the stub, for every module loaded afterwards. */
export function install(): void {
  const mod = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const original = mod._load;
  mod._load = function (request: string, ...rest: unknown[]) {
    return request === "vscode" ? vscodeProxy : original.call(this, request, ...rest);
  };
}
