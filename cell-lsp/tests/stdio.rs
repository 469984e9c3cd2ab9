//! The real `cell-lsp` process, driven over stdio with JSON-RPC or run as a command, against
//! copies of the fixture workspaces in `tests/fixtures/lsp/`. Only what needs the process is
//! tested here; what completion, hover, definition and diagnostics answer is tested in process,
//! data-driven, in `src/analysis/tests.rs`. Two kinds of test:
//!
//! - **LSP sessions** (a handful): two smoke sessions (diagnostics, quick fixes, completion,
//!   hover, definition arriving as LSP types at the right positions, and a fix that edits
//!   `Cargo.toml`), and what only a session shows: framing and malformed messages, exit codes,
//!   edits applied in order, provider edits seen without client events, the degraded-index
//!   notice, the rust-analyzer option, and the real rust-analyzer side by side;
//! - **the command line** (`--check`, `index`, logs): process tests by nature.
//!
//! They live in the cell-lsp package (not in `tests/integration/`) because
//! `env!("CARGO_BIN_EXE_cell-lsp")` is only set for a package's own integration tests.

#![allow(
    clippy::unwrap_used,
    reason = "test harness helpers: a failure should just fail the test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else if entry.file_name() != "Cargo.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn fixtures() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lsp");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, &dir.path().join("fx"));
    let root = dir.path().join("fx").canonicalize().unwrap();
    (dir, root)
}

/// A server started at the root of the fixture workspace `workspace` (in a fresh copy of the
/// fixtures) with `rel`, a file of that workspace, open. Bind `_dir`: the copy lives as long
/// as it does.
struct Session {
    _dir: tempfile::TempDir,
    /// The copy of `tests/fixtures/lsp`.
    fx: PathBuf,
    root: PathBuf,
    file: PathBuf,
    /// What the open buffer holds.
    text: String,
    lsp: Lsp,
}

/// Opens `rel` holding `text`, or its contents on disk when `None`; see [`Session`].
fn session(workspace: &str, rel: &str, text: Option<&str>) -> Session {
    let (dir, fx) = fixtures();
    let root = fx.join(workspace);
    let file = root.join(rel);
    let text = text.map_or_else(|| std::fs::read_to_string(&file).unwrap(), str::to_owned);
    let mut lsp = Lsp::start(&root, &dir.path().join("target"));
    lsp.open(&file, &text);
    Session {
        _dir: dir,
        fx,
        root,
        file,
        text,
        lsp,
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

struct Lsp {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications received while waiting for responses.
    notifications: Vec<Value>,
    /// `serverInfo.name` from the `initialize` answer.
    server_name: String,
}

impl Lsp {
    fn start(root: &Path, target: &Path) -> Lsp {
        let stderr = if std::env::var_os("CELL_LSP_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Lsp::start_with(root, target, stderr)
    }

    /// [`Lsp::start`] with the server's stderr going to `stderr`.
    fn start_with(root: &Path, target: &Path, stderr: Stdio) -> Lsp {
        Lsp::start_full(root, target, stderr, Value::Null)
    }

    /// [`Lsp::start`] with `options` as `initializationOptions`.
    fn start_full(root: &Path, target: &Path, stderr: Stdio, options: Value) -> Lsp {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cell-lsp"));
        command
            .arg("--stdio")
            .env("CARGO_TARGET_DIR", target)
            .stderr(stderr);
        let lsp = Lsp::spawn(command, root, options, json!({}));
        assert_eq!(lsp.server_name, "cell-lsp");
        lsp
    }

    /// Starts `command` (any language server) and initializes it on `root`.
    fn spawn(mut command: Command, root: &Path, options: Value, capabilities: Value) -> Lsp {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap();
                    }
                }
                let mut buf = vec![0; len];
                if reader.read_exact(&mut buf).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&buf).unwrap()).is_err() {
                    return;
                }
            }
        });
        let mut lsp = Lsp {
            child,
            stdin,
            rx,
            next_id: 1,
            notifications: Vec::new(),
            server_name: String::new(),
        };
        let init = lsp.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": uri(root),
                "capabilities": capabilities,
                "initializationOptions": options,
            }),
        );
        lsp.server_name = init["serverInfo"]["name"].as_str().unwrap_or("").to_owned();
        lsp.notify("initialized", json!({}));
        lsp
    }

    /// Writes `bytes` to the server as they are (a frame, or not).
    fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// `body` in a well-formed frame.
    fn send_body(&mut self, body: &[u8]) {
        let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        self.send_raw(&frame);
    }

    /// The next error response (already received or arriving within 60 s).
    fn wait_for_error(&mut self) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n.get("error").is_some())
        {
            return self.notifications.remove(i);
        }
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(60))
                .expect("no error response came");
            if msg.get("error").is_some() {
                return msg;
            }
            self.notifications.push(msg);
        }
    }

    /// Waits (at most 30 s) for the server to exit; its status code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "cell-lsp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, msg: &Value) {
        let body = serde_json::to_vec(msg).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
        self.stdin.write_all(&body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(60))
                .expect("no answer from cell-lsp");
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                assert!(msg.get("error").is_none(), "{msg}");
                return msg["result"].clone();
            }
            if msg.get("method").is_some() && msg.get("id").is_some() {
                // A server→client request (e.g. capability registration): answer it.
                let rid = msg["id"].clone();
                self.send(&json!({ "jsonrpc": "2.0", "id": rid, "result": null }));
                continue;
            }
            self.notifications.push(msg);
        }
    }

    /// The next notification `method` (already received or arriving within 60 s).
    fn wait_for(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method)
        {
            return self.notifications.remove(i);
        }
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(60))
                .expect("notification never came");
            if msg["method"] == method {
                return msg;
            }
            self.notifications.push(msg);
        }
    }

    /// The diagnostics of the next `publishDiagnostics` notification.
    fn diagnostics(&mut self) -> Vec<Value> {
        let published = self.wait_for("textDocument/publishDiagnostics");
        published["params"]["diagnostics"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn open(&mut self, path: &Path, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri(path), "languageId": "rust", "version": 1, "text": text } }),
        );
    }

    fn completion(&mut self, path: &Path, line: u32, character: u32) -> Vec<Value> {
        let r = self.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri(path) }, "position": { "line": line, "character": character } }),
        );
        // An array, or a `CompletionList` (rust-analyzer's answer).
        let items = if r.is_array() { &r } else { &r["items"] };
        items.as_array().cloned().unwrap_or_default()
    }

    fn labels(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_owned())
            .collect()
    }

    fn shutdown(mut self) {
        let r = self.request("shutdown", Value::Null);
        assert!(r.is_null());
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            assert!(Instant::now() < deadline, "cell-lsp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const BUFFER: &str = r#"use cell_sdk::cell_remote;

cell_remote!(DB = "kvstore");
cell_remote!(Val = "checks");

#[DB::persist(replicate = "raft")]
pub struct User {
    #[DB::key]
    id: u64,
}
"#;

/// (line, character) of the first occurrence of `needle` in `text`, plus `delta` characters.
fn pos(text: &str, needle: &str, delta: usize) -> (u32, u32) {
    let at = text.find(needle).unwrap() + delta;
    let line = text[..at].matches('\n').count();
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    (line as u32, col as u32)
}

/// Kills the child when dropped, also when the test fails (a watcher never exits by itself).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// LSP sessions.

/// A smoke session: each kind of answer arrives as LSP types at the right positions (what the
/// answers contain is tested in `src/analysis/tests.rs`). Diagnostics on open, the typo's fix
/// as a code action on the buffer, completion, hover, definition, a full-text change, shutdown.
#[test]
fn smoke_diagnostics_quick_fix_completion_hover_and_definition() {
    let buffer = format!("{BUFFER}\n#[DB::persit]\npub struct T;\n");
    let Session {
        _dir,
        file,
        text,
        mut lsp,
        ..
    } = session("good", "src/lib.rs", Some(&buffer));
    let range = |(l, c): (u32, u32), len: u32| json!({ "start": { "line": l, "character": c }, "end": { "line": l, "character": c + len } });

    let diags = lsp.diagnostics();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["range"], range(pos(&text, "persit", 0), 6));
    assert_eq!(diags[0]["severity"], 1); // Error.
    assert_eq!(diags[0]["code"], "CELL0015");
    assert_eq!(diags[0]["source"], "cell");
    assert_eq!(
        diags[0]["message"],
        "`DB` (kvstore 0.3.1) exports no attribute macro `persit`\n\
         help: did you mean `persist`?\nnote: rustc reports this as E0433"
    );
    let actions = lsp.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": uri(&file) },
            "range": diags[0]["range"],
            "context": { "diagnostics": [diags[0]] }
        }),
    );
    assert_eq!(actions.as_array().map(Vec::len), Some(1), "{actions}");
    assert_eq!(actions[0]["title"], "replace with `persist`");
    assert_eq!(actions[0]["kind"], "quickfix");
    assert_eq!(
        actions[0]["edit"]["changes"][uri(&file)],
        json!([{ "range": diags[0]["range"], "newText": "persist" }])
    );

    // `#[DB::pe|rsist(`: the item replaces the whole name.
    let (l, c) = pos(&text, "#[DB::persist(", 8);
    let items = lsp.completion(&file, l, c);
    assert_eq!(Lsp::labels(&items), ["persist"]);
    assert_eq!(items[0]["kind"], 3); // Function.
    assert_eq!(items[0]["detail"], "kvstore 0.3.1");
    assert_eq!(items[0]["documentation"]["kind"], "markdown");
    assert_eq!(
        items[0]["documentation"]["value"],
        "Stores this struct in a kvstore table.\n\nFields marked `#[DB::key]` form the primary key."
    );
    assert_eq!(
        items[0]["textEdit"],
        json!({ "range": range(pos(&text, "persist(", 0), 7), "newText": "persist" })
    );

    let at = pos(&text, "persist(", 2);
    let hover = lsp.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri(&file) }, "position": { "line": at.0, "character": at.1 } }),
    );
    assert_eq!(hover["contents"]["kind"], "markdown");
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(md.starts_with("```rust\n#[DB::persist]\n```\n"), "{md}");
    assert_eq!(hover["range"], range(pos(&text, "persist(", 0), 7));

    let def = lsp.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri(&file) }, "position": { "line": at.0, "character": at.1 } }),
    );
    assert!(
        def["uri"]
            .as_str()
            .unwrap()
            .ends_with("providers/kvstore-macros/src/lib.rs"),
        "{def}"
    );
    // `pub fn persist` is line 9 of the macro crate.
    assert_eq!(def["range"], range((8, 7), 7));

    // A full-text change replaces the buffer: its answers are the new text's.
    let half = format!("{BUFFER}\n#[DB::");
    lsp.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri(&file), "version": 2 }, "contentChanges": [{ "text": half }] }),
    );
    let last = half.lines().count() as u32 - 1;
    assert_eq!(Lsp::labels(&lsp.completion(&file, last, 6)), ["persist"]);
    assert!(lsp.diagnostics().is_empty());
    lsp.shutdown();
}

/// A smoke session for a fix in another file: CELL0001's code action edits the crate's
/// `Cargo.toml`, its range computed in that file.
#[test]
fn smoke_a_quick_fix_that_edits_cargo_toml() {
    let Session {
        _dir,
        root,
        file,
        mut lsp,
        ..
    } = session("missing-dep", "app/src/lib.rs", None);
    let diags = lsp.diagnostics();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "CELL0001");
    let actions = lsp.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": uri(&file) },
            "range": diags[0]["range"],
            "context": { "diagnostics": diags }
        }),
    );
    let action = &actions[0];
    assert_eq!(
        action["title"],
        "Add `checks = { path = \"../../providers/checks\" }` to Cargo.toml"
    );
    let manifest_uri = uri(&root.join("app/Cargo.toml"));
    let edit = &action["edit"]["changes"][&manifest_uri][0];
    assert_eq!(
        edit["newText"],
        "\nchecks = { path = \"../../providers/checks\" }"
    );
    assert_eq!(
        edit["range"]["start"],
        json!({ "line": 5, "character": 14 })
    );
    lsp.shutdown();
}

#[test]
fn a_thousand_changes_each_followed_by_a_checked_completion() {
    let text = format!("{BUFFER}\n#[DB::p");
    let Session {
        _dir,
        file,
        text,
        mut lsp,
        ..
    } = session("good", "src/lib.rs", Some(&text));
    let last = text.lines().count() as u32 - 1;
    for i in 0..1000u32 {
        // Replace the last typed letter: `p` (→ persist) on even steps, `q` (no attribute
        // starts with q) on odd ones. Each answer must reflect the edit just before it.
        let letter = if i % 2 == 0 { "q" } else { "p" };
        lsp.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri(&file), "version": i + 2 },
                "contentChanges": [{
                    "range": { "start": { "line": last, "character": 6 }, "end": { "line": last, "character": 7 } },
                    "text": letter
                }]
            }),
        );
        let labels = Lsp::labels(&lsp.completion(&file, last, 7));
        if letter == "p" {
            assert_eq!(labels, ["persist"], "step {i}");
        } else {
            assert!(labels.is_empty(), "step {i}: {labels:?}");
        }
    }
    lsp.shutdown();
}

#[test]
fn a_provider_edited_on_disk_shows_up_without_client_file_events() {
    let Session {
        _dir,
        fx,
        file,
        mut lsp,
        ..
    } = session("good", "src/lib.rs", Some(BUFFER));
    let (l, c) = pos(BUFFER, "#[DB::persist(", 6);
    let macros = fx.join("providers/kvstore-macros/src/lib.rs");
    let text = std::fs::read_to_string(&macros).unwrap();
    // An editor-style atomic save in "another window"; no didChangeWatchedFiles is sent.
    let tmp = macros.with_extension("rs.tmp");
    std::fs::write(
        &tmp,
        text.replace("/// Stores this struct", "/// Saves this struct"),
    )
    .unwrap();
    std::fs::rename(&tmp, &macros).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let items = lsp.completion(&file, l, c);
        let docs = items[0]["documentation"]["value"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if docs.starts_with("Saves this struct") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the provider edit never reached the server: {docs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lsp.shutdown();
}

#[test]
fn the_editor_is_told_when_the_index_is_degraded() {
    let (dir, fx) = fixtures();
    let root = fx.join("typos");
    add_dependency(
        &root.join("Cargo.toml"),
        "no-such-crate-in-any-cache = \"1\"",
    );
    let mut lsp = Lsp::start(&root, &dir.path().join("target"));
    let shown = lsp.wait_for("window/showMessage");
    assert_eq!(shown["params"]["type"], 2, "{shown}"); // Warning.
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(message.contains("not checked"), "{message}");
    assert!(message.contains("no-such-crate-in-any-cache"), "{message}");
    lsp.shutdown();
}

#[test]
fn well_framed_bad_messages_are_answered_and_the_server_keeps_serving() {
    let Session {
        _dir,
        file,
        text,
        mut lsp,
        ..
    } = session("typos", "src/lib.rs", None);
    let (line, character) = pos(&text, "#[DB::persit", 6);
    for (body, code) in [
        (&b"{\"jsonrpc\":"[..], -32700),
        (b"\xff\xfe{}", -32700),
        (b"null", -32600),
        (
            b"[{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"shutdown\"}]",
            -32600,
        ),
        (b"{\"id\":98,\"method\":\"shutdown\"}", -32600),
    ] {
        lsp.send_body(body);
        let answer = lsp.wait_for_error();
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["id"], Value::Null, "{answer}");
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        // Still serving, with everything it knew.
        let items = lsp.completion(&file, line, character);
        assert!(
            Lsp::labels(&items).contains(&"persist".to_owned()),
            "{items:?}"
        );
    }
    // The batch's `shutdown` was not run: a real one still gets its answer, and exit is 0.
    lsp.shutdown();
}

#[test]
fn a_broken_content_length_header_ends_the_server_with_an_error() {
    let (dir, fx) = fixtures();
    let mut lsp = Lsp::start_with(&fx.join("good"), &dir.path().join("target"), Stdio::piped());
    lsp.send_raw(b"Content-Length: twelve\r\n\r\n{\"jsonrpc\":1}");
    assert_eq!(lsp.wait_exit(), Some(2));
    let mut stderr = String::new();
    lsp.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("invalid Content-Length: \"twelve\""),
        "{stderr}"
    );
    assert!(!stderr.contains("\x1b["), "colours in a pipe: {stderr}");
}

#[test]
fn exit_without_shutdown_exits_1() {
    let (dir, fx) = fixtures();
    let mut lsp = Lsp::start(&fx.join("good"), &dir.path().join("target"));
    lsp.notify("exit", Value::Null);
    assert_eq!(lsp.wait_exit(), Some(1));
}

/// `initializationOptions.rustAnalyzer` (what the VS Code extension sends when the
/// rust-analyzer extension is active) reaches the analysis: the argument error the macro reports
/// in its expansion (CELL0014 on `"rafts"`) and the macro names after `#[DB::` are left out.
/// What is left out where: `src/analysis/tests.rs`.
#[test]
fn the_rust_analyzer_option_leaves_out_what_rust_analyzer_gives() {
    let (dir, fx) = fixtures();
    let root = fx.join("typos");
    let file = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lsp = Lsp::start_full(
        &root,
        &dir.path().join("target"),
        Stdio::null(),
        json!({ "rustAnalyzer": true }),
    );
    lsp.open(&file, &text);
    let diags = lsp.diagnostics();
    let codes: Vec<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
    assert_eq!(codes, ["CELL0015", "CELL0011"], "{diags:?}");
    let (l, c) = pos(&text, "#[DB::persist(", 6);
    assert_eq!(
        Lsp::labels(&lsp.completion(&file, l, c)),
        Vec::<String>::new()
    );
    lsp.shutdown();
}

/// The gold standard of issue 16: the real rust-analyzer and the real cell-lsp (told it runs
/// beside rust-analyzer, as the VS Code extension does) on one consumer of a real provider
/// (`examples/validate`, whose macros rust-analyzer builds and expands): at each position, each
/// completion label comes from one server only, and each diagnostic (by its range) from one
/// server only — while cell-lsp alone would repeat rust-analyzer's. rust-analyzer's own cargo
/// check (`checkOnSave`) is off: what rustc reports after a save is rustc's, not a duplicate.
///
/// Needs `rust-analyzer` (`rustup component add rust-analyzer`): without it the test says so
/// and passes, unless `CELL_RA_REQUIRED=1` (`.ci/run` installs it and sets that). Builds the
/// provider with cargo check into `$CARGO_TARGET_DIR` (shared with the workspace's own build):
/// about 30 s warm.
#[test]
fn beside_the_real_rust_analyzer_each_completion_and_diagnostic_appears_once() {
    let installed = Command::new("rust-analyzer")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var("CELL_RA_REQUIRED").as_deref() != Ok("1"),
            "CELL_RA_REQUIRED=1 but `rust-analyzer --version` fails: install it with \
             `rustup component add rust-analyzer`"
        );
        eprintln!(
            "SKIPPED beside_the_real_rust_analyzer_…: rust-analyzer is not installed \
             (`rustup component add rust-analyzer`; CELL_RA_REQUIRED=1 makes this a failure)"
        );
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("consumer");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\ncell-sdk = {{ path = {:?} }}\nvalidate = {{ path = {:?} }}\n\n[workspace]\n",
            repo.join("cell-sdk"),
            repo.join("examples/validate"),
        ),
    )
    .unwrap();
    // The workspace's lock file: the same versions, resolved without the network.
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let text = "use cell_sdk::cell_remote;\ncell_remote!(Val = \"validate\");\n\n\
                #[Val::schema]\npub struct Signup {\n    #[Val::length(min = 2, mx = 64)]\n    pub name: String,\n\
                \x20   #[Val::emial]\n    pub email: String,\n    #[Val::length(mn = 1)]\n    pub age: u8,\n}\n\n\
                #[Val::schemaa]\npub struct Other {\n    pub x: u8,\n}\n\n\
                pub fn f() -> bool {\n    Val::is_email(\"x\")\n}\n";
    let file = root.join("src/lib.rs");
    std::fs::write(&file, text).unwrap();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from);

    let mut ra_command = Command::new("rust-analyzer");
    ra_command
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_NET_OFFLINE", "true")
        .stderr(Stdio::null());
    let mut ra = Lsp::spawn(
        ra_command,
        &root,
        json!({ "checkOnSave": false, "check": { "enable": false } }),
        json!({ "experimental": { "serverStatusNotification": true } }),
    );
    ra.open(&file, text);
    // Until rust-analyzer has loaded the workspace and built the provider's macros.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(
            Instant::now() < deadline,
            "rust-analyzer never became quiescent"
        );
        let msg = match ra.rx.recv_timeout(Duration::from_secs(5)) {
            Ok(msg) => msg,
            Err(_) => continue,
        };
        if msg.get("id").is_some() && msg.get("method").is_some() {
            let rid = msg["id"].clone();
            ra.send(&json!({ "jsonrpc": "2.0", "id": rid, "result": null }));
            continue;
        }
        let ready = msg["method"] == "experimental/serverStatus"
            && msg["params"]["quiescent"] == true
            && msg["params"]["health"] != "error";
        ra.notifications.push(msg);
        if ready {
            break;
        }
    }
    // Quiescent can come before the provider's macros are loaded on a slow machine: wait (up
    // to two minutes) until rust-analyzer completes the macro after `#[Val::`.
    let (l, c) = pos(text, "#[Val::schema]", 7);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Lsp::labels(&ra.completion(&file, l, c)).contains(&"schema".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "rust-analyzer never resolved `Val::schema`"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let target_lsp = dir.path().join("cell-target");
    let mut beside = Lsp::start_full(
        &root,
        &target_lsp,
        Stdio::null(),
        json!({ "rustAnalyzer": true }),
    );
    beside.open(&file, text);
    let mut alone = Lsp::start_full(&root, &target_lsp, Stdio::null(), Value::Null);
    alone.open(&file, text);

    let positions = [
        ("#[Val::schema]", 7),
        ("#[Val::emial]", 7),
        ("Val::is_email", 5),
        ("mx = 64", 0),
    ];
    let mut repeated_alone = Vec::new();
    for (needle, delta) in positions {
        let (l, c) = pos(text, needle, delta);
        let ra_labels = Lsp::labels(&ra.completion(&file, l, c));
        let ours = Lsp::labels(&beside.completion(&file, l, c));
        let both: Vec<&String> = ours.iter().filter(|l| ra_labels.contains(l)).collect();
        assert!(
            both.is_empty(),
            "at {needle:?}+{delta} both servers offer {both:?}\n  rust-analyzer: {ra_labels:?}\n  cell-lsp: {ours:?}"
        );
        let alone_labels = Lsp::labels(&alone.completion(&file, l, c));
        repeated_alone.extend(alone_labels.into_iter().filter(|l| ra_labels.contains(l)));
    }
    // What cell-lsp alone would have repeated (the test can tell a difference).
    assert!(
        ["schema", "is_email"]
            .iter()
            .all(|l| repeated_alone.iter().any(|r| r == l)),
        "{repeated_alone:?}"
    );

    // rust-analyzer's own diagnostics (not rustc's): it publishes them once its analysis is
    // done; the macro errors on `mx` and `mn` are among them.
    let key = |d: &Value| {
        (
            d["range"]["start"]["line"].clone(),
            d["range"]["start"]["character"].clone(),
        )
    };
    let mut ra_diags: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ra_diags.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "rust-analyzer never reported the macro errors: {ra_diags:?}"
        );
        let published = ra.wait_for("textDocument/publishDiagnostics");
        if published["params"]["uri"] == uri(&file).as_str() {
            ra_diags = published["params"]["diagnostics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["source"] == "rust-analyzer")
                .cloned()
                .collect();
        }
    }
    let ours = beside.diagnostics();
    let theirs: Vec<_> = ra_diags.iter().map(key).collect();
    for d in &ours {
        assert!(
            !theirs.contains(&key(d)),
            "both servers report at {:?}: {d}\n  rust-analyzer: {ra_diags:?}",
            key(d)
        );
    }
    // Each server keeps what only it reports: cell-lsp the helper typo and the unknown macro.
    let codes: Vec<&str> = ours.iter().filter_map(|d| d["code"].as_str()).collect();
    assert_eq!(codes, ["CELL0011", "CELL0015"], "{ours:?}");
    let alone_diags = alone.diagnostics();
    assert!(
        alone_diags.iter().any(|d| theirs.contains(&key(d))),
        "cell-lsp alone repeats rust-analyzer's argument errors: {alone_diags:?}"
    );
    beside.shutdown();
    alone.shutdown();
    ra.shutdown();
}

// The command line: `--check`, `index`, logs.

fn check(fx: &Path, target: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cell-lsp"))
        .args(args)
        .current_dir(fx)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// `cell-lsp ARGS` in `dir` with `env` added: (exit code, stdout, stderr).
fn check_env(
    dir: &Path,
    target: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cell-lsp"));
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Adds `line` under `[dependencies]` of `manifest`; returns the original text.
fn add_dependency(manifest: &Path, line: &str) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    std::fs::write(
        manifest,
        text.replace("[dependencies]", &format!("[dependencies]\n{line}")),
    )
    .unwrap();
    text
}

/// The three errors of the `typos` fixture, as `--check` summarises them.
const TYPOS_SUMMARY: &str = "cell-lsp: 3 error(s), 0 warning(s)\n";

#[test]
fn check_prints_rustc_style_output_and_exits_1_on_errors() {
    let (dir, fx) = fixtures();
    let (code, out) = check(&fx, &dir.path().join("t"), &["--check", "unknown-cell"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        r#"error[CELL0001]: unknown cell `kvstor`: no dependency of this crate is the package `kvstor`
 --> src/lib.rs:2:29
  |
2 | cell_sdk::cell_remote!(DB = "kvstor");
  |                             ^^^^^^^^
  |
  = help: did you mean "kvstore"?
  = help: providers this crate depends on: `kvstore` 0.3.1
cell-lsp: 1 error(s), 0 warning(s)
"#
    );
}

#[test]
fn check_json_is_cargo_compatible() {
    let (dir, fx) = fixtures();
    let (code, out) = check(
        &fx,
        &dir.path().join("t"),
        &["--check", "typos", "--message-format", "json"],
    );
    assert_eq!(code, 1);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["reason"], "compiler-message");
    assert_eq!(lines[0]["message"]["level"], "error");
    assert_eq!(lines[0]["message"]["spans"][0]["line_start"], 4);
    assert_eq!(lines[0]["message"]["spans"][0]["column_start"], 7);
    assert_eq!(
        lines[0]["message"]["spans"][0]["suggested_replacement"],
        "persist"
    );
    assert_eq!(lines[1]["message"]["code"]["code"], "CELL0014");
    assert!(
        lines[1]["message"]["rendered"]
            .as_str()
            .unwrap()
            .starts_with("error[CELL0014]")
    );
    assert_eq!(
        lines[3],
        json!({ "reason": "build-finished", "success": false })
    );
}

#[test]
fn check_exit_codes_for_clean_and_unusable_input() {
    let (dir, fx) = fixtures();
    let (code, out) = check(&fx, &dir.path().join("t"), &["--check", "good"]);
    assert_eq!((code, out.as_str()), (0, "cell-lsp: no problems\n"));
    let (code, _) = check(&fx, &dir.path().join("t"), &["--check", "no-such-dir"]);
    assert_eq!(code, 2);
    let (code, _) = check(&fx, &dir.path().join("t"), &["--no-such-flag"]);
    assert_eq!(code, 2);
    let (code, out) = check(&fx, &dir.path().join("t"), &["--version"]);
    assert_eq!(
        (code, out.as_str()),
        (0, concat!("cell-lsp ", env!("CARGO_PKG_VERSION"), "\n"))
    );
}

#[test]
fn check_fails_with_2_on_an_unresolvable_dependency_and_recovers_once_it_is_fixed() {
    let (dir, fx) = fixtures();
    let target = dir.path().join("t");
    let manifest = fx.join("typos/Cargo.toml");
    let original = add_dependency(&manifest, "no-such-crate-in-any-cache = \"1\"");
    for run in 0..2 {
        let (code, out, err) = check_env(&fx, &target, &["--check", "typos"], &[]);
        assert_eq!(code, 2, "run {run}: {out}{err}");
        assert!(!out.contains("no problems"), "{out}");
        assert!(err.contains("incomplete check"), "{err}");
        assert!(err.contains("no-such-crate-in-any-cache"), "{err}");
    }
    // Never saved as a snapshot: there is nothing to serve later.
    assert!(!target.join("cell-macro-index").exists());
    std::fs::write(&manifest, original).unwrap();
    let (code, out, err) = check_env(&fx, &target, &["--check", "typos"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.ends_with(TYPOS_SUMMARY), "{out}");
}

#[test]
fn check_with_a_cold_registry_cache_fails_with_2_and_a_warm_run_is_not_served_the_cold_one() {
    let (dir, fx) = fixtures();
    let target = dir.path().join("t");
    // A registry dependency this machine's cargo cache holds (the workspace uses serde), and a
    // CARGO_HOME with nothing in it: a fresh CI runner before `cargo fetch`.
    add_dependency(&fx.join("typos/Cargo.toml"), "serde = \"1\"");
    let cold = dir.path().join("empty-cargo-home");
    std::fs::create_dir_all(&cold).unwrap();
    let (code, out, err) = check_env(
        &fx,
        &target,
        &["--check", "typos"],
        &[("CARGO_HOME", &cold)],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("incomplete check"), "{err}");
    assert!(err.contains("cargo fetch"), "{err}");
    // Same manifest, same stamps, a warm cache: resolved afresh, so the typos are found.
    let (code, out, err) = check_env(&fx, &target, &["--check", "typos"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.ends_with(TYPOS_SUMMARY), "{out}");
    // That complete index was saved: a later cold run is served it (it holds the whole graph).
    let (code, out, err) = check_env(
        &fx,
        &target,
        &["--check", "typos"],
        &[("CARGO_HOME", &cold)],
    );
    assert!(out.ends_with(TYPOS_SUMMARY), "{out}");
    assert_eq!(code, 1, "{err}");
}

/// The findings cache (`<target>/cell-macro-index/check-*.json`) serves a file's diagnostics
/// only while the file, the index and the executable are the ones they were computed from.
#[test]
fn check_serves_cached_findings_only_for_unchanged_files_and_an_unchanged_index() {
    let (dir, fx) = fixtures();
    let target = dir.path().join("t");
    let cache_file = || {
        std::fs::read_dir(target.join("cell-macro-index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("check-")
            })
            .expect("a complete check saves its findings")
    };
    let (code, first) = check(&fx, &target, &["--check", "typos"]);
    assert_eq!(code, 1, "{first}");
    assert!(first.ends_with(TYPOS_SUMMARY), "{first}");

    // Served from the cache: a message planted in it comes back as is.
    let cached = std::fs::read_to_string(cache_file()).unwrap();
    assert!(cached.contains("persit"), "{cached}");
    std::fs::write(cache_file(), cached.replace("persit", "PLANTED")).unwrap();
    let (code, out) = check(&fx, &target, &["--check", "typos"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PLANTED"),
        "the unchanged file was checked again:\n{out}"
    );

    // The file changed: checked again, the planted message is gone.
    let lib = fx.join("typos/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{text}\n// edited\n")).unwrap();
    let (code, out) = check(&fx, &target, &["--check", "typos"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("PLANTED"), "{out}");
    assert_eq!(out, first, "an edit below every finding moves none of them");

    // A cache that is not one is ignored.
    std::fs::write(cache_file(), "{ not json").unwrap();
    let (code, out) = check(&fx, &target, &["--check", "typos"]);
    assert_eq!((code, out), (1, first));

    // The index changed, the consumer did not: the provider no longer accepts
    // `replicate = "raft"`, so `good`'s unchanged use of it is an error now, and fine again
    // once the declaration is restored.
    let (code, out) = check(&fx, &target, &["--check", "good"]);
    assert_eq!(code, 0, "{out}");
    let decl = fx.join("providers/kvstore/src/lib.rs");
    let provider = std::fs::read_to_string(&decl).unwrap();
    std::fs::write(
        &decl,
        provider.replace(r#""local" | "gossip" | "raft""#, r#""local" | "gossip""#),
    )
    .unwrap();
    let (code, out) = check(&fx, &target, &["--check", "good"]);
    assert_eq!(
        code, 1,
        "a cached result survived a change of the index:\n{out}"
    );
    assert!(
        out.contains("--> src/lib.rs"),
        "the consumer's use is the error:\n{out}"
    );
    assert!(out.contains("raft"), "{out}");
    std::fs::write(&decl, provider).unwrap();
    let (code, out) = check(&fx, &target, &["--check", "good"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_unfinished_attribute_does_not_hide_the_rest_of_the_file_from_check() {
    let (dir, fx) = fixtures();
    let lib = fx.join("typos/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    // Before the misspelt `#[DB::persit]`: proc-macro2 cannot lex this file at all.
    std::fs::write(
        &lib,
        text.replace("#[DB::persit]", "#[DB::\n\n#[DB::persit]"),
    )
    .unwrap();
    let (code, out, err) = check_env(&fx, &dir.path().join("t"), &["--check", "typos"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("error: syntax error"), "{out}");
    assert!(out.contains("--> src/lib.rs:4:"), "{out}");
    assert!(out.contains("`persit`"), "{out}");
    assert!(out.contains("CELL0014"), "{out}");
    assert!(
        out.ends_with("cell-lsp: 4 error(s), 0 warning(s)\n"),
        "{out}"
    );
}

#[test]
fn check_names_the_real_cause_when_a_path_cannot_be_read() {
    let (dir, fx) = fixtures();
    let target = dir.path().join("t");
    // A path through a file: ENOTDIR, also for root.
    let (code, out, err) = check_env(&fx, &target, &["--check", "good/Cargo.toml/sub"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("Not a directory"), "{err}");
    assert!(!err.contains("no Cargo.toml"), "{err}");
    // A manifest that is a symlink loop: ELOOP, also for root.
    let looped = fx.join("looped");
    std::fs::create_dir_all(&looped).unwrap();
    std::os::unix::fs::symlink("Cargo.toml", looped.join("Cargo.toml")).unwrap();
    let (code, out, err) = check_env(&fx, &target, &["--check", "looped"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("symbolic links"), "{err}");
    assert!(!err.contains("no Cargo.toml"), "{err}");
    // A source file that cannot be read (a symlink loop, for root too) is no clean check.
    let looping = fx.join("good/src/looping.rs");
    std::os::unix::fs::symlink("looping.rs", &looping).unwrap();
    let (code, out, err) = check_env(&fx, &target, &["--check", "good"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!out.contains("no problems"), "{out}");
    assert!(err.contains("cannot read 1 source file"), "{err}");
    assert!(
        err.contains("looping.rs: Too many levels of symbolic links"),
        "{err}"
    );
    std::fs::remove_file(&looping).unwrap();
    // What does not exist is still "no Cargo.toml".
    let (code, _, err) = check_env(&fx, &target, &["--check", "no-such-dir"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no Cargo.toml"), "{err}");
    // A directory without permissions: EACCES, unless this process may read anything.
    use std::os::unix::fs::PermissionsExt;
    let locked = fx.join("good");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let privileged = std::fs::read_dir(&locked).is_ok();
    let (code, out, err) = check_env(&fx, &target, &["--check", "good"], &[]);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    if privileged {
        eprintln!(
            "skipped the permission-denied assertion: this process reads a mode-000 directory \
             (root or CAP_DAC_OVERRIDE); the ENOTDIR and ELOOP cases above cover the same path"
        );
    } else {
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("Permission denied"), "{err}");
        assert!(!err.contains("no Cargo.toml"), "{err}");
    }
}

#[test]
fn logs_follow_rust_log_then_cell_lsp_log_without_colours_in_a_pipe() {
    let (dir, fx) = fixtures();
    let target = dir.path().join("t");
    let manifest = fx.join("typos/Cargo.toml");
    add_dependency(&manifest, "no-such-crate-in-any-cache = \"1\"");
    let none: &[(&str, &Path)] = &[];
    let run = |env: &[(&str, &Path)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cell-lsp"));
        cmd.args(["--check", "typos"])
            .current_dir(&fx)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUST_LOG")
            .env_remove("CELL_LSP_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        String::from_utf8(cmd.output().unwrap().stderr).unwrap()
    };
    // The fallback to `--no-deps` is logged at info: not shown by default (the check's own
    // error says it), shown with RUST_LOG, and without escape codes in a pipe.
    let default = run(none);
    assert!(!default.contains("retrying with --no-deps"), "{default}");
    assert!(default.contains("incomplete check"), "{default}");
    let info = Path::new("info");
    let shown = run(&[("RUST_LOG", info)]);
    assert!(shown.contains(" INFO "), "{shown}");
    assert!(shown.contains("retrying with --no-deps"), "{shown}");
    assert!(!shown.contains("\x1b["), "{shown}");
    let shown = run(&[("CELL_LSP_LOG", info)]);
    assert!(shown.contains("retrying with --no-deps"), "{shown}");
    // RUST_LOG wins over the old name.
    let both = run(&[("RUST_LOG", Path::new("warn")), ("CELL_LSP_LOG", info)]);
    assert!(!both.contains("retrying with --no-deps"), "{both}");
}

/// `--check` runs `cargo metadata` again only when a manifest or `Cargo.lock` changed: after an
/// edit of a source file it re-reads that file's package from the snapshot, and still sees
/// what the edit changed. Real cargo behind a logging wrapper (`$CARGO`, which the index runs).
#[test]
fn check_runs_cargo_metadata_again_only_after_a_manifest_or_lockfile_change() {
    let (dir, fx) = fixtures();
    let root = fx.join("good");
    let target = dir.path().join("target-metadata");
    let log = dir.path().join("cargo.log");
    let wrapper = dir.path().join("cargo-wrapper");
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("metadata"))
            .count()
    };
    let check = || check_env(&root, &target, &["--check", "."], &[("CARGO", &wrapper)]);

    let (code, cold, _) = check();
    assert_eq!(code, 0, "{cold}");
    let cold_runs = runs();
    assert!(cold_runs >= 1, "the cold check runs cargo metadata");
    let (code, _, _) = check();
    assert_eq!((code, runs()), (0, cold_runs), "nothing changed: no cargo");

    // A source edit the index must see: an alias of a cell nobody provides (CELL0001).
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        format!("{text}\ncell_remote!(Nope = \"no-such-cell\");\n"),
    )
    .unwrap();
    let (code, out, _) = check();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CELL0001"), "{out}");
    assert_eq!(
        runs(),
        cold_runs,
        "a source edit re-reads the file, not the graph"
    );
    std::fs::write(&lib, &text).unwrap();
    let (code, out, _) = check();
    assert_eq!(code, 0, "{out}");
    assert_eq!(runs(), cold_runs);

    // A manifest or lockfile edit: cargo again.
    let manifest = root.join("Cargo.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{original}\n# edited\n")).unwrap();
    let (code, _, _) = check();
    assert_eq!(code, 0);
    let after_manifest = runs();
    assert!(
        after_manifest > cold_runs,
        "a manifest edit runs cargo metadata"
    );
    let lock = root.join("Cargo.lock");
    let locked = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, format!("{locked}\n")).unwrap();
    let (code, _, _) = check();
    assert_eq!(code, 0);
    assert!(
        runs() > after_manifest,
        "a lockfile edit runs cargo metadata"
    );
    std::fs::write(&manifest, original).unwrap();
}

#[test]
fn check_on_this_repository_reports_nothing_false() {
    // Every `cell_remote!` consumer of this repository (examples, integration tests) is valid
    // code that compiles: --check must find no problem in it.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(repo, dir.path(), &["--check", "."]);
    assert_eq!((code, out.as_str()), (0, "cell-lsp: no problems\n"));
}

#[test]
fn index_subcommand_prints_json() {
    let (dir, fx) = fixtures();
    let (code, out) = check(
        &fx,
        &dir.path().join("t"),
        &["index", "two-versions", "--json"],
    );
    assert_eq!(code, 0);
    let index: Value = serde_json::from_str(&out).unwrap();
    let versions: Vec<&str> = index["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.3.1", "0.4.0"]);
    // The summary: counts for the graph, names for what uses Cell.
    assert_eq!(index["status"], "complete");
    assert!(index["packages"].is_u64(), "{index}");
    let exports: Vec<&str> = index["providers"][0]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(exports.contains(&"persist"), "{exports:?}");
    assert!(index.get("input_stamps").is_none());

    // `--full`: the whole index, every package of the graph.
    let (code, full) = check(
        &fx,
        &dir.path().join("t"),
        &["index", "two-versions", "--json", "--full"],
    );
    assert_eq!(code, 0);
    let full: Value = serde_json::from_str(&full).unwrap();
    assert_eq!(
        full["packages"].as_array().unwrap().len() as u64,
        index["packages"].as_u64().unwrap()
    );
    assert!(full.get("input_stamps").is_some());
    assert!(out.len() < full.to_string().len());

    // `--full` means nothing without `--json`: a usage error, and `--help` says what it does.
    let (code, _) = check(
        &fx,
        &dir.path().join("t"),
        &["index", "two-versions", "--full"],
    );
    assert_eq!(code, 2);
    let (code, help) = check(&fx, &dir.path().join("t"), &["index", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--full"), "{help}");
}

#[test]
fn index_watch_prints_the_index_again_after_a_provider_edit() {
    let (dir, fx) = fixtures();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cell-lsp"))
        .args(["index", "good", "--watch"])
        .current_dir(&fx)
        .env("CARGO_TARGET_DIR", dir.path().join("t"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Lines until `want` is seen (a generous timeout: the machine may be busy).
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == want => return seen,
                Ok(line) => seen.push(line),
                Err(_) => panic!("never printed {want:?}; printed: {seen:#?}"),
            }
        }
    };
    let first = wait_for("  attribute persist");
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("provider kvstore 0.3.1")),
        "{first:?}"
    );
    // An editor-style atomic save adding an attribute macro to the provider's declaration.
    let lib = fx.join("providers/kvstore/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let tmp = lib.with_extension("rs.tmp");
    std::fs::write(
        &tmp,
        text.replace(
            "    function query {}",
            "    attribute archive {}\n    function query {}",
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    wait_for("  attribute archive");
}
