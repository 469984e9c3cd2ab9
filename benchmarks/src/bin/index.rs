//! Index benchmark: cold index vs `cargo metadata --offline` on the same workspace (the anchor,
//! measured in the same run), warm start from the snapshot, and re-index after a provider
//! source edit measured from the debounced file event.
//!
//! `cargo run -p cell-bench --bin index --release -- [--manifest-path PATH] [--runs N]`
//! (default: this repository's workspace). Targets: cold ≤ 1.5× metadata, warm < 100 ms,
//! re-index < 50 ms.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cell_macro_index::{Index, IndexOptions, snapshot};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The workspace to index (default: this repository).
    #[arg(long)]
    manifest_path: Option<PathBuf>,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repo root")?;
    let manifest = args
        .manifest_path
        .unwrap_or_else(|| repo.join("Cargo.toml"));
    let scratch = tempfile::tempdir()?;
    let mut opts = IndexOptions::new(&manifest);
    opts.target_dir = Some(scratch.path().to_path_buf());

    // Cold index (first, so the index picks its cargo mode; the anchor then uses the same).
    let first = Index::build(&opts)?;
    let mut cold = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let index = Index::build(&opts)?;
        cold.push(t.elapsed());
        std::hint::black_box(index);
    }
    let mut anchor = Vec::new();
    for _ in 0..args.runs {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest);
        if let Some(host) = &first.platform {
            cmd.args(["--filter-platform", host]);
        }
        let t = Instant::now();
        let out = cmd.output()?;
        anchor.push(t.elapsed());
        if !out.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let (cold, anchor) = (median(cold), median(anchor));
    println!(
        "graph: {} packages, {} providers{}",
        first.packages.len(),
        first.providers.len(),
        first
            .platform
            .as_deref()
            .map(|h| format!(" (host-only: {h})"))
            .unwrap_or_default()
    );
    println!(
        "cold index        {:8.2} ms   cargo metadata --offline {:8.2} ms   ratio {:.2}x (target <= 1.5x)",
        ms(cold),
        ms(anchor),
        cold.as_secs_f64() / anchor.as_secs_f64()
    );

    // Warm start.
    snapshot::save(&first)?;
    let mut warm = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let index =
            snapshot::load_fresh(scratch.path(), &manifest).context("snapshot not fresh")?;
        warm.push(t.elapsed());
        std::hint::black_box(index);
    }
    let warm = median(warm);
    println!(
        "warm start        {:8.2} ms   ({:.3}x of cargo metadata; target < 100 ms)",
        ms(warm),
        warm.as_secs_f64() / anchor.as_secs_f64()
    );

    // Re-index after a provider edit, from the file event.
    let fixtures = scratch.path().join("fixtures");
    copy_dir(&repo.join("tests/fixtures/lsp"), &fixtures)?;
    let root = fixtures.join("good").canonicalize()?;
    let mut fopts = IndexOptions::new(root.join("Cargo.toml"));
    fopts.target_dir = Some(scratch.path().join("fixture-target"));
    fopts.cargo_home = Some(scratch.path().join("empty-cargo-home"));
    let mut index = Index::build(&fopts)?;
    let (tx, rx) = mpsc::channel();
    let _watcher =
        cell_macro_index::watch::watch(&index, Duration::from_millis(10), move |paths| {
            let _ = tx.send((Instant::now(), paths));
        })?;
    let macros = fixtures
        .join("providers/kvstore-macros/src/lib.rs")
        .canonicalize()?;
    let original = std::fs::read_to_string(&macros)?;
    let mut reindex = Vec::new();
    let mut delivery = Vec::new();
    for i in 0..args.runs {
        std::thread::sleep(Duration::from_millis(100));
        while rx.try_recv().is_ok() {}
        let edited = original.replace("/// Builds a query.", &format!("/// Builds a query ({i})."));
        let tmp = macros.with_extension("rs.tmp");
        std::fs::write(&tmp, edited)?;
        let written = Instant::now();
        std::fs::rename(&tmp, &macros)?;
        let (event_at, paths) = rx
            .recv_timeout(Duration::from_secs(10))
            .context("no file event")?;
        let t = Instant::now();
        index.apply_changes(&paths, &fopts)?;
        let done = t.elapsed() + t.duration_since(event_at);
        reindex.push(done);
        delivery.push(event_at.duration_since(written));
    }
    println!(
        "re-index on edit  {:8.2} ms   from the debounced event (event delivery after the write: {:.2} ms with a 10 ms debounce; target < 50 ms)",
        ms(median(reindex)),
        ms(median(delivery))
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "Cargo.lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
