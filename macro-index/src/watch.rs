//! Watch mode: notify 8 + notify-debouncer-full 0.7 on the directories that matter (the
//! workspace root for manifests and `Cargo.lock`, each non-registry package's directory and
//! sources), never on single files (editors save by renaming a temp file over the original) and
//! never on the registry (extracted sources never change; `Cargo.lock` says when the graph did).
//! When inotify runs out of watches (`MaxFilesWatch`) or cannot start, it falls back to a
//! `PollWatcher`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, FileIdMap, RecommendedCache, new_debouncer, new_debouncer_opt,
};

use crate::index::{Index, source_dirs};
use crate::model::SourceKind;

/// A running watcher; dropping it stops watching.
pub struct IndexWatcher {
    _inner: WatcherKind,
    /// `true` when the polling fallback is in use.
    pub polling: bool,
    /// The directories watched (recursive ones first).
    pub watched: Vec<PathBuf>,
}

impl std::fmt::Debug for IndexWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The debouncer itself has nothing worth printing (and no `Debug`).
        f.debug_struct("IndexWatcher")
            .field("polling", &self.polling)
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

#[expect(
    dead_code,
    reason = "the debouncers are held only so that dropping the watcher stops them"
)]
enum WatcherKind {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, FileIdMap>),
}

/// The directories to watch for `index`: (directory, recursive).
pub fn watch_roots(index: &Index) -> Vec<(PathBuf, bool)> {
    let mut recursive = BTreeSet::new();
    let mut flat = BTreeSet::new();
    flat.insert(index.workspace_root.clone());
    for pkg in &index.packages {
        if matches!(pkg.source, SourceKind::Registry | SourceKind::Git) {
            continue;
        }
        if let Some(dir) = pkg.manifest_path.parent() {
            flat.insert(dir.to_path_buf());
        }
        for dir in source_dirs(pkg) {
            recursive.insert(dir);
        }
    }
    // Drop recursive roots inside other recursive roots.
    let rec: Vec<PathBuf> = recursive.iter().cloned().collect();
    let rec: Vec<PathBuf> = rec
        .iter()
        .filter(|d| !rec.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect();
    let mut out: Vec<(PathBuf, bool)> = rec.iter().map(|d| (d.clone(), true)).collect();
    out.extend(
        flat.into_iter()
            .filter(|d| !rec.iter().any(|r| d.starts_with(r)))
            .map(|d| (d, false)),
    );
    out
}

/// Starts watching `index`'s inputs. `on_change` receives the changed paths of each debounced
/// batch (outside the target directory); the caller typically runs
/// [`Index::apply_changes`] with them.
pub fn watch(
    index: &Index,
    debounce: Duration,
    on_change: impl Fn(Vec<PathBuf>) + Send + Sync + 'static,
) -> notify::Result<IndexWatcher> {
    let roots = watch_roots(index);
    let target = index.target_dir.clone();
    let on_change: OnChange = std::sync::Arc::new(on_change);
    let handler = {
        let on_change = on_change.clone();
        let target = target.clone();
        move |res: DebounceEventResult| deliver(res, &target, &*on_change)
    };
    let native = new_debouncer(debounce, None, handler).and_then(|mut d| {
        for (dir, rec) in &roots {
            d.watch(dir, mode(*rec))?;
        }
        Ok(d)
    });
    match native {
        Ok(d) => Ok(IndexWatcher {
            _inner: WatcherKind::Native(d),
            polling: false,
            watched: roots.iter().map(|r| r.0.clone()).collect(),
        }),
        Err(e) => {
            // Typically `MaxFilesWatch` (the inotify watch limit) or no inotify at all.
            tracing::warn!("native file watching failed ({e}); falling back to polling");
            start_polling(roots, target, debounce, on_change)
        }
    }
}

/// Like [`watch`], but always with notify's `PollWatcher` (what [`watch`] falls back to when
/// inotify fails). Polls every 500 ms.
pub fn watch_polling(
    index: &Index,
    debounce: Duration,
    on_change: impl Fn(Vec<PathBuf>) + Send + Sync + 'static,
) -> notify::Result<IndexWatcher> {
    start_polling(
        watch_roots(index),
        index.target_dir.clone(),
        debounce,
        std::sync::Arc::new(on_change),
    )
}

type OnChange = std::sync::Arc<dyn Fn(Vec<PathBuf>) + Send + Sync>;

fn start_polling(
    roots: Vec<(PathBuf, bool)>,
    target: PathBuf,
    debounce: Duration,
    on_change: OnChange,
) -> notify::Result<IndexWatcher> {
    let handler = move |res: DebounceEventResult| deliver(res, &target, &*on_change);
    let config = notify::Config::default().with_poll_interval(Duration::from_millis(500));
    let mut d = new_debouncer_opt::<_, PollWatcher, FileIdMap>(
        debounce,
        None,
        handler,
        FileIdMap::new(),
        config,
    )?;
    for (dir, rec) in &roots {
        d.watch(dir, mode(*rec))?;
    }
    Ok(IndexWatcher {
        _inner: WatcherKind::Poll(d),
        polling: true,
        watched: roots.into_iter().map(|r| r.0).collect(),
    })
}

fn mode(recursive: bool) -> RecursiveMode {
    if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    }
}

fn deliver(
    res: DebounceEventResult,
    target: &std::path::Path,
    on_change: &(dyn Fn(Vec<PathBuf>) + Send + Sync),
) {
    let Ok(events) = res else { return };
    let mut paths = BTreeSet::new();
    for ev in events {
        if ev.kind.is_access() {
            continue;
        }
        for p in &ev.paths {
            if !p.starts_with(target) {
                paths.insert(p.clone());
            }
        }
    }
    if !paths.is_empty() {
        on_change(paths.into_iter().collect());
    }
}
