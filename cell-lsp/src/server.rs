//! The LSP server over stdio, on `tower-lsp-server` (the maintained fork of tower-lsp).
//!
//! Ordering: tower-lsp-server runs handlers concurrently, so document mutations are applied
//! entirely inside the synchronous part of `did_open`/`did_change` (a std mutex, no `.await`
//! while it is held, no `.await` before the mutation): each such future finishes its mutation on
//! its first poll, and the framework polls them in arrival order — so edits apply strictly in
//! order. Each buffer keeps its text and a `Send` syntax tree (`syntax::Tree`, a green tree)
//! that every edit reparses incrementally; requests build a cursor tree over it.
//!
//! The index is built (or warm-started from its snapshot) during `initialize`, then kept fresh
//! by `workspace/didChangeWatchedFiles` and by the index's own watcher, so edits made outside
//! the editor show up without client events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_macro_index::{ExportKind, Index, IndexOptions, Severity};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::analysis::{self, ItemKind};
use crate::lines::LineIndex;
use crate::syntax::{Parsed, Tree};

/// Quiet time after the last edit before a buffer's diagnostics are recomputed.
const DIAGNOSTICS_DELAY: Duration = Duration::from_millis(150);

struct Doc {
    text: String,
    tree: Tree,
    version: i32,
}

struct State {
    docs: Mutex<HashMap<Uri, Doc>>,
    index: Arc<Mutex<Option<Index>>>,
    options: Mutex<Option<IndexOptions>>,
    watcher: Mutex<Option<cell_macro_index::watch::IndexWatcher>>,
    /// The degraded reason last shown to the user (`None`: complete, or nothing shown yet), so
    /// a degraded index is announced once, and again only when its reason changes.
    shown_status: Mutex<Option<String>>,
    /// Who else answers in this editor (`initializationOptions.rustAnalyzer`).
    companion: Mutex<analysis::Companion>,
}

struct Backend {
    client: Client,
    state: Arc<State>,
}

/// Runs the server on stdin/stdout until `exit` (or the end of the input); returns the exit
/// status (see [`crate::transport`]).
pub(crate) async fn run_stdio() -> u8 {
    let state = Arc::new(State {
        docs: Mutex::new(HashMap::new()),
        index: Arc::new(Mutex::new(None)),
        options: Mutex::new(None),
        watcher: Mutex::new(None),
        shown_status: Mutex::new(None),
        companion: Mutex::new(analysis::Companion::Alone),
    });
    let (service, socket) = LspService::new(|client| Backend { client, state });
    let ending = crate::transport::serve(
        tokio::io::stdin(),
        tokio::io::stdout(),
        |input, output| async move { Server::new(input, output, socket).serve(service).await },
    )
    .await;
    if let crate::transport::Ending::Exit {
        after_shutdown: false,
    } = ending
    {
        tracing::warn!("`exit` without `shutdown`: exiting with status 1");
    }
    ending.exit_code()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not take the server down: keep the data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn to_range(text: &str, range: (usize, usize)) -> Range {
    range_in(&LineIndex::new(text), range)
}

/// [`to_range`] with a line index built once per request (a 3,000-line buffer costs a scan).
fn range_in(idx: &LineIndex<'_>, (s, e): (usize, usize)) -> Range {
    let (sl, sc) = idx.position(s);
    let (el, ec) = idx.position(e);
    Range::new(Position::new(sl, sc), Position::new(el, ec))
}

/// `initializationOptions.rustAnalyzer: true` (the VS Code extension sets it when the
/// rust-analyzer extension is active): leave out what rust-analyzer gives by itself. Anything
/// else, a missing option included, means alone.
fn companion_of(params: &InitializeParams) -> analysis::Companion {
    let beside = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("rustAnalyzer"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if beside {
        analysis::Companion::RustAnalyzer
    } else {
        analysis::Companion::Alone
    }
}

fn root_of(params: &InitializeParams) -> Option<PathBuf> {
    if let Some(folders) = &params.workspace_folders
        && let Some(f) = folders.first()
    {
        return f.uri.to_file_path().map(|p| p.into_owned());
    }
    #[allow(
        deprecated,
        reason = "`root_uri` is deprecated for `workspace_folders`, which older clients omit"
    )]
    params
        .root_uri
        .as_ref()
        .and_then(|u| u.to_file_path().map(|p| p.into_owned()))
}

impl Backend {
    /// Starts the index's own watcher (called from `initialize`, so it is active before the
    /// client gets the answer).
    fn start_watcher(&self) {
        // The index's own watcher: changes made outside the editor (git checkout, cargo update,
        // a provider edited elsewhere) re-index and re-publish without client events.
        let Some(options) = lock(&self.state.options).clone() else {
            return;
        };
        let index_cell = self.state.index.clone();
        let client = self.client.clone();
        let state = self.state.clone();
        let handle = tokio::runtime::Handle::current();
        let watcher = {
            let guard = lock(&index_cell);
            let Some(index) = guard.as_ref() else { return };
            let index_cell2 = index_cell.clone();
            cell_macro_index::watch::watch(index, Duration::from_millis(30), move |paths| {
                tracing::debug!("watcher: {paths:?}");
                let changed = {
                    let mut guard = lock(&index_cell2);
                    match guard.as_mut() {
                        Some(index) => index.apply_changes(&paths, &options).unwrap_or(false),
                        None => false,
                    }
                };
                if changed {
                    let backend = Backend {
                        client: client.clone(),
                        state: state.clone(),
                    };
                    handle.spawn(async move { backend.publish_all().await });
                }
            })
        };
        match watcher {
            Ok(w) => {
                tracing::debug!("watching {:?} (polling: {})", w.watched, w.polling);
                *lock(&self.state.watcher) = Some(w);
            }
            Err(e) => tracing::warn!("no file watcher: {e}"),
        }
    }

    /// Runs `f` over the document's text and syntax (copied out of the lock first) and the index.
    fn with_doc<R>(
        &self,
        uri: &Uri,
        f: impl FnOnce(&Index, &Path, &str, &Parsed) -> R,
    ) -> Option<R> {
        let path = uri.to_file_path()?.into_owned();
        let (text, tree) = lock(&self.state.docs)
            .get(uri)
            .map(|d| (d.text.clone(), d.tree.clone()))?;
        let parsed = Parsed::from_tree(&tree, &text);
        let index = lock(&self.state.index);
        let index = index.as_ref()?;
        Some(f(index, &path, &text, &parsed))
    }

    async fn publish(&self, uri: Uri) {
        let version = lock(&self.state.docs).get(&uri).map(|d| d.version);
        let companion = *lock(&self.state.companion);
        let diags = self
            .with_doc(&uri, |index, path, text, parsed| {
                analysis::diagnostics(index, path, parsed, text, companion)
                    .into_iter()
                    .map(|d| to_lsp_diag(&uri, text, d))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        self.client.publish_diagnostics(uri, diags, version).await;
    }

    /// Tells the user (`window/showMessage`) when the index is degraded: without the
    /// dependency graph no alias is checked, and silence would read as "no problems".
    async fn show_status(&self) {
        let reason = lock(&self.state.index)
            .as_ref()
            .and_then(|i| i.status.reason().map(str::to_owned));
        let message = {
            let mut shown = lock(&self.state.shown_status);
            if *shown == reason {
                return;
            }
            let was_degraded = shown.is_some();
            shown.clone_from(&reason);
            match &reason {
                Some(reason) => Some((
                    MessageType::WARNING,
                    format!(
                        "Cell: cargo could not resolve this workspace's dependencies, so \
                         providers outside the workspace are unknown and `cell_remote!` aliases \
                         are not checked. Run `cargo fetch` or fix the dependency. ({})",
                        reason.trim_end()
                    ),
                )),
                None if was_degraded => Some((
                    MessageType::INFO,
                    "Cell: the dependency graph resolves again; aliases are checked.".to_owned(),
                )),
                None => None,
            }
        };
        if let Some((kind, message)) = message {
            self.client.show_message(kind, message).await;
        }
    }

    async fn publish_all(&self) {
        self.show_status().await;
        let uris: Vec<Uri> = lock(&self.state.docs).keys().cloned().collect();
        for uri in uris {
            self.publish(uri).await;
        }
    }
}

fn to_lsp_diag(uri: &Uri, text: &str, d: analysis::Diag) -> Diagnostic {
    let mut message = d.message.clone();
    for n in &d.notes {
        message.push('\n');
        message.push_str(n);
    }
    Diagnostic {
        range: to_range(text, d.range),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: d
            .code
            .map(|c| NumberOrString::String(c.as_str().to_owned())),
        source: Some("cell".to_owned()),
        message,
        data: d.fix.and_then(|fix| {
            let (target, range) = match &fix.file {
                None => (uri.clone(), to_range(text, fix.range)),
                Some(file) => {
                    let other = std::fs::read_to_string(file).ok()?;
                    (Uri::from_file_path(file)?, to_range(&other, fix.range))
                }
            };
            serde_json::to_value(FixData {
                uri: target.as_str().to_owned(),
                title: fix.title,
                replacement: fix.replacement,
                range,
            })
            .ok()
        }),
        ..Default::default()
    }
}

/// A diagnostic's fix as it travels in the diagnostic's `data` and comes back in a code-action
/// request: typed both ways, so the two ends cannot drift apart.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FixData {
    /// The document the edit applies to (the buffer, or a `Cargo.toml`).
    uri: String,
    title: String,
    replacement: String,
    range: Range,
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        *lock(&self.state.companion) = companion_of(&params);
        if let Some(root) = root_of(&params) {
            let manifest = root.join("Cargo.toml");
            if manifest.exists() {
                let options = IndexOptions::new(manifest);
                *lock(&self.state.options) = Some(options.clone());
                let built =
                    tokio::task::spawn_blocking(move || cell_macro_index::load_or_build(&options))
                        .await;
                match built {
                    Ok(Ok(index)) => {
                        *lock(&self.state.index) = Some(index);
                        self.start_watcher();
                    }
                    Ok(Err(e)) => tracing::warn!("no index: {e}"),
                    Err(e) => tracing::warn!("indexing panicked: {e}"),
                }
            }
        }
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![
                        ":".into(),
                        "(".into(),
                        "\"".into(),
                        "[".into(),
                        " ".into(),
                        ",".into(),
                    ]),
                    ..Default::default()
                }),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                definition_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "cell-lsp".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            ..Default::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.show_status().await;
    }

    async fn shutdown(&self) -> Result<()> {
        lock(&self.state.watcher).take();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let uri = params.text_document.uri.clone();
        lock(&self.state.docs).insert(
            params.text_document.uri,
            Doc {
                tree: Tree::new(&params.text_document.text),
                text: params.text_document.text,
                version: params.text_document.version,
            },
        );
        self.publish(uri).await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri.clone();
        {
            let mut docs = lock(&self.state.docs);
            let Some(doc) = docs.get_mut(&params.text_document.uri) else {
                return;
            };
            for change in params.content_changes {
                match change.range {
                    None => {
                        doc.tree = Tree::new(&change.text);
                        doc.text = change.text;
                    }
                    Some(r) => {
                        let idx = LineIndex::new(&doc.text);
                        let s = idx.offset(r.start.line, r.start.character);
                        let e = idx.offset(r.end.line, r.end.character).max(s);
                        doc.text.replace_range(s..e, &change.text);
                        doc.tree = doc.tree.edit(s, e, &change.text, &doc.text);
                        tracing::trace!(relexed = doc.tree.relexed(), "edit reparsed");
                    }
                }
            }
            doc.version = params.text_document.version;
        }
        // Diagnostics wait for a pause in typing: recomputing them after every keystroke would
        // compete with completion for the CPU while edits stream in.
        let version = params.text_document.version;
        let backend = Backend {
            client: self.client.clone(),
            state: self.state.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(DIAGNOSTICS_DELAY).await;
            let current = lock(&backend.state.docs).get(&uri).map(|d| d.version);
            if current == Some(version) {
                backend.publish(uri).await;
            }
        });
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        lock(&self.state.docs).remove(&params.text_document.uri);
        self.client
            .publish_diagnostics(params.text_document.uri, Vec::new(), None)
            .await;
    }

    async fn did_change_watched_files(&self, params: DidChangeWatchedFilesParams) {
        let paths: Vec<PathBuf> = params
            .changes
            .iter()
            .filter_map(|c| c.uri.to_file_path().map(|p| p.into_owned()))
            .collect();
        let Some(options) = lock(&self.state.options).clone() else {
            return;
        };
        let index_cell = self.state.index.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(index) = lock(&index_cell).as_mut() {
                let _ = index.apply_changes(&paths, &options);
            }
        })
        .await;
        self.publish_all().await;
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let uri = params.text_document_position.text_document.uri;
        let pos = params.text_document_position.position;
        let companion = *lock(&self.state.companion);
        let items = self.with_doc(&uri, |index, path, text, parsed| {
            let lines = LineIndex::new(text);
            let offset = lines.offset(pos.line, pos.character);
            analysis::complete(index, path, parsed, offset, companion)
                .into_iter()
                .enumerate()
                .map(|(i, item)| CompletionItem {
                    label: item.label.clone(),
                    kind: Some(match item.kind {
                        ItemKind::Macro(ExportKind::Attribute) => CompletionItemKind::FUNCTION,
                        ItemKind::Macro(_) => CompletionItemKind::FUNCTION,
                        ItemKind::Helper => CompletionItemKind::PROPERTY,
                        ItemKind::Argument => CompletionItemKind::FIELD,
                        ItemKind::Value => CompletionItemKind::ENUM_MEMBER,
                        ItemKind::Cell => CompletionItemKind::MODULE,
                        ItemKind::Api => CompletionItemKind::REFERENCE,
                    }),
                    detail: Some(item.detail.clone()),
                    documentation: (!item.docs.is_empty()).then(|| {
                        Documentation::MarkupContent(MarkupContent {
                            kind: MarkupKind::Markdown,
                            value: item.docs.clone(),
                        })
                    }),
                    sort_text: Some(format!("{i:04}")),
                    text_edit: Some(CompletionTextEdit::Edit(TextEdit {
                        range: range_in(&lines, item.replace),
                        new_text: item.insert.clone(),
                    })),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        });
        Ok(items.map(CompletionResponse::Array))
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let uri = params.text_document_position_params.text_document.uri;
        let pos = params.text_document_position_params.position;
        let companion = *lock(&self.state.companion);
        Ok(self
            .with_doc(&uri, |index, path, text, parsed| {
                let lines = LineIndex::new(text);
                let offset = lines.offset(pos.line, pos.character);
                analysis::hover(index, path, parsed, offset, companion).map(|(md, range)| Hover {
                    contents: HoverContents::Markup(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: md,
                    }),
                    range: Some(range_in(&lines, range)),
                })
            })
            .flatten())
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let uri = params.text_document_position_params.text_document.uri;
        let pos = params.text_document_position_params.position;
        let target = self
            .with_doc(&uri, |index, path, text, parsed| {
                let offset = LineIndex::new(text).offset(pos.line, pos.character);
                analysis::definition(index, path, parsed, offset)
            })
            .flatten();
        let Some((file, range)) = target else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(None);
        };
        let Some(uri) = Uri::from_file_path(&file) else {
            return Ok(None);
        };
        Ok(Some(GotoDefinitionResponse::Scalar(Location::new(
            uri,
            to_range(&text, range),
        ))))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let mut actions = Vec::new();
        for d in &params.context.diagnostics {
            // Data the client sends back is untrusted: what does not read as ours is skipped.
            let Some(FixData {
                uri,
                title,
                replacement,
                range,
            }) = d
                .data
                .clone()
                .and_then(|data| serde_json::from_value(data).ok())
            else {
                continue;
            };
            let target = uri
                .parse::<Uri>()
                .unwrap_or_else(|_| params.text_document.uri.clone());
            let mut changes = HashMap::new();
            changes.insert(
                target,
                vec![TextEdit {
                    range,
                    new_text: replacement,
                }],
            );
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(changes),
                    ..Default::default()
                }),
                is_preferred: Some(true),
                ..Default::default()
            }));
        }
        Ok(Some(actions))
    }
}
