//! `--check`'s findings cache: each consumer file's diagnostics, kept beside the index
//! snapshot so a warm check parses only the files that changed.
//!
//! A file's diagnostics are a function of its text, its path and the index (`--check`'s
//! analysis, `analysis::diagnostics_of_file`, reads nothing else: not even the file again), and
//! of the code computing them. So an entry is served only when all four
//! match: the file's xxh3 equals the stored one, under the same path, and the cache was written
//! by this very executable (its size and mtime, not only its version: a rebuilt cell-lsp may
//! judge differently) from an index with the same fingerprint
//! ([`cell_macro_index::snapshot::fingerprint`]: what the index says, without the stamps of
//! its inputs, which change with every edit while what the index says may not).
//!
//! What is never cached: a check that did not read everything (a degraded index, an unreadable
//! file) is not saved, so a later run cannot serve its results as fresh. A cache that is
//! missing, truncated, foreign or unreadable is treated as empty; failing to save it is a
//! warning, never a failed check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cell_macro_index::Index;
use serde::{Deserialize, Serialize};

use crate::analysis::Diag;

/// Bumped when the file's shape changes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    /// The executable and the index the entries were computed with ([`Key`]).
    key: Key,
    files: BTreeMap<PathBuf, Entry>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    /// `CARGO_PKG_VERSION`, and the running executable's (length, mtime in ns).
    tool: (String, (u64, u128)),
    /// The index's fingerprint (`snapshot::fingerprint`: its encoding without input stamps).
    index: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    text_hash: u64,
    diags: Vec<Diag>,
}

/// The cache of one workspace's check.
pub(super) struct FindingsCache {
    path: PathBuf,
    /// `None` when the index could not be fingerprinted or the executable stamped: nothing is
    /// served or saved.
    key: Option<Key>,
    /// Entries loaded from disk (only when their key matched).
    old: BTreeMap<PathBuf, Entry>,
    /// Entries of this run, saved at the end.
    new: BTreeMap<PathBuf, Entry>,
    /// Files served from `old`, and files computed: for the progress log.
    pub(super) hits: usize,
    pub(super) misses: usize,
}

impl FindingsCache {
    /// Opens the cache at `path` for checks against `index` (borrowed mutably only to set its
    /// input stamps aside while it is fingerprinted; it is returned unchanged).
    pub(super) fn open(path: PathBuf, index: &mut Index) -> Self {
        // Without the executable's stamp (a binary replaced while it runs) two builds could not
        // be told apart: no cache then.
        let key = executable_stamp()
            .zip(cell_macro_index::snapshot::fingerprint(index))
            .map(|(exe, index)| Key {
                tool: (env!("CARGO_PKG_VERSION").to_owned(), exe),
                index,
            });
        let old = key
            .as_ref()
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .filter(|stored| stored.format == FORMAT && Some(&stored.key) == key.as_ref())
            .map(|stored| stored.files)
            .unwrap_or_default();
        Self {
            path,
            key,
            old,
            new: BTreeMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// `file`'s diagnostics for `text`: the cached ones when they were computed for this text,
    /// else `compute()`'s (remembered for [`FindingsCache::save`]).
    pub(super) fn diagnostics(
        &mut self,
        file: &Path,
        text: &str,
        compute: impl FnOnce() -> Vec<Diag>,
    ) -> Vec<Diag> {
        let text_hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        let diags = match self.old.remove(file) {
            Some(entry) if entry.text_hash == text_hash => {
                self.hits += 1;
                entry.diags
            }
            _ => {
                self.misses += 1;
                compute()
            }
        };
        self.new.insert(
            file.to_path_buf(),
            Entry {
                text_hash,
                diags: diags.clone(),
            },
        );
        diags
    }

    /// Writes this run's entries (only the files checked now: deleted files drop out),
    /// atomically (a concurrent check reads the old cache or the new one).
    pub(super) fn save(self) -> std::io::Result<()> {
        let Some(key) = self.key else {
            return Ok(());
        };
        let stored = Stored {
            format: FORMAT,
            key,
            files: self.new,
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        cell_macro_index::snapshot::write_atomically(&self.path, &bytes)
    }
}

/// The running executable's (length, mtime in ns).
fn executable_stamp() -> Option<(u64, u128)> {
    let exe = std::env::current_exe().ok()?;
    cell_macro_index::snapshot::stamp_of(&exe)
}
