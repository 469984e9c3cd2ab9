//! The warm-start snapshot: the whole [`Index`], bincode-encoded, under
//! `<target-dir>/cell-macro-index/`, with the size and mtime of every input file
//! ([`Index::inputs`]). It is used only when every stamp still matches; otherwise the caller
//! re-indexes. Any unreadable, truncated or foreign snapshot is treated as absent.
//!
//! bincode, not JSON: every warm `cell-lsp --check` and editor start decodes it, and on this
//! repository (1.3 MB as JSON) decoding and encoding JSON were half of a check after an edit.
//! `cell-lsp index --json` prints the index for people.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::index::Index;

/// Bumped whenever the serialized shape changes, or what the index derives from unchanged
/// inputs does (a snapshot holds problems and scanned names, which a fresh stamp would keep
/// serving): 2 — names inside `cfg_attr` are scanned, and CELL0005 needs different items;
/// 3 — manifests are stamped as of cargo's read (a format-2 snapshot may hold a member's
/// manifest stamped after an edit its graph lacks); 4 — `Index::status` replaces
/// `unresolved`, and a degraded index is never saved (a format-3 snapshot may be one);
/// 5 — bincode instead of JSON (a new file name: a format-4 file is never read).
const SNAPSHOT_FORMAT: u32 = 5;

/// bincode with a bound: a length field in a damaged file cannot ask for more memory than the
/// file has bytes, and trailing bytes are an error.
fn codec(limit: u64) -> impl bincode::Options {
    use bincode::Options as _;
    bincode::DefaultOptions::new().with_limit(limit)
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    /// `None` when the file did not exist (its creation must invalidate too).
    len_mtime: Option<(u64, u128)>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    tool_version: String,
    stamps: Vec<Stamp>,
    index: Index,
}

/// What [`save`] writes: a [`Snapshot`] borrowing its index (the same encoding; cloning a
/// large index only to serialize it cost a `--check` after an edit a few milliseconds).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    tool_version: &'a str,
    stamps: Vec<Stamp>,
    index: &'a Index,
}

/// Where the snapshot for `manifest_path` lives under `target_dir`.
pub fn snapshot_path(target_dir: &Path, manifest_path: &Path) -> PathBuf {
    workspace_file(target_dir, manifest_path, "snapshot", "bin")
}

/// A file of the workspace at `manifest_path` under `target_dir`'s `cell-macro-index/`:
/// `<kind>-<hash of the manifest path>.<extension>`, one per indexed workspace sharing a target
/// dir (the snapshot; `cell-lsp --check`'s findings cache beside it).
pub fn workspace_file(
    target_dir: &Path,
    manifest_path: &Path,
    kind: &str,
    extension: &str,
) -> PathBuf {
    // FNV-1a of the manifest path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in manifest_path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    target_dir
        .join("cell-macro-index")
        .join(format!("{kind}-{h:016x}.{extension}"))
}

/// Writes `bytes` to `path` (creating its directory) through a temporary file renamed into
/// place: a concurrent reader sees the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A file's (length, mtime in ns) now; `None` when it does not exist or cannot be read.
pub fn stamp_of(path: &Path) -> Option<(u64, u128)> {
    std::fs::metadata(path).ok().map(|m| {
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        (m.len(), mtime)
    })
}

fn stamp(path: &Path) -> Stamp {
    Stamp {
        path: path.to_path_buf(),
        len_mtime: stamp_of(path),
    }
}

/// Writes `index`'s snapshot (atomically: a temp file renamed into place).
///
/// # Errors
///
/// An I/O error, or [`std::io::ErrorKind::InvalidInput`] for a degraded index (see
/// [`crate::IndexStatus`]): it must never be served as fresh later.
pub fn save(index: &Index) -> std::io::Result<PathBuf> {
    if let Some(reason) = index.status.reason() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a degraded index is never saved as a snapshot ({reason})"),
        ));
    }
    let path = snapshot_path(&index.target_dir, &index.manifest_path);
    let snapshot = SnapshotRef {
        format: SNAPSHOT_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION"),
        // The stamps taken before each input was read (an edit made while indexing then makes
        // the snapshot stale); a fresh one only for an input the build did not stamp.
        stamps: index
            .inputs()
            .iter()
            .map(|p| match index.input_stamps.get(p) {
                Some(len_mtime) => Stamp {
                    path: p.clone(),
                    len_mtime: *len_mtime,
                },
                None => stamp(p),
            })
            .collect(),
        index,
    };
    let bytes = bincode::Options::serialize(bincode::DefaultOptions::new(), &snapshot)
        .map_err(std::io::Error::other)?;
    write_atomically(&path, &bytes)?;
    Ok(path)
}

/// A fingerprint of what `index` says: xxh3 of its encoding without the stamps of its inputs
/// (which change with every edit while what the index says may not). Two indexes with the same
/// fingerprint give the same answers; `cell-lsp --check` keys its findings cache on it. The
/// index is borrowed mutably only to set the stamps aside; it is returned unchanged.
pub fn fingerprint(index: &mut Index) -> Option<u64> {
    let stamps = std::mem::take(&mut index.input_stamps);
    let mut hasher = HashWriter(xxhash_rust::xxh3::Xxh3::new());
    // No limit: a bincode limit makes it size the whole index in a first pass.
    let encoded =
        bincode::Options::serialize_into(bincode::DefaultOptions::new(), &mut hasher, &*index);
    index.input_stamps = stamps;
    encoded.ok()?;
    Some(hasher.0.digest())
}

/// Streams encoded bytes into the hasher (no intermediate buffer).
struct HashWriter(xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Loads the snapshot for `manifest_path` if it exists and every input is unchanged.
pub fn load_fresh(target_dir: &Path, manifest_path: &Path) -> Option<Index> {
    load(target_dir, manifest_path).and_then(|(index, changed)| changed.is_empty().then_some(index))
}

/// Loads the snapshot for `manifest_path` if it exists and is of this version, with the inputs
/// whose stamps no longer match (empty: fresh). The caller decides what a change costs: a
/// source file is re-read alone, a manifest or lockfile means `cargo metadata` again.
pub fn load(target_dir: &Path, manifest_path: &Path) -> Option<(Index, Vec<PathBuf>)> {
    let manifest_path =
        std::fs::canonicalize(manifest_path).unwrap_or_else(|_| manifest_path.to_path_buf());
    let bytes = std::fs::read(snapshot_path(target_dir, &manifest_path)).ok()?;
    let snapshot: Snapshot =
        bincode::Options::deserialize(codec(bytes.len() as u64), &bytes).ok()?;
    if snapshot.format != SNAPSHOT_FORMAT
        || snapshot.tool_version != env!("CARGO_PKG_VERSION")
        || snapshot.index.manifest_path != manifest_path
        || snapshot.index.status.is_degraded()
    {
        return None;
    }
    let changed = snapshot
        .stamps
        .iter()
        .filter(|s| stamp(&s.path) != **s)
        .map(|s| s.path.clone())
        .collect();
    Some((snapshot.index, changed))
}
