//! `cell-macro-index`: knows every provider cell in a workspace's dependency graph, what each
//! exports (kinds, docs, helpers, argument schemas, source locations), what every
//! `cell_remote!(Alias = "cell")` in the workspace resolves to, and every problem with a stable
//! code, a span and, where possible, a fix.
//!
//! Principal types: [`Index`] (built by [`Index::build`], refreshed by
//! [`Index::apply_changes`]), [`Provider`], [`Export`], [`Consumer`], [`Alias`], [`Problem`] with
//! [`ProblemCode`]. [`snapshot`] gives a warm start, [`watch`] an incremental watch mode.
//!
//! Key design decision: **parse, never compile or run.** The graph comes from
//! `cargo metadata --offline` (retried with `--no-deps`, which makes the index
//! [`IndexStatus::Degraded`]: never saved, never to be called clean), each package's files are
//! located through its `manifest_path` (never by building registry paths), and providers'
//! `cell_sdk::export!` declarations and proc-macro crates are read with syn at token level, so
//! a half-written file still yields what it declares (a file that does not lex as written, such
//! as one with an unfinished `#[DB::`, is read around the broken spot). Parsing never fails:
//! the index returns what it understood plus problems. Where something cannot be resolved (no
//! resolved dependencies), it reports nothing rather than something false.
//!
//! What it is not: it is not used by `cell_remote!` or any macro (builds stay hermetic, see
//! `docs/design.md`; macros use `cell-resolver`), and it has no LSP types (cell-lsp converts).
//!
//! ```no_run
//! use cell_macro_index::{Index, IndexOptions};
//!
//! let options = IndexOptions::new("Cargo.toml");
//! let index = cell_macro_index::load_or_build(&options)?;
//! for provider in &index.providers {
//!     println!("{} {}: {} exports", provider.cell, provider.version, provider.exports.len());
//! }
//! for problem in &index.problems {
//!     println!("{}: {}", problem.code, problem.message);
//! }
//! # Ok::<(), cell_macro_index::IndexError>(())
//! ```

mod cache;
mod code;
mod decl;
mod discover;
mod index;
mod model;
mod procmacro;
mod scan;
pub mod snapshot;
mod span;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cache::{CacheListing, cargo_home};
pub use code::{ProblemCode, UnknownProblemCode};
pub use index::{
    BUILTIN_ATTRIBUTES, CELL_SDK_NAMES, GlobImport, Index, IndexStatus, ScopeName, did_you_mean,
    source_files, version_matches,
};
pub use model::{
    Alias, ArgSchema, Consumer, Dep, Export, ExportKind, Fix, MacroCrate, Package, Problem,
    Provider, Resolution, Severity, SourceKind, Span, ValueKind,
};

/// Progress of a cold index, reported every few packages.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Packages read so far.
    pub done: usize,
    /// Packages in the graph.
    pub total: usize,
    /// The package being read.
    pub package: String,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to build an index.
#[derive(Clone)]
pub struct IndexOptions {
    /// The workspace (or package) manifest.
    pub manifest_path: PathBuf,
    /// Pass `--offline` to cargo (default `true`: indexing never touches the network).
    pub offline: bool,
    /// Overrides `CARGO_HOME` for the version-skew check.
    pub cargo_home: Option<PathBuf>,
    /// Extra environment for the `cargo metadata` subprocess, e.g. `CARGO_HOME` to resolve
    /// against another cargo home (its registries, source replacements and git checkouts).
    pub cargo_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Overrides cargo's target directory (where the snapshot lives).
    pub target_dir: Option<PathBuf>,
    /// Called during a cold index.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for IndexOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexOptions")
            .field("manifest_path", &self.manifest_path)
            .field("offline", &self.offline)
            .field("cargo_home", &self.cargo_home)
            .field("cargo_env", &self.cargo_env)
            .field("target_dir", &self.target_dir)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl IndexOptions {
    /// Options for `manifest_path`, offline, without progress.
    pub fn new(manifest_path: impl Into<PathBuf>) -> IndexOptions {
        IndexOptions {
            manifest_path: manifest_path.into(),
            offline: true,
            cargo_home: None,
            cargo_env: Vec::new(),
            target_dir: None,
            progress: None,
        }
    }

    /// Adds a progress line on stderr (`indexing 120/340 serde`), for a cold index of a large
    /// graph.
    pub fn with_stderr_progress(mut self) -> IndexOptions {
        self.progress = Some(Arc::new(|p: &Progress| {
            eprintln!(
                "cell-macro-index: indexing {}/{} {}",
                p.done, p.total, p.package
            );
        }));
        self
    }

    /// The target directory the snapshot is looked up in without running cargo:
    /// [`IndexOptions::target_dir`], else `$CARGO_TARGET_DIR`, else `target/` beside the
    /// manifest.
    pub fn snapshot_target_dir(&self) -> PathBuf {
        if let Some(t) = &self.target_dir {
            return t.clone();
        }
        if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
            return PathBuf::from(t);
        }
        self.manifest_path
            .parent()
            .map_or_else(|| PathBuf::from("target"), |d| d.join("target"))
    }
}

/// Why no index could be built at all.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not even `cargo metadata --no-deps` worked.
    #[error("cargo metadata failed for {}: {message}", manifest.display())]
    Metadata {
        /// The manifest given.
        manifest: PathBuf,
        /// Cargo's message.
        message: String,
    },
}

/// The fresh snapshot if there is one (warm start); a snapshot whose only changed inputs are
/// source files, with those files' packages re-read ([`Index::apply_changes`], no `cargo
/// metadata`); else a cold [`Index::build`]. What was re-read or built is saved as the next
/// snapshot (a failure to save is logged, not fatal). A degraded index
/// ([`IndexStatus::Degraded`]) is returned but never saved: the next call runs cargo again.
pub fn load_or_build(options: &IndexOptions) -> Result<Index, IndexError> {
    let target = options.snapshot_target_dir();
    let mut opts = options.clone();
    opts.target_dir = Some(target.clone());
    let index = match snapshot::load(&target, &options.manifest_path) {
        Some((index, changed)) if changed.is_empty() => return Ok(index),
        // Only sources changed, no manifest or lockfile: the graph `cargo metadata` gave is
        // still the graph, so re-read just the packages owning the changed files (what the
        // watcher does in the editor) instead of running cargo again.
        Some((mut index, changed)) if !changed.iter().any(|p| is_manifest(p)) => {
            match index.apply_changes(&changed, &opts) {
                Ok(_) if settled(&index, &changed) => index,
                // A change no re-read accounts for (a deleted file, a file owned by no
                // package): index afresh rather than save a snapshot that is still stale.
                _ => Index::build(&opts)?,
            }
        }
        _ => Index::build(&opts)?,
    };
    if let Some(reason) = index.status.reason() {
        tracing::info!("the index is degraded (not saved as a snapshot): {reason}");
    } else if let Err(e) = snapshot::save(&index) {
        tracing::warn!("cannot save the index snapshot: {e}");
    }
    Ok(index)
}

/// `true` when every input among `changed` that is still an input was re-read (its stamp is
/// the file's now).
fn settled(index: &Index, changed: &[PathBuf]) -> bool {
    let inputs = index.inputs();
    changed.iter().filter(|p| inputs.contains(p)).all(|p| {
        index
            .input_stamps
            .get(p)
            .is_some_and(|s| *s == snapshot::stamp_of(p))
    })
}

/// `true` when `path` is a manifest or lockfile (a change means a full re-index).
pub fn is_manifest(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("Cargo.toml" | "Cargo.lock")
    )
}
