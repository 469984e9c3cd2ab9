//! cell-lsp benchmark over stdio: server start to first completion, completion and hover
//! latency (p50/p99) in a 300-line and a 3,000-line buffer while edits stream in (a `didChange`
//! before every request), on this repository's workspace; and `cell-lsp --check` against a warm
//! `cargo check` after touching one file.
//!
//! `cargo build -p cell-lsp --release && cargo run -p cell-bench --bin lsp --release --
//! [--server PATH] [--requests N]` (default server: `$CARGO_TARGET_DIR/release/cell-lsp`, else
//! `target/release/cell-lsp`).

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
}

struct Lsp {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    id: i64,
}

impl Lsp {
    fn start(server: &Path, root: &Path) -> Result<Lsp> {
        let mut child = Command::new(server)
            .arg("--stdio")
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

fn buffer(lines: usize) -> String {
    let mut s = String::from(
        "use cell_sdk::{cell_remote, protein};\n\ncell_remote!(Val = \"validate\");\n\n",
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
        "{name:<44} p50 {:7.3} ms   p99 {:7.3} ms   (n={})",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.len()
    );
}

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repo")?
        .canonicalize()?;
    let server = args.server.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo.join("target"), PathBuf::from)
            .join("release/cell-lsp")
    });
    let file = repo.join("examples/validate-demo/src/main.rs");
    let uri = format!("file://{}", file.display());

    let t = Instant::now();
    let mut lsp = Lsp::start(&server, &repo)?;
    let text = buffer(300);
    lsp.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "rust", "version": 1, "text": text } }),
    )?;
    let line = text.lines().count() - 3;
    let first = lsp.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 10 } }),
    )?;
    println!(
        "server start to first completion: {:.1} ms ({} items)",
        t.elapsed().as_secs_f64() * 1e3,
        first.as_array().map_or(0, Vec::len)
    );

    for lines in [300usize, 3000] {
        let text = buffer(lines);
        let line = text.lines().count() - 3;
        lsp.notify("textDocument/didChange", json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": text }] }))?;
        let mut completion = Histogram::<u64>::new(3)?;
        let mut hover = Histogram::<u64>::new(3)?;
        for i in 0..args.requests {
            // An edit streams in before every request (a character typed and removed in a
            // comment at the top of the file).
            let edit = if i % 2 == 0 { "x" } else { "" };
            let end = if i % 2 == 0 { 0 } else { 1 };
            lsp.notify(
                "textDocument/didChange",
                json!({ "textDocument": { "uri": uri, "version": i + 3 }, "contentChanges": [{
                    "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 0, "character": end } }, "text": edit }] }),
            )?;
            let t = Instant::now();
            let r = lsp.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 10 } }))?;
            let took = t.elapsed();
            if i >= args.requests / 10 {
                completion.record(took.as_micros() as u64)?;
            }
            anyhow::ensure!(
                r.as_array().is_some_and(|a| !a.is_empty()),
                "empty completion"
            );
            let t = Instant::now();
            lsp.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 4 } }))?;
            if i >= args.requests / 10 {
                hover.record(t.elapsed().as_micros() as u64)?;
            }
        }
        report(
            &format!("completion, {lines}-line buffer, edits streaming"),
            &completion,
        );
        report(
            &format!("hover, {lines}-line buffer, edits streaming"),
            &hover,
        );
    }
    lsp.stop()?;

    // --check on this repository (cold: no snapshot; warm: from the snapshot).
    let scratch = tempfile::tempdir()?;
    let time_check = || -> Result<Duration> {
        let t = Instant::now();
        let out = Command::new(&server)
            .args(["--check", "."])
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", scratch.path())
            .output()?;
        anyhow::ensure!(
            out.status.code().is_some_and(|c| c <= 1),
            "check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed())
    };
    let cold = time_check()?;
    let warm = (0..5).map(|_| time_check()).collect::<Result<Vec<_>>>()?;
    let mut warm_sorted = warm.clone();
    warm_sorted.sort();
    let warm = warm_sorted[warm_sorted.len() / 2];
    println!(
        "cell-lsp --check . : cold {:.1} ms, warm {:.1} ms",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    if args.with_cargo_check {
        let touch = || std::fs::write(&file, std::fs::read(&file)?);
        Command::new("cargo")
            .args(["check", "-p", "validate-demo"])
            .current_dir(&repo)
            .output()?;
        touch()?;
        let t = Instant::now();
        Command::new("cargo")
            .args(["check", "-p", "validate-demo"])
            .current_dir(&repo)
            .output()?;
        let cargo = t.elapsed();
        println!(
            "warm cargo check -p validate-demo after touching one file: {:.1} ms -> --check is {:.1}x faster (target >= 10x)",
            cargo.as_secs_f64() * 1e3,
            cargo.as_secs_f64() / warm.as_secs_f64()
        );
    }
    Ok(())
}
