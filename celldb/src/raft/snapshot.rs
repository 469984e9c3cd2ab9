//! Snapshots of the replicated state: built in O(1) as a fjall view, streamed in chunks under
//! the runtime's frame limit, staged to a file on the receiver, and installed so that a crash
//! in the middle leaves a node that finishes the install when it reopens.
//!
//! The stream (and the staged file, byte for byte):
//! - `CELLSNAP` and a version byte;
//! - a header: its length (u32 LE) and JSON `{meta, keyspaces}` (the snapshot's raft meta and
//!   the names of the replicated keyspaces, without the `r.` prefix);
//! - records: keyspace index (u32 LE), key length (u32 LE), key, value length (u32 LE), value;
//! - the end mark `u32::MAX`, then the xxh3 of every byte before it (u64 LE).
//!
//! A receiver verifies the hash before it installs anything, so a truncated or damaged
//! transfer is refused, never half-applied.

use crate::raft::{CellRaft, io_error};
use fjall::{Keyspace, Readable};
use openraft::type_config::alias::SnapshotMetaOf;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

type C = CellRaft;

const MAGIC: &[u8; 8] = b"CELLSNAP";
const VERSION: u8 = 1;
const END: u32 = u32::MAX;

/// The largest chunk a snapshot is sent in: well under the runtime's 16 MiB frame limit.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

/// The data of a snapshot: what openraft hands between the state machine and the network.
pub enum SnapshotData {
    /// A consistent read view of the replicated keyspaces (the sender's side; O(1) to take).
    View(View),
    /// A complete, verified snapshot file (the receiver's side).
    Staged(PathBuf),
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotData::View(view) => f
                .debug_struct("View")
                .field("keyspaces", &view.keyspaces.len())
                .finish_non_exhaustive(),
            SnapshotData::Staged(path) => f.debug_tuple("Staged").field(path).finish(),
        }
    }
}

/// A fjall snapshot and the replicated keyspaces to read through it.
pub struct View {
    pub(crate) snapshot: fjall::Snapshot,
    /// `(name without prefix, keyspace)`, sorted by name.
    pub(crate) keyspaces: Vec<(String, Keyspace)>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keyspaces.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("View")
            .field("seqno", &self.snapshot.seqno())
            .field("keyspaces", &names)
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    meta: SnapshotMetaOf<C>,
    keyspaces: Vec<String>,
}

/// The xxh3 digest of `(key, value)` entries as a range check computes it.
pub fn range_digest<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    let mut digest = crate::log::RangeDigest::default();
    for (k, v) in entries {
        digest.add(k, v);
    }
    digest.finish()
}

/// Encodes a view as a stream of chunks, each at most `chunk_bytes` long (at least one
/// record per chunk, so a single record larger than the limit still goes, alone).
pub struct ChunkEncoder {
    view: View,
    hasher: xxhash_rust::xxh3::Xxh3,
    pending: Vec<u8>,
    /// Next keyspace to read, and the key to resume after within it.
    position: (usize, Option<Vec<u8>>),
    chunk_bytes: usize,
    finished: bool,
}

impl std::fmt::Debug for ChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEncoder")
            .field("keyspace", &self.position.0)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChunkEncoder {
    /// Starts the stream of `view` for a snapshot described by `meta`.
    ///
    /// # Errors
    /// When the header cannot be encoded.
    pub fn new(meta: &SnapshotMetaOf<C>, view: View, chunk_bytes: usize) -> io::Result<Self> {
        let header = Header {
            meta: meta.clone(),
            keyspaces: view.keyspaces.iter().map(|(n, _)| n.clone()).collect(),
        };
        let json =
            serde_json::to_vec(&header).map_err(|e| io_error("encoding a snapshot header", e))?;
        let mut pending = Vec::with_capacity(json.len() + 16);
        pending.extend_from_slice(MAGIC);
        pending.push(VERSION);
        pending.extend_from_slice(&(json.len() as u32).to_le_bytes());
        pending.extend_from_slice(&json);
        Ok(Self {
            view,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            pending,
            position: (0, None),
            chunk_bytes: chunk_bytes.clamp(64, MAX_CHUNK_BYTES),
            finished: false,
        })
    }

    /// The next chunk, or `None` after the last one.
    ///
    /// # Errors
    /// Storage errors while reading the view.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.finished {
            return Ok(None);
        }
        while self.pending.len() < self.chunk_bytes {
            let (index, after) = self.position.clone();
            let Some((_, keyspace)) = self.view.keyspaces.get(index) else {
                self.pending.extend_from_slice(&END.to_le_bytes());
                self.hasher.update(&self.pending);
                let digest = self.hasher.digest();
                self.pending.extend_from_slice(&digest.to_le_bytes());
                self.finished = true;
                return Ok(Some(std::mem::take(&mut self.pending)));
            };
            let range = match &after {
                Some(key) => self.view.snapshot.range(
                    keyspace,
                    (
                        std::ops::Bound::Excluded(key.clone()),
                        std::ops::Bound::Unbounded,
                    ),
                ),
                None => self.view.snapshot.iter(keyspace),
            };
            let mut last = None;
            let mut full = false;
            for guard in range {
                let (k, v) = guard
                    .into_inner()
                    .map_err(|e| io_error("reading a snapshot view", e))?;
                // A record that would take the chunk past its size starts the next chunk
                // (unless the chunk is empty: a record larger than a chunk goes alone), so a
                // chunk is never larger than the larger of its size and one record.
                let record = 12 + k.len() + v.len();
                if !self.pending.is_empty() && self.pending.len() + record > self.chunk_bytes {
                    full = true;
                    break;
                }
                self.pending
                    .extend_from_slice(&(index as u32).to_le_bytes());
                self.pending
                    .extend_from_slice(&(k.len() as u32).to_le_bytes());
                self.pending.extend_from_slice(&k);
                self.pending
                    .extend_from_slice(&(v.len() as u32).to_le_bytes());
                self.pending.extend_from_slice(&v);
                last = Some(k.to_vec());
            }
            if full {
                self.position = (index, last.or(after));
                break;
            }
            self.position = (index + 1, None);
        }
        self.hasher.update(&self.pending);
        Ok(Some(std::mem::take(&mut self.pending)))
    }
}

/// Receives a snapshot's chunks into `<dir>/incoming.<id>`; [`Staging::finish`] verifies it
/// and moves it to `staged.<id>`. An unfinished file is deleted when the node reopens.
#[derive(Debug)]
pub struct Staging {
    file: std::fs::File,
    incoming: PathBuf,
    staged: PathBuf,
}

impl Staging {
    /// Starts receiving a snapshot named `id` (unique per transfer) in `dir`.
    ///
    /// # Errors
    /// I/O errors creating the file.
    pub fn begin(dir: &Path, id: &str) -> io::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
        let incoming = dir.join(format!("incoming.{id}"));
        let staged = dir.join(format!("staged.{id}"));
        let file = std::fs::File::create(&incoming)
            .map_err(|e| io_error(format!("creating {}", incoming.display()), e))?;
        Ok(Self {
            file,
            incoming,
            staged,
        })
    }

    /// Appends one chunk.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file
            .write_all(chunk)
            .map_err(|e| io_error(format!("writing {}", self.incoming.display()), e))
    }

    /// Verifies the whole stream (magic, structure, hash), makes it durable and names it
    /// staged; returns its path.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] for a damaged or incomplete stream (the file is
    /// deleted); I/O errors.
    pub fn finish(self) -> io::Result<PathBuf> {
        self.file
            .sync_all()
            .map_err(|e| io_error(format!("fsyncing {}", self.incoming.display()), e))?;
        drop(self.file);
        if let Err(e) = verify(&self.incoming) {
            let _ = std::fs::remove_file(&self.incoming);
            return Err(e);
        }
        std::fs::rename(&self.incoming, &self.staged)
            .map_err(|e| io_error(format!("renaming {}", self.incoming.display()), e))?;
        if let Some(dir) = self.staged.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(format!("fsyncing {}", dir.display()), e))?;
        }
        Ok(self.staged)
    }
}

fn invalid(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot stream: {why}"),
    )
}

/// Checks a staged stream's hash and structure without applying it.
fn verify(path: &Path) -> io::Result<()> {
    let bytes =
        std::fs::read(path).map_err(|e| io_error(format!("reading {}", path.display()), e))?;
    if bytes.len() < 8 {
        return Err(invalid("shorter than its hash"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let expected = u64::from_le_bytes(tail.try_into().map_err(|_| invalid("no hash"))?);
    if xxhash_rust::xxh3::xxh3_64(body) != expected {
        return Err(invalid("its hash does not match (damaged or incomplete)"));
    }
    let mut reader = Reader::open_bytes(bytes)?;
    while reader.next_record()?.is_some() {}
    Ok(())
}

/// One record of a stream: `(keyspace index, key, value)`.
pub(crate) type Record = (usize, Vec<u8>, Vec<u8>);

/// Reads a staged stream: the header, then the records.
pub(crate) struct Reader {
    bytes: std::io::Cursor<Vec<u8>>,
    pub(crate) meta: SnapshotMetaOf<C>,
    pub(crate) keyspaces: Vec<String>,
    /// The end mark was read: later calls return `None` (the hash follows the mark).
    ended: bool,
}

impl Reader {
    /// Opens a staged file. The caller has verified it ([`Staging::finish`]).
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| io_error(format!("reading {}", path.display()), e))?;
        Self::open_bytes(bytes)
    }

    fn open_bytes(bytes: Vec<u8>) -> io::Result<Self> {
        let mut cursor = std::io::Cursor::new(bytes);
        let mut magic = [0u8; 9];
        cursor
            .read_exact(&mut magic)
            .map_err(|_| invalid("too short"))?;
        if &magic[..8] != MAGIC || magic[8] != VERSION {
            return Err(invalid("not a celldb snapshot of this version"));
        }
        let len = read_u32(&mut cursor)? as usize;
        let mut json = vec![0u8; len.min(1 << 24)];
        if len > json.len() {
            return Err(invalid("header too long"));
        }
        cursor
            .read_exact(&mut json)
            .map_err(|_| invalid("truncated header"))?;
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| invalid(format!("header: {e}")))?;
        for name in &header.keyspaces {
            if !crate::raft::valid_keyspace_name(name) {
                return Err(invalid(format!("invalid keyspace name {name:?}")));
            }
        }
        Ok(Self {
            bytes: cursor,
            meta: header.meta,
            keyspaces: header.keyspaces,
            ended: false,
        })
    }

    /// The next record `(keyspace index, key, value)`, or `None` at the end mark.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        let index = read_u32(&mut self.bytes)?;
        if index == END {
            self.ended = true;
            return Ok(None);
        }
        let index = index as usize;
        if index >= self.keyspaces.len() {
            return Err(invalid(format!(
                "record names keyspace {index} of {}",
                self.keyspaces.len()
            )));
        }
        let key = read_bytes(&mut self.bytes)?;
        let value = read_bytes(&mut self.bytes)?;
        Ok(Some((index, key, value)))
    }
}

fn read_u32(cursor: &mut std::io::Cursor<Vec<u8>>) -> io::Result<u32> {
    let mut word = [0u8; 4];
    cursor
        .read_exact(&mut word)
        .map_err(|_| invalid("truncated record"))?;
    Ok(u32::from_le_bytes(word))
}

fn read_bytes(cursor: &mut std::io::Cursor<Vec<u8>>) -> io::Result<Vec<u8>> {
    let len = read_u32(cursor)? as usize;
    let remaining = cursor
        .get_ref()
        .len()
        .saturating_sub(cursor.position() as usize);
    if len > remaining {
        return Err(invalid("a record runs past the end"));
    }
    let mut out = vec![0u8; len];
    cursor
        .read_exact(&mut out)
        .map_err(|_| invalid("truncated record"))?;
    Ok(out)
}

/// Writes a whole view to a verified staged file in `dir` (a snapshot handed over in-process,
/// e.g. by openraft's storage suite, is installed from a file like a received one).
pub(crate) fn stage_view(
    dir: &Path,
    id: &str,
    meta: &SnapshotMetaOf<C>,
    view: View,
) -> io::Result<PathBuf> {
    let mut encoder = ChunkEncoder::new(meta, view, MAX_CHUNK_BYTES)?;
    let mut staging = Staging::begin(dir, id)?;
    while let Some(chunk) = encoder.next_chunk()? {
        staging.write_chunk(&chunk)?;
    }
    staging.finish()
}
