//! cell-lsp benchmark over stdio: server start to first completion (cold index and warm
//! snapshot), completion and hover latency (p50/p99) in a 300-line and a 3,000-line buffer while
//! edits stream in (a `didChange` before every request; in the 3,000-line buffer also edits in
//! the top `use` block, target p99 < 2 ms), a keystroke inside a run of 20,000 blank lines
//! (target p99 < 20 ms), on a generated workspace with 300+ dependency crates; and `cell-lsp
//! --check` on this repository (the examples workspace), cold, warm, and warm after touching
//! one source file (no `cargo metadata` then), against a warm `cargo check` after touching one
//! file (target >= 10x).
//!
//! `cargo build -p cell-lsp --release && cargo run -p cell-bench --bin lsp --release --
//! [--server PATH] [--requests N] [--with-cargo-check] [--with-cold-cargo-check]` (default server:
//! `$CARGO_TARGET_DIR/release/cell-lsp`, else `target/release/cell-lsp`).
//!
//! The 300+ crate workspace is generated offline (once, cached under the target dir, see
//! [`bench_workspace`]): one consumer depending on every registry package of this repository's
//! `Cargo.lock` (real crates from the local cargo cache, pinned with `=`), on the real `celldb`
//! and `validate` providers by path, and on generated path crates (plain crates and small
//! providers with their macro crates). `cargo metadata --offline` resolves it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The cell-lsp binary.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Requests per measurement.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Also time `--check` against a warm `cargo check` (slow: runs cargo check).
    #[arg(long)]
    with_cargo_check: bool,
    /// Also time both as on a fresh CI runner: a cold target directory (a new temporary one)
    /// and a warm registry cache. Slow: `cargo check` compiles every dependency.
    #[arg(long)]
    with_cold_cargo_check: bool,
}

struct Lsp {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    id: i64,
}

impl Lsp {
    fn start(server: &Path, root: &Path, target: &Path, env: &[(&str, &str)]) -> Result<Lsp> {
        let mut child = Command::new(server)
            .arg("--stdio")
            .env("CARGO_TARGET_DIR", target)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap_or(0);
                    }
                }
                let mut buf = vec![0; len];
                if r.read_exact(&mut buf).is_err() {
                    return;
                }
                let Ok(v) = serde_json::from_slice(&buf) else {
                    return;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut lsp = Lsp {
            child,
            stdin,
            rx,
            id: 0,
        };
        lsp.request("initialize", json!({ "processId": null, "rootUri": format!("file://{}", root.display()), "capabilities": {} }))?;
        lsp.notify("initialized", json!({}))?;
        Ok(lsp)
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        let body = serde_json::to_vec(v)?;
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len())?;
        self.stdin.write_all(&body)?;
        self.stdin.flush()?;
        Ok(())
    }

    fn notify(&mut self, method: &str, params: Value) -> Result<()> {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }))
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.id += 1;
        let id = self.id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(120))
                .context("no answer")?;
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return Ok(msg["result"].clone());
            }
        }
    }

    fn stop(mut self) -> Result<()> {
        self.request("shutdown", Value::Null)?;
        self.notify("exit", Value::Null)?;
        self.child.wait()?;
        Ok(())
    }
}

/// This machine's target triple (`rustc -vV`'s `host:` line).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    anyhow::ensure!(out.status.success(), "rustc -vV failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}

/// Generated path crates (plain) and generated providers (each with a macro crate).
const GEN_PLAIN: usize = 60;
const GEN_PROVIDERS: usize = 6;
/// Bump when the generated layout changes (the cache is keyed on it and on `Cargo.lock`).
const LAYOUT: u32 = 2;

/// The benchmark workspace under `target` (generated when missing or stale) and its consumer's
/// `src/lib.rs`. Generated, never compiled: only `cargo metadata --offline` and cell-lsp read it.
fn bench_workspace(repo: &Path, target: &Path) -> Result<(PathBuf, PathBuf)> {
    let lock = std::fs::read_to_string(repo.join("Cargo.lock")).context("reading Cargo.lock")?;
    // Every registry package of the repository's lockfile that this machine's cargo cache holds
    // (a lockfile also lists other platforms' crates, which an offline machine never fetched),
    // as a direct dependency pinned to the locked version (renamed, so two versions of one
    // crate can both be listed). Default features off: the graph stays a subset of what this
    // repository resolves offline.
    let registry_cache = cell_macro_index::cargo_home()
        .map(|home| home.join("registry/cache"))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .map(|dirs| {
            dirs.filter_map(|d| d.ok().map(|d| d.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cached = |n: &str, v: &str| {
        registry_cache
            .iter()
            .any(|dir| dir.join(format!("{n}-{v}.crate")).exists())
    };
    let mut deps = String::new();
    let mut name = None;
    let mut version = None;
    for line in lock.lines() {
        if line == "[[package]]" {
            name = None;
            version = None;
        } else if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ") {
            version = Some(v.trim_matches('"').to_owned());
        } else if line.starts_with("source = \"registry+")
            && let (Some(n), Some(v)) = (&name, &version)
            && cached(n, v)
        {
            let key = format!("{n}-{v}").replace(['.', '+'], "_");
            deps.push_str(&format!(
                "{key} = {{ package = \"{n}\", version = \"={v}\", default-features = false }}\n"
            ));
        }
    }
    // FNV-1a over the layout version and the dependencies (the lockfile's, as far as the cargo
    // cache holds them): regenerate when either changes.
    let stamp = deps
        .bytes()
        .chain(LAYOUT.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let root = target.join("lsp-bench-workspace");
    let lib = root.join("app/src/lib.rs");
    let stamp_file = root.join(".stamp");
    if std::fs::read_to_string(&stamp_file).ok() == Some(format!("{stamp:016x}")) {
        return Ok((root, lib));
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let write = |rel: &str, text: &str| -> Result<()> {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let repo_dep =
        |name: &str, rel: &str| format!("{name} = {{ path = \"{}\" }}\n", repo.join(rel).display());
    deps.push_str(&repo_dep("cell-sdk", "cell-sdk"));
    deps.push_str(&repo_dep("celldb", "celldb"));
    deps.push_str(&repo_dep("validate", "examples/validate"));
    for i in 0..GEN_PLAIN {
        deps.push_str(&format!(
            "gen-dep-{i:03} = {{ path = \"../gen/dep-{i:03}\" }}\n"
        ));
        let next = if i + 1 < GEN_PLAIN {
            format!(
                "gen-dep-{:03} = {{ path = \"../dep-{:03}\" }}\n",
                i + 1,
                i + 1
            )
        } else {
            String::new()
        };
        write(
            &format!("gen/dep-{i:03}/Cargo.toml"),
            &format!(
                "[package]\nname = \"gen-dep-{i:03}\"\nversion = \"0.1.{i}\"\nedition = \"2024\"\n\n[dependencies]\n{next}"
            ),
        )?;
        write(
            &format!("gen/dep-{i:03}/src/lib.rs"),
            &format!("//! Generated crate {i}.\npub fn f{i}() -> u32 {{ {i} }}\n"),
        )?;
    }
    for i in 0..GEN_PROVIDERS {
        deps.push_str(&format!(
            "gen-prov-{i} = {{ path = \"../gen/prov-{i}\" }}\n"
        ));
        write(
            &format!("gen/prov-{i}/Cargo.toml"),
            &format!(
                "[package]\nname = \"gen-prov-{i}\"\nversion = \"0.{i}.0\"\nedition = \"2024\"\n\n[dependencies]\ncell-sdk = {{ path = \"{}\" }}\ngen_prov_{i}_macros = {{ package = \"gen-prov-{i}-macros\", path = \"../prov-{i}-macros\" }}\n",
                repo.join("cell-sdk").display()
            ),
        )?;
        write(
            &format!("gen/prov-{i}/src/lib.rs"),
            &format!(
                "//! Generated provider {i}.\ncell_sdk::export! {{\n    format = 1;\n    cell = \"gen-prov-{i}\";\n    macros = gen_prov_{i}_macros;\n    attribute table {{\n        helpers = [key, column(name: str?)];\n        args {{ name: str?, mode: \"fast\" | \"safe\" = \"safe\" }}\n    }}\n    function sql {{}}\n    api = [open];\n}}\n/// Opens.\npub fn open() {{}}\n"
            ),
        )?;
        write(
            &format!("gen/prov-{i}-macros/Cargo.toml"),
            &format!(
                "[package]\nname = \"gen-prov-{i}-macros\"\nversion = \"0.{i}.0\"\nedition = \"2024\"\n\n[lib]\nproc-macro = true\n"
            ),
        )?;
        write(
            &format!("gen/prov-{i}-macros/src/lib.rs"),
            "//! Generated provider macros.\nuse proc_macro::TokenStream;\n/// A table.\n#[proc_macro_attribute]\npub fn table(_a: TokenStream, i: TokenStream) -> TokenStream { i }\n/// SQL.\n#[proc_macro]\npub fn sql(i: TokenStream) -> TokenStream { i }\n",
        )?;
    }
    write(
        "Cargo.toml",
        "[workspace]\nresolver = \"3\"\nmembers = [\"app\"]\n",
    )?;
    // The repository's lockfile seeds resolution: the same versions, all in the local cache.
    write("Cargo.lock", &lock)?;
    write(
        "app/Cargo.toml",
        &format!(
            "[package]\nname = \"bench-app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n{deps}"
        ),
    )?;
    write("app/src/lib.rs", &buffer(300))?;
    std::fs::write(&stamp_file, format!("{stamp:016x}"))?;
    Ok((root, lib))
}

fn buffer(lines: usize) -> String {
    let mut s = String::from(
        "use cell_sdk::{cell_remote, protein};\n\ncell_remote!(Val = \"validate\");\ncell_remote!(DB = \"celldb\");\n\n",
    );
    let mut i = 0;
    while s.lines().count() < lines - 6 {
        s.push_str(&format!("#[protein]\n#[Val::schema]\npub struct S{i} {{\n    #[Val::email]\n    email: String,\n}}\n\n"));
        i += 1;
    }
    s.push_str("#[Val::schema]\npub struct Last {\n    #[Val::\n    x: u64,\n}\n");
    s
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<52} p50 {:7.3} ms   p99 {:7.3} ms   (n={})",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.len()
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Starts a server, opens `file` with a 300-line buffer and times start → first completion.
fn first_completion(
    server: &Path,
    root: &Path,
    target: &Path,
    file: &Path,
    env: &[(&str, &str)],
) -> Result<(Lsp, Duration)> {
    let uri = format!("file://{}", file.display());
    let t = Instant::now();
    let mut lsp = Lsp::start(server, root, target, env)?;
    let text = buffer(300);
    lsp.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "rust", "version": 1, "text": text } }),
    )?;
    let line = text.lines().count() - 3;
    let first = lsp.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 11 } }),
    )?;
    let took = t.elapsed();
    anyhow::ensure!(
        first.as_array().is_some_and(|a| !a.is_empty()),
        "empty first completion: {first}"
    );
    Ok((lsp, took))
}

/// A keystroke inside a run of 20,000 blank lines in the middle of a 3,000-line buffer (typing
/// `x` and deleting it again, a `didChange` each), each followed by a completion at the end of
/// the file: the reparse must stay local (it once re-parsed the whole buffer, 251 ms p50).
fn measure_blank_lines(lsp: &mut Lsp, uri: &str, requests: usize, version: &mut i64) -> Result<()> {
    let base = buffer(3000);
    // After the 1,500th line, which ends an item (`buffer` writes 7-line items after a 5-line
    // head, and a blank line between them).
    let lines: Vec<&str> = base.lines().collect();
    let split = (1500..lines.len())
        .find(|&i| lines[i].is_empty() && lines[i - 1] == "}")
        .context("no item boundary")?;
    let mut text = lines[..split].join("\n");
    text.push('\n');
    text.push_str(&"\n".repeat(20_000));
    text.push_str(&lines[split..].join("\n"));
    text.push('\n');
    let keystroke_line = split + 10_000;
    let line = text.lines().count() - 3;
    *version += 1;
    lsp.notify("textDocument/didChange", json!({ "textDocument": { "uri": uri, "version": *version }, "contentChanges": [{ "text": text }] }))?;
    let mut keystroke = Histogram::<u64>::new(3)?;
    for i in 0..requests {
        let (edit, end) = if i % 2 == 0 { ("x", 0) } else { ("", 1) };
        *version += 1;
        let t = Instant::now();
        lsp.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": *version }, "contentChanges": [{
                "range": { "start": { "line": keystroke_line, "character": 0 }, "end": { "line": keystroke_line, "character": end } }, "text": edit }] }),
        )?;
        let r = lsp.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 11 } }))?;
        if i >= requests / 10 {
            keystroke.record(t.elapsed().as_micros() as u64)?;
        }
        anyhow::ensure!(
            r.as_array().is_some_and(|a| !a.is_empty()),
            "empty completion after a keystroke in blank lines"
        );
    }
    report(
        "keystroke in 20,000 blank lines + completion (p99 < 20 ms)",
        &keystroke,
    );
    Ok(())
}

/// Completion and hover latency in a `lines`-line buffer, with an edit before every request:
/// at the cursor (typing `e` after `#[Val::` and deleting it again, as a user does) or, as the
/// worst case, in the `use` line at the top of the file (outside any block: rust-analyzer's
/// incremental reparse cannot confine it, so the whole buffer is reparsed).
fn measure(
    lsp: &mut Lsp,
    uri: &str,
    lines: usize,
    requests: usize,
    at_cursor: bool,
    version: &mut i64,
) -> Result<()> {
    let text = buffer(lines);
    let line = text.lines().count() - 3;
    *version += 1;
    lsp.notify("textDocument/didChange", json!({ "textDocument": { "uri": uri, "version": *version }, "contentChanges": [{ "text": text }] }))?;
    let mut completion = Histogram::<u64>::new(3)?;
    let mut hover = Histogram::<u64>::new(3)?;
    let mut anchor = Histogram::<u64>::new(3)?;
    for i in 0..requests {
        let typed = i % 2 == 0;
        let (edit, at, end) = match (at_cursor, typed) {
            (true, true) => ("e", (line, 11), (line, 11)),
            (true, false) => ("", (line, 11), (line, 12)),
            (false, true) => ("x", (0, 0), (0, 0)),
            (false, false) => ("", (0, 0), (0, 1)),
        };
        *version += 1;
        lsp.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": *version }, "contentChanges": [{
                "range": { "start": { "line": at.0, "character": at.1 }, "end": { "line": end.0, "character": end.1 } }, "text": edit }] }),
        )?;
        let col = if at_cursor && typed { 12 } else { 11 };
        let t = Instant::now();
        let r = lsp.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": col } }))?;
        let took = t.elapsed();
        if i >= requests / 10 {
            completion.record(took.as_micros() as u64)?;
        }
        let labels: Vec<&str> = r
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["label"].as_str()).collect())
            .unwrap_or_default();
        anyhow::ensure!(
            labels.contains(&"email"),
            "completion without `email`: {labels:?}"
        );
        let t = Instant::now();
        let h = lsp.request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": uri }, "position": { "line": 6, "character": 8 } }),
        )?;
        if i >= requests / 10 {
            hover.record(t.elapsed().as_micros() as u64)?;
        }
        anyhow::ensure!(!h.is_null(), "empty hover");
        // The anchor: the same request for a document the server does not hold (it answers
        // at once) — stdio, JSON and scheduling, which the machine's load inflates too.
        let t = Instant::now();
        lsp.request("textDocument/completion", json!({ "textDocument": { "uri": "file:///nowhere.rs" }, "position": { "line": 0, "character": 0 } }))?;
        if i >= requests / 10 {
            anchor.record(t.elapsed().as_micros() as u64)?;
        }
    }
    let place = if at_cursor {
        "typing at the cursor"
    } else {
        "edits in the top `use`"
    };
    report(&format!("completion, {lines} lines, {place}"), &completion);
    report(&format!("hover, {lines} lines, {place}"), &hover);
    report("  anchor: empty request round trip", &anchor);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repo")?
        .canonicalize()?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from);
    let server = args
        .server
        .unwrap_or_else(|| target_dir.join("release/cell-lsp"));
    let (ws, file) = bench_workspace(&repo, &target_dir)?;
    let ws = ws.canonicalize()?;
    let file = file.canonicalize()?;
    let uri = format!("file://{}", file.display());

    // The workspace's size, as cargo sees it (offline, for this host's platform as the index
    // asks), with the anchor for the index.
    let host = host_triple()?;
    let t = Instant::now();
    let meta = Command::new("cargo")
        .args(["metadata", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host])
        .current_dir(&ws)
        .output()?;
    let metadata_time = t.elapsed();
    anyhow::ensure!(
        meta.status.success(),
        "cargo metadata --offline failed on the bench workspace: {}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let meta: Value = serde_json::from_slice(&meta.stdout)?;
    let packages = meta["packages"].as_array().map_or(0, Vec::len);
    let deps = packages.saturating_sub(1);
    println!(
        "bench workspace {}: {packages} packages ({deps} dependency crates); cargo metadata --offline {:.1} ms",
        ws.display(),
        metadata_time.as_secs_f64() * 1e3
    );
    anyhow::ensure!(deps >= 300, "only {deps} dependency crates");

    let scratch = tempfile::tempdir()?;
    // Cold: no snapshot in this fresh target dir. Warm: the snapshot the cold start saved.
    let (lsp, cold) = first_completion(&server, &ws, scratch.path(), &file, &[])?;
    lsp.stop()?;
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (lsp, took) = first_completion(&server, &ws, scratch.path(), &file, &[])?;
        lsp.stop()?;
        warm.push(took);
    }
    println!(
        "server start to first completion: cold index {:.1} ms, warm snapshot {:.1} ms (median of 3)",
        cold.as_secs_f64() * 1e3,
        median(warm).as_secs_f64() * 1e3
    );

    // The server as shipped (reparse by item), then, in the same run, with rust-analyzer's
    // incremental reparse alone (`CELL_LSP_REPARSE=rust-analyzer`) for comparison.
    for (label, env) in [
        ("reparse by item", &[][..]),
        (
            "rust-analyzer reparse only",
            &[("CELL_LSP_REPARSE", "rust-analyzer")][..],
        ),
    ] {
        println!("-- {label}");
        let (mut lsp, _) = first_completion(&server, &ws, scratch.path(), &file, env)?;
        let mut version = 2;
        measure_blank_lines(&mut lsp, &uri, args.requests, &mut version)?;
        for lines in [300usize, 3000] {
            for at_cursor in [true, false] {
                measure(
                    &mut lsp,
                    &uri,
                    lines,
                    args.requests,
                    at_cursor,
                    &mut version,
                )?;
            }
        }
        lsp.stop()?;
    }

    // --check on this repository, the examples workspace (cold: no snapshot; warm: from it).
    let check_scratch = tempfile::tempdir()?;
    let time_check = |dir: &Path| -> Result<Duration> {
        let t = Instant::now();
        let out = Command::new(&server)
            .args(["--check", "."])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", check_scratch.path())
            .output()?;
        anyhow::ensure!(
            out.status.code().is_some_and(|c| c <= 1),
            "check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed())
    };
    let cold = time_check(&repo)?;
    let warm = median(
        (0..5)
            .map(|_| time_check(&repo))
            .collect::<Result<Vec<_>>>()?,
    );
    println!(
        "cell-lsp --check . (examples workspace): cold {:.1} ms, warm {:.1} ms",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    let bench_cold = time_check(&ws)?;
    let bench_warm = median(
        (0..5)
            .map(|_| time_check(&ws))
            .collect::<Result<Vec<_>>>()?,
    );
    println!(
        "cell-lsp --check . (bench workspace): cold {:.1} ms, warm {:.1} ms",
        bench_cold.as_secs_f64() * 1e3,
        bench_warm.as_secs_f64() * 1e3
    );
    // Warm after an edit of one source file (its size and mtime change, the manifests do not):
    // the snapshot is stale, the file's package is re-read, `cargo metadata` is not run.
    let touched = repo.join("examples/validate-demo/src/main.rs");
    let original = std::fs::read(&touched)?;
    let mut after_edit = Vec::new();
    for i in 0..5 {
        let mut edited = original.clone();
        edited.extend_from_slice(format!("// edit {i}\n").as_bytes());
        std::fs::write(&touched, &edited)?;
        after_edit.push(time_check(&repo));
    }
    std::fs::write(&touched, &original)?;
    let after_edit = median(after_edit.into_iter().collect::<Result<Vec<_>>>()?);
    println!(
        "cell-lsp --check . (examples workspace) after editing one source file: {:.1} ms (median of 5)",
        after_edit.as_secs_f64() * 1e3
    );
    if args.with_cargo_check {
        let touch = || std::fs::write(&touched, std::fs::read(&touched)?);
        let cargo_check = || -> Result<Duration> {
            let t = Instant::now();
            let out = Command::new("cargo")
                .args(["check", "-p", "validate-demo"])
                .current_dir(&repo)
                .output()?;
            anyhow::ensure!(out.status.success(), "cargo check failed");
            Ok(t.elapsed())
        };
        cargo_check()?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            touch()?;
            runs.push(cargo_check()?);
        }
        let cargo = median(runs);
        println!(
            "warm cargo check -p validate-demo after touching one file: {:.1} ms (median of 3) -> --check warm is {:.1}x faster, after an edit {:.1}x (target >= 10x), cold {:.1}x",
            cargo.as_secs_f64() * 1e3,
            cargo.as_secs_f64() / warm.as_secs_f64(),
            cargo.as_secs_f64() / after_edit.as_secs_f64(),
            cargo.as_secs_f64() / cold.as_secs_f64()
        );
    }
    if args.with_cold_cargo_check {
        // A fresh CI runner: nothing built, the registry cache warm (`cargo fetch` ran).
        let scratch = tempfile::tempdir()?;
        let t = Instant::now();
        let out = Command::new("cargo")
            .args(["check", "-p", "validate-demo"])
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", scratch.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "cold cargo check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cargo_cold = t.elapsed();
        println!(
            "fresh CI runner (cold target directory, warm registry cache): cargo check -p validate-demo {:.1} s, cell-lsp --check . {:.1} ms -> --check is {:.0}x faster",
            cargo_cold.as_secs_f64(),
            cold.as_secs_f64() * 1e3,
            cargo_cold.as_secs_f64() / cold.as_secs_f64()
        );
    }
    Ok(())
}
