//! `cell-lsp`: the editor and CI face of the Cell macro index.
//!
//! - `cell-lsp` / `cell-lsp --stdio`: a language server over stdio (completion after
//!   `#[Alias::`, arguments, helpers and cell names; hover; go to definition; diagnostics).
//! - `cell-lsp --check [PATH] [--message-format human|json]`: the same diagnostics over a
//!   workspace, for CI (exit 0 clean, 1 errors, 2 usage/I/O error).
//! - `cell-lsp index [PATH] [--json [--full]] [--watch]`: print the index (`--json`: a
//!   summary; `--full`: the whole index).
//!
//! Design: every feature is computed from `cell-macro-index` (in-process, warm-started from its
//! snapshot) and a parse of the buffer with `ra_ap_syntax`, confined to `syntax.rs`.

mod analysis;
mod check;
mod lines;
mod server;
mod syntax;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cell-lsp",
    version,
    about = "Language server and CI checker for Cell provider macros"
)]
struct Cli {
    /// Serve LSP over stdin/stdout (the default).
    #[arg(long)]
    stdio: bool,
    /// Check a workspace (default: the current directory) and exit.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = ".")]
    check: Option<PathBuf>,
    /// Output format of `--check`.
    #[arg(long, value_enum, default_value = "human", requires = "check")]
    message_format: check::MessageFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the macro index: providers, versions, exports, consumers, problems.
    Index {
        /// The workspace (directory or Cargo.toml); default: the current directory.
        path: Option<PathBuf>,
        /// Print a JSON summary: status, providers (exports, API), consumers' aliases and
        /// problems — proportionate to what uses Cell, not to the dependency graph.
        #[arg(long)]
        json: bool,
        /// With `--json`: print the whole index instead (every package of the dependency
        /// graph, parse problems, globs, input stamps: the snapshot's contents).
        #[arg(long, requires = "json")]
        full: bool,
        /// Keep watching and print the index again after every change.
        #[arg(long)]
        watch: bool,
    },
}

fn main() -> ExitCode {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(path) = cli.check {
        let mut stdout = std::io::stdout().lock();
        return match check::run(&path, cli.message_format, &mut stdout) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Index {
        path,
        json,
        full,
        watch,
    }) = cli.command
    {
        let format = match (json, full) {
            (false, _) => IndexFormat::Text,
            (true, false) => IndexFormat::Summary,
            (true, true) => IndexFormat::Full,
        };
        return match index_command(path.unwrap_or_else(|| PathBuf::from(".")), format, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let _ = cli.stdio; // stdio is the only transport, and the default.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(server::run_stdio());
    // Not waiting for blocking threads: a read of stdin may still be pending in one.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// Logs on stderr, filtered by `RUST_LOG` (default: warnings and errors); `CELL_LSP_LOG` is
/// read when `RUST_LOG` is not set (the name earlier versions used). No ANSI colours unless
/// stderr is a terminal: an editor's output panel or a CI log shows escape codes as text.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let var = if std::env::var_os("RUST_LOG").is_some() {
        "RUST_LOG"
    } else {
        "CELL_LSP_LOG"
    };
    let filter = EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::WARN.into())
        .with_env_var(var)
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

/// How `index` prints the index.
#[derive(Clone, Copy)]
enum IndexFormat {
    /// Lines for a human.
    Text,
    /// `--json`: [`summary`].
    Summary,
    /// `--json --full`: the whole serialized index.
    Full,
}

fn index_command(path: PathBuf, json: IndexFormat, watch: bool) -> anyhow::Result<()> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path
    };
    let options = cell_macro_index::IndexOptions::new(&manifest).with_stderr_progress();
    let mut index = cell_macro_index::load_or_build(&options)?;
    if !watch {
        return print_index(&index, json);
    }
    // The watcher starts before the first print, so an edit made by someone who waited for
    // that output is always seen; an edit made while indexing (after the build read the file,
    // before the watcher started) differs from the stamp the build took before reading it.
    let (tx, rx) = std::sync::mpsc::channel();
    let _watcher = cell_macro_index::watch::watch(
        &index,
        std::time::Duration::from_millis(50),
        move |paths| {
            let _ = tx.send(paths);
        },
    )?;
    let missed = index.changed_inputs();
    if !missed.is_empty() {
        index.apply_changes(&missed, &options)?;
    }
    print_index(&index, json)?;
    while let Ok(paths) = rx.recv() {
        if index.apply_changes(&paths, &options)? {
            print_index(&index, json)?;
        }
    }
    Ok(())
}

fn print_index(index: &cell_macro_index::Index, format: IndexFormat) -> anyhow::Result<()> {
    match format {
        IndexFormat::Full => {
            println!("{}", serde_json::to_string(index)?);
            return Ok(());
        }
        IndexFormat::Summary => {
            println!("{}", serde_json::to_string(&summary(index))?);
            return Ok(());
        }
        IndexFormat::Text => {}
    }
    println!(
        "{} packages, {} providers",
        index.packages.len(),
        index.providers.len()
    );
    if let Some(reason) = index.status.reason() {
        println!(
            "degraded: cargo could not resolve the dependencies; only the workspace members \
             were read: {}",
            reason.trim_end()
        );
    }
    for p in &index.providers {
        println!(
            "provider {} {} ({:?}) {}",
            p.cell,
            p.version,
            p.source,
            p.manifest_path.display()
        );
        for e in &p.exports {
            println!("  {} {}", e.kind.keyword(), e.name);
        }
    }
    for c in &index.consumers {
        for a in &c.aliases {
            match &a.resolved {
                Some(r) => println!(
                    "{}: {} = \"{}\" -> {} {} as ::{}",
                    c.package, a.name, a.cell, r.package, r.version, r.extern_crate
                ),
                None => println!("{}: {} = \"{}\" (unresolved)", c.package, a.name, a.cell),
            }
        }
    }
    for p in &index.problems {
        match &p.span {
            Some(s) => println!(
                "{}: {} at {}:{}:{}",
                p.code,
                p.message,
                s.file.display(),
                s.line,
                s.col
            ),
            None => println!("{}: {}", p.code, p.message),
        }
    }
    Ok(())
}

/// `index --json`: what a tool or a person asks the index about — its status, the providers
/// with their exports and API, the consumers' aliases and what they resolve to, the problems —
/// and not the dependency graph's every package, the globs or the input stamps (the full dump,
/// `--full`, is mostly those: 183 KB for a three-crate workspace). Its size grows with what
/// uses Cell, not with the dependencies.
fn summary(index: &cell_macro_index::Index) -> serde_json::Value {
    use serde_json::json;
    let span = |s: &cell_macro_index::Span| json!({ "file": s.file, "line": s.line, "col": s.col });
    json!({
        "workspace_root": index.workspace_root,
        "status": match index.status.reason() {
            Some(reason) => json!({ "degraded": reason.trim_end() }),
            None => json!("complete"),
        },
        "members": index.members.len(),
        "packages": index.packages.len(),
        "providers": index.providers.iter().map(|p| json!({
            "cell": p.cell,
            "package": p.package,
            "version": p.version,
            "source": p.source,
            "manifest_path": p.manifest_path,
            "exports": p.exports.iter().map(|e| json!({
                "kind": e.kind.keyword(),
                "name": e.name,
                "helpers": e.helpers,
                "args": e.args.iter().filter_map(|a| a.name.as_deref()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "api": p.api,
        })).collect::<Vec<_>>(),
        "consumers": index.consumers.iter().filter(|c| !c.aliases.is_empty()).map(|c| json!({
            "package": c.package,
            "aliases": c.aliases.iter().map(|a| json!({
                "name": a.name,
                "cell": a.cell,
                "version": a.version,
                "at": span(&a.span),
                "resolved": a.resolved.as_ref().map(|r| json!({
                    "package": r.package,
                    "version": r.version,
                    "extern_crate": r.extern_crate,
                })),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "problems": index.problems.iter().map(|p| json!({
            "code": p.code.as_str(),
            "severity": p.severity,
            "message": p.message,
            "at": p.span.as_ref().map(span),
        })).collect::<Vec<_>>(),
    })
}
