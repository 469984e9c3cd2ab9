//! Discovery of the dependency graph through `cargo metadata --offline` (`cargo_metadata`),
//! retried with `--no-deps` when resolution fails (a missing registry crate offline, a broken
//! lockfile): the workspace members are then still indexed, without resolved dependencies.
//! [`discover_stamped`] also stamps every manifest and lockfile cargo read, soundly although
//! most of them are only known once cargo has read them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cargo_metadata::{MetadataCommand, TargetKind};

use crate::model::{Dep, Package, SourceKind};
use crate::snapshot::stamp_of;

/// A file's (length, mtime in ns), `None` when it does not exist (see [`stamp_of`]).
pub(crate) type FileStamp = Option<(u64, u128)>;

/// The stamp kept for a file that may have changed while `cargo metadata` read it and that has
/// no stamp from before the run: a length no file has, so it never matches the file and the
/// snapshot is stale (and [`crate::Index::changed_inputs`] names the file).
pub(crate) const UNSETTLED: FileStamp = Some((u64::MAX, 0));

/// How far the kernel's file timestamps may lag the clock `SystemTime::now` reads: Linux stamps
/// writes with its coarse clock, at most one tick (10 ms at the lowest `HZ`, 100) behind; twice
/// that for headroom. Kept below the watchers' debounce (30 ms in cell-lsp), so a manifest
/// saved and then re-indexed on its file event is older than the run and costs no second run.
const CLOCK_LAG_NS: u128 = 20_000_000;

/// How many times [`discover_stamped`] runs cargo at most to get a run during which nothing
/// it read moved.
const MAX_RUNS: u32 = 3;

/// The files `cargo metadata` reads that the index treats as inputs: `manifest_path`, the
/// workspace root's manifest and `Cargo.lock`, and the manifest of every package that is neither
/// from a registry nor from git (those never change once extracted).
pub(crate) fn metadata_inputs(
    manifest_path: &Path,
    workspace_root: &Path,
    packages: &[Package],
) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    out.insert(manifest_path.to_path_buf());
    out.insert(workspace_root.join("Cargo.toml"));
    out.insert(workspace_root.join("Cargo.lock"));
    for pkg in packages {
        if !matches!(pkg.source, SourceKind::Registry | SourceKind::Git) {
            out.insert(pkg.manifest_path.clone());
        }
    }
    out
}

/// [`discover`], plus a stamp for every file of [`metadata_inputs`] that is sound: it never
/// matches the file when the file changed after cargo read it, so a snapshot built from
/// content older than the file is never served as fresh.
///
/// A stamp is sound when it was taken before cargo read the file, and only `manifest_path` and
/// its `Cargo.lock` are known before the run; the members (and the root, when `manifest_path`
/// is a member) are known only from cargo's answer. For those, the time the run started is the
/// test: a write made after it gets an mtime at or after it (minus the kernel's clock lag, see
/// [`written_since`]), so a file whose mtime is older was not written during the run and its
/// stamp taken now equals the one a stamp before the run would have given. A file that moved
/// during the run (a pre-run stamp that differs, or an mtime not older than the start) makes
/// the run unsettled: cargo runs again with every file of the previous answer stamped before
/// it. Cargo writing `Cargo.lock` itself is indistinguishable from another process writing it,
/// so it costs a run too, but cargo does not rewrite a lockfile that is up to date: a missing
/// or outdated lockfile, or a manifest saved just before the run, settles in two runs; a
/// manifest saved during the first run (whose new content makes cargo rewrite the lockfile in
/// the second) in three. What is still unsettled after [`MAX_RUNS`] keeps its pre-run stamp,
/// or [`UNSETTLED`], so the snapshot is stale and `changed_inputs` names it.
///
/// Assumed, as by every mtime stamp: a write sets the file's mtime to the current time, and
/// the clock does not step back while cargo runs (a network filesystem stamps with the
/// server's clock, which can defeat the start-time test). A file dated in the future is never
/// older than the start: it costs a second run on every build, never a stale snapshot.
pub(crate) fn discover_stamped(
    manifest_path: &Path,
    offline: bool,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<(Graph, BTreeMap<PathBuf, FileStamp>), cargo_metadata::Error> {
    let mut before: BTreeMap<PathBuf, FileStamp> = BTreeMap::new();
    before.insert(manifest_path.to_path_buf(), stamp_of(manifest_path));
    if let Some(dir) = manifest_path.parent() {
        let lock = dir.join("Cargo.lock");
        before.insert(lock.clone(), stamp_of(&lock));
    }
    let mut runs = 0;
    loop {
        runs += 1;
        let started = now_ns();
        let graph = discover(manifest_path, offline, env)?;
        #[cfg(test)]
        tests::after_metadata();
        let inputs = metadata_inputs(manifest_path, &graph.workspace_root, &graph.packages);
        let mut settled = true;
        let mut stamps = BTreeMap::new();
        for path in &inputs {
            let now = stamp_of(path);
            let kept = match before.get(path) {
                Some(pre) => {
                    settled &= *pre == now;
                    *pre
                }
                None if written_since(now, started) => {
                    settled = false;
                    UNSETTLED
                }
                None => now,
            };
            stamps.insert(path.clone(), kept);
        }
        if settled || runs == MAX_RUNS {
            return Ok((graph, stamps));
        }
        tracing::debug!(
            "a manifest or Cargo.lock moved while cargo metadata ran; running it again"
        );
        before = inputs
            .into_iter()
            .map(|p| {
                let s = stamp_of(&p);
                (p, s)
            })
            .collect();
    }
}

/// `true` when a file stamped `stamp` after a run that started at `started_ns` may have been
/// written during the run: it is gone (cargo read it, so it was deleted since), or its mtime is
/// not older than the start less [`CLOCK_LAG_NS`]. A whole-second mtime means a filesystem with
/// coarse timestamps (ext3 and HFS+ keep seconds, FAT two seconds): a write then gets the start
/// rounded down, so the start is rounded down to two seconds first.
pub(crate) fn written_since(stamp: FileStamp, started_ns: u128) -> bool {
    const TWO_SECONDS: u128 = 2_000_000_000;
    let Some((_, mtime)) = stamp else {
        return true;
    };
    let mut threshold = started_ns.saturating_sub(CLOCK_LAG_NS);
    if mtime % 1_000_000_000 == 0 {
        threshold -= threshold % TWO_SECONDS;
    }
    mtime >= threshold
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The graph as the index needs it.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) workspace_root: PathBuf,
    pub(crate) target_dir: PathBuf,
    pub(crate) members: Vec<String>,
    pub(crate) packages: Vec<Package>,
    /// `None` when dependencies were resolved; the resolution error otherwise.
    pub(crate) unresolved: Option<String>,
    /// The platform the graph was resolved for (`None` with `--no-deps`).
    pub(crate) platform: Option<String>,
}

/// Runs `cargo metadata` for `manifest_path`, resolved for the host platform
/// (`--filter-platform`, as rust-analyzer does: offline, other platforms' crates are often not
/// in the cache although everything this host builds is). `offline` adds `--offline`. Falls
/// back to `--no-deps` when resolution fails.
pub(crate) fn discover(
    manifest_path: &Path,
    offline: bool,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<Graph, cargo_metadata::Error> {
    let mut cmd = MetadataCommand::new();
    cmd.manifest_path(manifest_path);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut opts = if offline {
        vec!["--offline".to_owned()]
    } else {
        Vec::new()
    };
    let host = host_triple();
    if let Some(host) = &host {
        opts.extend(["--filter-platform".to_owned(), host.clone()]);
    }
    let mut full = cmd.clone();
    full.other_options(opts);
    let first = match full.exec() {
        Ok(meta) => return Ok(convert(meta, None, host)),
        Err(e) => e,
    };
    // Info, not a warning: the index says it is degraded (`IndexStatus`), and its users show
    // that to the user (cell-lsp: an error in `--check`, a message in the editor).
    tracing::info!("cargo metadata failed ({first}); retrying with --no-deps");
    cmd.no_deps();
    let meta = cmd.exec()?;
    Ok(convert(meta, Some(first.to_string()), None))
}

/// The host target triple: known without a subprocess on Linux, else from `rustc -vV`.
fn host_triple() -> Option<String> {
    if cfg!(target_os = "linux") {
        let env = if cfg!(target_env = "musl") {
            "musl"
        } else {
            "gnu"
        };
        return Some(format!("{}-unknown-linux-{env}", std::env::consts::ARCH));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-vV").output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
}

fn convert(
    meta: cargo_metadata::Metadata,
    unresolved: Option<String>,
    platform: Option<String>,
) -> Graph {
    let members: Vec<String> = meta
        .workspace_members
        .iter()
        .map(|id| id.repr.clone())
        .collect();
    let nodes: std::collections::HashMap<&str, &cargo_metadata::Node> = meta
        .resolve
        .iter()
        .flat_map(|r| r.nodes.iter())
        .map(|n| (n.id.repr.as_str(), n))
        .collect();
    let mut packages = Vec::with_capacity(meta.packages.len());
    for pkg in &meta.packages {
        let id = pkg.id.repr.clone();
        let source = if members.contains(&id) {
            SourceKind::Workspace
        } else {
            match &pkg.source {
                None => SourceKind::Path,
                Some(s) if s.repr.starts_with("git+") => SourceKind::Git,
                Some(_) => SourceKind::Registry,
            }
        };
        let lib = pkg.targets.iter().find(|t| {
            t.kind.iter().any(|k| {
                matches!(
                    k,
                    TargetKind::Lib | TargetKind::RLib | TargetKind::ProcMacro | TargetKind::DyLib
                )
            })
        });
        let deps = nodes
            .get(pkg.id.repr.as_str())
            .map(|node| {
                node.deps
                    .iter()
                    .map(|d| Dep {
                        extern_crate: d.name.clone(),
                        package_id: d.pkg.repr.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        packages.push(Package {
            id,
            name: pkg.name.to_string(),
            version: pkg.version.to_string(),
            source,
            manifest_path: pkg.manifest_path.clone().into_std_path_buf(),
            lib_path: lib.map(|t| t.src_path.clone().into_std_path_buf()),
            proc_macro: lib.is_some_and(|t| t.kind.contains(&TargetKind::ProcMacro)),
            target_roots: pkg
                .targets
                .iter()
                .filter(|t| !t.kind.contains(&TargetKind::CustomBuild))
                .map(|t| t.src_path.clone().into_std_path_buf())
                .collect(),
            deps,
        });
    }
    Graph {
        workspace_root: meta.workspace_root.into_std_path_buf(),
        target_dir: meta.target_directory.into_std_path_buf(),
        members,
        packages,
        unresolved,
        platform,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// The test seam: run on this thread right after each `cargo metadata` run, before
        /// the files it read are stamped (where an edit made while cargo runs lands last).
        static AFTER_METADATA: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
    }

    /// Runs `hook` after every `cargo metadata` run of this thread until reset with `None`.
    pub(crate) fn set_after_metadata(hook: Option<Box<dyn FnMut()>>) {
        AFTER_METADATA.with(|h| *h.borrow_mut() = hook);
    }

    pub(super) fn after_metadata() {
        AFTER_METADATA.with(|h| {
            if let Some(hook) = h.borrow_mut().as_mut() {
                hook();
            }
        });
    }

    const S: u128 = 1_000_000_000;

    #[test]
    fn a_write_after_the_start_counts_even_with_the_clock_lag() {
        let start = 1_700_000_000 * S + 500_000_000;
        assert!(written_since(Some((1, start)), start));
        assert!(written_since(Some((1, start + 1)), start));
        // The kernel's coarse clock may stamp a later write a tick before `start`.
        assert!(written_since(Some((1, start - 4_000_000)), start));
        assert!(!written_since(Some((1, start - CLOCK_LAG_NS - 1)), start));
        assert!(!written_since(Some((1, start - 60 * S)), start));
    }

    #[test]
    fn whole_second_mtimes_are_compared_at_two_second_granularity() {
        // A filesystem keeping seconds stamps a write at 10.7 s as 10 s; FAT at 11.7 s as 10 s.
        let start = 10 * S + 600_000_000;
        assert!(written_since(Some((1, 10 * S)), start));
        assert!(written_since(Some((1, 10 * S)), 11 * S + 600_000_000));
        assert!(!written_since(Some((1, 8 * S)), start));
        // A nanosecond mtime just below the start is older.
        assert!(!written_since(Some((1, 10 * S + 1)), start));
    }

    #[test]
    fn a_file_gone_after_the_run_counts_as_written() {
        assert!(written_since(None, 10 * S));
    }

    #[test]
    fn the_inputs_are_the_root_files_and_local_manifests() {
        let pkg = |name: &str, source| Package {
            id: name.to_owned(),
            name: name.to_owned(),
            version: "0.1.0".to_owned(),
            source,
            manifest_path: PathBuf::from(format!("/ws/{name}/Cargo.toml")),
            lib_path: None,
            proc_macro: false,
            target_roots: Vec::new(),
            deps: Vec::new(),
        };
        let inputs = metadata_inputs(
            Path::new("/ws/app/Cargo.toml"),
            Path::new("/ws"),
            &[
                pkg("app", SourceKind::Workspace),
                pkg("local", SourceKind::Path),
                pkg("serde", SourceKind::Registry),
                pkg("fork", SourceKind::Git),
            ],
        );
        let inputs: Vec<&str> = inputs.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            inputs,
            [
                "/ws/Cargo.lock",
                "/ws/Cargo.toml",
                "/ws/app/Cargo.toml",
                "/ws/local/Cargo.toml"
            ]
        );
    }
}
