//! The commit log: the one path every write takes to storage.
//!
//! A transaction (or a single `insert`) becomes a [`WriteSet`]: the keys it read with the values
//! it saw (its *read checks*), the keys it writes, and its durability. A [`CommitLog`] decides
//! the order of write-sets, validates their reads (optimistic concurrency), applies them and
//! acknowledges each one. [`LocalLog`] does it on one fjall database with **group commit**: one
//! committer thread takes every write-set waiting, validates them in arrival order, writes all
//! accepted ones in *one* fjall batch with *one* `persist(SyncAll)`, then acknowledges them. A
//! replicated log (Raft) can later implement [`CommitLog`] and nothing above it changes.
//!
//! Where the commit runs: `submit` is called from async code (`Db::insert`, transactions, the
//! server's commit handler), so it never does the commit — a blocking fsync — on a tokio
//! runtime's thread: there it only hands the write-set to the committer thread, and the caller
//! awaits the ack. Only a caller outside any runtime commits inline when the log is idle (see
//! [`LocalLog`]'s `submit` for the measurements behind this).
//!
//! Validation: a write-set records the commit version its snapshot was taken at. If no group
//! committed since, its reads are trivially current. Otherwise each point read is looked up in
//! the keys written by the groups committed since (a key written after the snapshot is a
//! conflict) when the committer still remembers them all and they are few; else, and for range
//! reads, it is re-read from storage and compared with what the transaction saw. Within one
//! group, a write-set that read a key an earlier write-set of the same group writes is
//! *deferred* to the next group (where it is validated against the committed result), so groups
//! never need an overlay of pending writes.

use crate::error::{Error, Result};
use fjall::{Keyspace, PersistMode, Slice};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::table::Durability;

/// Upper bound of write-sets in one group (bounds the batch size and the ack latency).
const MAX_GROUP: usize = 1024;

/// What a transaction saw when it read, to be re-checked at commit.
#[derive(Clone)]
pub(crate) enum ReadCheck {
    /// A point read of `key`, which held `seen`.
    Point {
        keyspace: Keyspace,
        key: Slice,
        seen: Option<Slice>,
    },
    /// A range read (scan, index lookup); `digest` hashes every key and value seen.
    Range {
        keyspace: Keyspace,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        digest: u64,
    },
}

/// One write of a write-set: `value: None` deletes the key.
#[derive(Clone)]
pub(crate) struct Write {
    pub(crate) keyspace: Keyspace,
    pub(crate) key: Slice,
    pub(crate) value: Option<Slice>,
}

/// The unit of commit: reads to validate, writes to apply atomically, and a durability.
pub struct WriteSet {
    /// True when no key appears twice in `writes` (transactions guarantee it): a group of one
    /// such write-set skips the merge step.
    pub(crate) distinct_keys: bool,
    pub(crate) version: u64,
    pub(crate) reads: Vec<ReadCheck>,
    pub(crate) writes: Vec<Write>,
    pub(crate) durability: Durability,
}

impl std::fmt::Debug for WriteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSet").finish_non_exhaustive()
    }
}

impl WriteSet {
    /// Number of keys written.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The durability the writer asked for.
    pub fn durability(&self) -> Durability {
        self.durability
    }
}

/// Called exactly once with the outcome of a submitted write-set: the commit version, or an
/// error ([`Error::Conflict`] when validation failed: re-run the transaction).
pub type Ack = Box<dyn FnOnce(Result<u64>) + Send>;

/// The interface every write goes through, so a replicated log can replace the local one.
pub trait CommitLog: Send + Sync {
    /// Queues a write-set; `ack` runs once it is applied (and durable, for
    /// [`Durability::Sync`]) or rejected. Called from async code: an implementation must not
    /// wait for the commit (let alone an fsync) on a tokio runtime's thread.
    fn submit(&self, writes: WriteSet, ack: Ack);

    /// The version of the last applied group; write-sets remember it for validation.
    fn version(&self) -> u64;
}

/// Group-commit log on one local fjall database.
pub struct LocalLog {
    /// `None` only while dropping (closing the channel stops the thread).
    sender: Option<mpsc::Sender<(WriteSet, Ack)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    version: Arc<AtomicU64>,
    stats: Arc<LogStats>,
    /// Held while a group commits; the committer thread and inline commits (callers outside a
    /// runtime) take turns.
    committer: Arc<Mutex<Committer>>,
    /// Write-sets sent to the thread and not yet taken by it.
    queued: Arc<AtomicUsize>,
    /// How many writers are active, for the committer's pacing.
    writers: Arc<Writers>,
}

impl std::fmt::Debug for LocalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLog").finish_non_exhaustive()
    }
}

/// The committer's estimate of how many writers are active: write-sets submitted and not yet
/// settled, and the most seen at once since the committer last took a group.
#[derive(Default)]
struct Writers {
    outstanding: AtomicUsize,
    peak: AtomicUsize,
}

/// Counters of a [`LocalLog`] (benchmarks report fsyncs per acknowledged write from them).
#[derive(Debug, Default)]
pub struct LogStats {
    /// Batches written with `persist(SyncAll)`.
    pub syncs: AtomicU64,
    /// Write-sets acknowledged as committed.
    pub committed: AtomicU64,
    /// Write-sets rejected by validation.
    pub conflicts: AtomicU64,
}

impl LocalLog {
    /// Starts the committer thread for `db`. It stops when the log is dropped.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(db: fjall::Database) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<(WriteSet, Ack)>();
        let version = Arc::new(AtomicU64::new(1));
        let stats = Arc::new(LogStats::default());
        let writers = Arc::new(Writers::default());
        let committer = Arc::new(Mutex::new(Committer {
            db,
            version: version.clone(),
            stats: stats.clone(),
            writers: writers.clone(),
            recent: VecDeque::new(),
            recent_keys: 0,
            horizon: 1,
            #[cfg(test)]
            gate: None,
        }));
        let queued = Arc::new(AtomicUsize::new(0));
        let (thread_committer, thread_queued, thread_writers) =
            (committer.clone(), queued.clone(), writers.clone());
        let thread = std::thread::Builder::new()
            .name("celldb-commit".into())
            .spawn(move || {
                run(
                    &thread_committer,
                    &receiver,
                    &thread_queued,
                    &thread_writers,
                )
            })
            .map_err(|source| Error::Io {
                path: "celldb-commit thread".into(),
                source,
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            version,
            stats,
            committer,
            queued,
            writers,
        })
    }

    /// The log's counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Holds every commit before its batch is written until the returned sender is dropped.
    #[cfg(test)]
    fn hold_commits(&self) -> mpsc::Sender<()> {
        let (open, gate) = mpsc::channel();
        self.committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gate = Some(gate);
        open
    }
}

impl CommitLog for LocalLog {
    /// Never blocks a tokio runtime: from inside one (any flavor) the write-set goes to the
    /// committer thread and only the `ack` runs later. Outside a runtime (a plain thread, such
    /// as a table registering its metadata) a write-set reaching an idle log commits on the
    /// caller's thread, fsync included, saving the two thread wake-ups of a hand-off.
    ///
    /// Why not commit inline from async code when the log is idle (as this log once did): the
    /// fsync (0.1–4 ms here) then blocks the caller's worker thread and, with it, every future
    /// of the caller's task. On a `current_thread` runtime no other writer could even submit
    /// meanwhile, so 32 concurrent writers got one fsync each (~7k writes/s at fast fsync, 500/s
    /// at slow; 0.03 fsyncs per write after the change). `block_in_place` on a multi-thread
    /// runtime frees the other tasks but still stalls the caller's own task — the futures it
    /// joins, and the calls of a server connection driven by one task — and each of those
    /// would get its own fsync. Measured cost of the hand-off: a lone writer at fast fsync
    /// (0.08 ms) p50 80 → 115 µs (−25–30% of its throughput); nothing measurable when the
    /// fsync is slow or writers are concurrent (docs/celldb.md, Durability).
    fn submit(&self, writes: WriteSet, ack: Ack) {
        let now = self.writers.outstanding.fetch_add(1, Ordering::AcqRel) + 1;
        self.writers.peak.fetch_max(now, Ordering::AcqRel);
        if tokio::runtime::Handle::try_current().is_err()
            && self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut committer) = self.committer.try_lock()
        {
            // A group of one never defers (deferral needs an earlier write-set in the group).
            for (writes, ack) in committer.commit_group(vec![(writes, ack)]) {
                ack(Err(Error::Conflict { attempts: 1 }));
                drop(writes);
            }
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let Some(sender) = &self.sender else {
            self.writers.outstanding.fetch_sub(1, Ordering::AcqRel);
            ack(Err(Error::Commit("the commit log is closing".into())));
            return;
        };
        if let Err(mpsc::SendError((_, ack))) = sender.send((writes, ack)) {
            self.writers.outstanding.fetch_sub(1, Ordering::AcqRel);
            ack(Err(Error::Commit("the commit thread has stopped".into())));
        }
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl Drop for LocalLog {
    /// Stops the committer thread and waits for it, so its handle on the fjall database is
    /// gone before the directory lock is released (a reopen right after a drop never races
    /// with a still-running committer).
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Longest a durable group waits for writers expected back (see [`run`]).
const MAX_GROUP_WAIT: Duration = Duration::from_millis(2);

/// The committer thread: takes every waiting write-set and commits them as one group.
///
/// **Pacing.** Left alone, concurrent writers settle into two half-size groups that alternate:
/// while one group fsyncs, the writers of the other (just acknowledged) prepare their next
/// write-set, and the committer takes whatever has arrived as soon as the fsync returns — at 64
/// writers about 32 per fsync. So before a durable group commits, the committer waits for the
/// writers it expects (the most write-sets outstanding at once since the last group: the ones
/// it just acknowledged are on their way back) — at most half as long as a durable commit has
/// been taking (moving average), never more than [`MAX_GROUP_WAIT`]. Waiting only pays when
/// the fsync is slower than the writers' way back (while everyone waits for one group, nobody
/// prepares the next); half a commit time bounds what it costs when the fsync is fast, and
/// when it is slow the writers are back well within it. It roughly halves the fsyncs (and
/// their CPU, ~100 µs of kernel time each on a VM) per write at 16 and 64 writers. A lone
/// writer never waits (it is the only write-set expected); a writer that stops is forgotten at
/// the next group (the estimate restarts from the write-sets outstanding then).
fn run(
    committer: &Mutex<Committer>,
    receiver: &mpsc::Receiver<(WriteSet, Ack)>,
    queued: &AtomicUsize,
    writers: &Writers,
) {
    let mut pending: Vec<(WriteSet, Ack)> = Vec::new();
    // Moving average of durable group commits (fsync included).
    let mut sync_commit = Duration::ZERO;
    loop {
        if pending.is_empty() {
            match receiver.recv() {
                Ok(first) => pending.push(first),
                Err(_) => return,
            }
            queued.fetch_sub(1, Ordering::AcqRel);
        }
        let mut guard = committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while pending.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    pending.push(next);
                }
                Err(_) => break,
            }
        }
        let expected = writers
            .peak
            .swap(
                writers.outstanding.load(Ordering::Acquire),
                Ordering::AcqRel,
            )
            .min(MAX_GROUP);
        let durable = pending
            .iter()
            .any(|(ws, _)| ws.durability == Durability::Sync && !ws.writes.is_empty());
        if durable && pending.len() < expected && !sync_commit.is_zero() {
            let deadline = Instant::now() + (sync_commit / 2).min(MAX_GROUP_WAIT);
            while pending.len() < expected {
                let left = deadline.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(left) {
                    Ok(next) => {
                        queued.fetch_sub(1, Ordering::AcqRel);
                        pending.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        pending = guard.commit_group(std::mem::take(&mut pending));
        if durable {
            sync_commit = (sync_commit * 3 + started.elapsed()) / 4;
        }
    }
}

struct Committer {
    db: fjall::Database,
    version: Arc<AtomicU64>,
    stats: Arc<LogStats>,
    writers: Arc<Writers>,
    /// The keys each recent group wrote, oldest first, for every group after `horizon`:
    /// validating a point read is then a scan of the few groups committed since the
    /// transaction's snapshot instead of a storage read. A plain list, not a map: recording
    /// must cost next to nothing, because a lone writer never needs it.
    recent: VecDeque<(u64, Vec<(u64, Slice)>)>,
    recent_keys: usize,
    horizon: u64,
    /// Unit tests only: when set, every group waits here before its batch is written (and
    /// fsynced) until the sender is dropped — a commit held "in flight" for as long as a test
    /// needs, without timing.
    #[cfg(test)]
    gate: Option<mpsc::Receiver<()>>,
}

/// Keys kept in [`Committer::recent`]; older groups are dropped (and the horizon moves up).
/// Tiny in unit tests, so the fallback path (re-reading from storage) runs constantly there.
const RECENT_LIMIT: usize = if cfg!(test) { 4 } else { 8192 };

/// A validation scans at most this many recent keys per point read before it re-reads the
/// key from storage instead.
const SCAN_LIMIT: usize = 256;

/// `BuildHasher` for [`KeyHasher`].
pub(crate) type KeyHashBuild = std::hash::BuildHasherDefault<KeyHasher>;

/// Hasher for the short keys of a transaction's (or a group's) write map: eight bytes per
/// multiply-rotate step, then a final mix. It replaced a byte-at-a-time FNV-1a, which took a
/// twentieth of a batched insert's time (five hashes per record: three writes, two lookups).
/// The final mix matters: hashbrown takes the bucket from the low bits and the tag from the top
/// seven, and big-endian integer keys differ only in their last byte, which a plain
/// multiply-rotate leaves in the high bits. Not DoS-resistant: the maps hashed with it only hold
/// keys the application itself wrote in one transaction or recent group, so collisions cost
/// only that application time.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

/// The multiplier of rustc's FxHasher (an odd constant with well-spread bits).
const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit reaches every output bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length tags the padding, so "a" and "a\0" differ.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

impl Committer {
    /// Commits one group; returns the deferred write-sets.
    fn commit_group(&mut self, group: Vec<(WriteSet, Ack)>) -> Vec<(WriteSet, Ack)> {
        let version = self.version.load(Ordering::Acquire);
        // Last write wins per key: a fjall batch gives all its items one sequence number, so
        // two writes of one key in a batch must be merged here, not left to the engine.
        let mut written: HashMap<(u64, Slice), usize, KeyHashBuild> = HashMap::default();
        let mut writes: Vec<Write> = Vec::new();
        let mut accepted: Vec<Ack> = Vec::new();
        let mut deferred = Vec::new();
        let mut sync = false;
        let single = group.len() == 1;
        let settled = group.len();
        for (ws, ack) in group {
            if !written.is_empty() && reads_overlap(&ws, &written) {
                deferred.push((ws, ack));
                continue;
            }
            if ws.version != version {
                match self.validate(&ws) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                        ack(Err(Error::Conflict { attempts: 1 }));
                        continue;
                    }
                    Err(e) => {
                        ack(Err(e));
                        continue;
                    }
                }
            }
            sync |= ws.durability == Durability::Sync && !ws.writes.is_empty();
            if single && ws.distinct_keys {
                writes = ws.writes;
                accepted.push(ack);
                continue;
            }
            for w in ws.writes {
                match written.entry((w.keyspace.id(), w.key.clone())) {
                    Entry::Occupied(slot) => writes[*slot.get()] = w,
                    Entry::Vacant(slot) => {
                        slot.insert(writes.len());
                        writes.push(w);
                    }
                }
            }
            accepted.push(ack);
        }
        // One batch, one fsync for the whole group. `Buffer` still hands the journal to the OS,
        // so buffered writes survive a process crash.
        let mode = if sync {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        // Remember who wrote what, for later validations (see `validate`).
        let committed = version + 1;
        // A group of more than `SCAN_LIMIT` keys can never be scanned (a validation that
        // meets it re-reads storage), so remembering it would only cost: forget instead (a
        // 1000-record batch spent a fiftieth of its time copying its keys here).
        if writes.len() <= SCAN_LIMIT.min(RECENT_LIMIT) {
            let keys: Vec<(u64, Slice)> = writes
                .iter()
                .map(|w| (w.keyspace.id(), w.key.clone()))
                .collect();
            self.recent_keys += keys.len();
            self.recent.push_back((committed, keys));
        } else {
            // Too big to scan: forget everything up to and including this group.
            self.recent.clear();
            self.recent_keys = 0;
            self.horizon = committed;
        }
        while self.recent_keys > RECENT_LIMIT {
            let Some((dropped, keys)) = self.recent.pop_front() else {
                break;
            };
            self.recent_keys -= keys.len();
            self.horizon = dropped;
        }
        // Everything in the group but the deferred is settled below (the rejected ones already
        // were): they leave the pacing estimate before their writers can come back.
        self.writers
            .outstanding
            .fetch_sub(settled - deferred.len(), Ordering::AcqRel);
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), writes.len());
        for w in writes {
            match w.value {
                Some(v) => batch.insert(&w.keyspace, w.key, v),
                None => batch.remove(&w.keyspace, w.key),
            }
        }
        #[cfg(test)]
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        let result = batch.durability(Some(mode)).commit();
        match result {
            Ok(()) => {
                if sync {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                }
                // Published after the batch is applied: a writer that sees the old version is
                // validated, never wrongly trusted.
                self.version.store(committed, Ordering::Release);
                self.stats
                    .committed
                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
                for ack in accepted {
                    ack(Ok(committed));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "celldb group commit failed");
                let message = format!("writing the group's batch to fjall: {e}");
                for ack in accepted {
                    ack(Err(Error::Commit(message.clone())));
                }
            }
        }
        deferred
    }
}

fn reads_overlap(ws: &WriteSet, written: &HashMap<(u64, Slice), usize, KeyHashBuild>) -> bool {
    ws.reads.iter().any(|read| match read {
        ReadCheck::Point { keyspace, key, .. } => {
            written.contains_key(&(keyspace.id(), key.clone()))
        }
        ReadCheck::Range {
            keyspace,
            start,
            end,
            ..
        } => written.keys().any(|(id, key)| {
            *id == keyspace.id() && (start.as_ref(), end.as_ref()).contains_bytes(key.as_ref())
        }),
    })
}

trait ContainsBytes {
    fn contains_bytes(&self, key: &[u8]) -> bool;
}

impl ContainsBytes for (Bound<&Vec<u8>>, Bound<&Vec<u8>>) {
    fn contains_bytes(&self, key: &[u8]) -> bool {
        let lower = match self.0 {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let upper = match self.1 {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        lower && upper
    }
}

impl Committer {
    /// Checks that nothing `ws` read changed since its snapshot. A point read is checked in
    /// `recent` when the snapshot is newer than the horizon (a key written after the snapshot
    /// is a conflict), else by re-reading it; a range read is always re-scanned.
    fn validate(&self, ws: &WriteSet) -> Result<bool> {
        // Groups committed after the snapshot; usable only if none of them was forgotten.
        let newer: Vec<&Vec<(u64, Slice)>> = if ws.version >= self.horizon {
            self.recent
                .iter()
                .rev()
                .take_while(|(v, _)| *v > ws.version)
                .map(|(_, keys)| keys)
                .collect()
        } else {
            Vec::new()
        };
        let scannable = ws.version >= self.horizon
            && newer.iter().map(|k| k.len()).sum::<usize>() <= SCAN_LIMIT;
        for read in &ws.reads {
            if let ReadCheck::Point { keyspace, key, .. } = read
                && scannable
            {
                let id = keyspace.id();
                let written = newer
                    .iter()
                    .any(|keys| keys.iter().any(|(k_id, k)| *k_id == id && k == key));
                if written {
                    return Ok(false);
                }
            } else if !reread(read)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Re-reads one read check against the latest committed state.
fn reread(read: &ReadCheck) -> Result<bool> {
    match read {
        ReadCheck::Point {
            keyspace,
            key,
            seen,
        } => Ok(keyspace.get(key).map_err(|e| checking(keyspace, e))? == *seen),
        ReadCheck::Range {
            keyspace,
            start,
            end,
            digest,
        } => {
            let mut hasher = RangeDigest::default();
            for guard in keyspace.range::<Vec<u8>, _>((start.clone(), end.clone())) {
                let (k, v) = guard.into_inner().map_err(|e| checking(keyspace, e))?;
                hasher.add(&k, &v);
            }
            Ok(hasher.finish() == *digest)
        }
    }
}

/// A fjall error while re-checking a read at commit, naming the keyspace and its directory.
fn checking(keyspace: &fjall::Keyspace, e: fjall::Error) -> Error {
    Error::storage(
        format!(
            "re-checking a read in keyspace {} ({}) at commit",
            keyspace.name().as_ref() as &str,
            keyspace.path().display()
        ),
        e,
    )
}

/// Hash of the entries a range read saw: xxh3 over length-prefixed keys and values.
///
/// It must be stable across processes, builds and Rust releases: the client that read a range
/// and the server (or, with raft, every replica) that re-checks it compute it separately and
/// compare. std's `DefaultHasher` promises none of that; xxh3 is a fixed algorithm. The length
/// prefixes keep `("ab", "c")` and `("a", "bc")` apart.
pub(crate) struct RangeDigest(xxhash_rust::xxh3::Xxh3);

impl Default for RangeDigest {
    fn default() -> Self {
        Self(xxhash_rust::xxh3::Xxh3::new())
    }
}

impl RangeDigest {
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.0.update(&(key.len() as u64).to_le_bytes());
        self.0.update(key);
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::KeyspaceCreateOptions;

    fn open() -> (tempfile::TempDir, LocalLog, Keyspace) {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path())
            .manual_journal_persist(true)
            .open()
            .unwrap();
        let ks = db.keyspace("t", KeyspaceCreateOptions::default).unwrap();
        (dir, LocalLog::start(db).unwrap(), ks)
    }

    fn durable_put(log: &LocalLog, ks: &Keyspace, key: u64) -> WriteSet {
        WriteSet {
            distinct_keys: true,
            version: log.version(),
            reads: Vec::new(),
            writes: vec![Write {
                keyspace: ks.clone(),
                key: Slice::from(&key.to_be_bytes()[..]),
                value: Some(Slice::from(&b"v"[..])),
            }],
            durability: Durability::Sync,
        }
    }

    /// Submits from async code as `Db` does: hand the write-set over, await the ack.
    async fn commit(log: &LocalLog, ws: WriteSet) -> Result<u64> {
        let (send, receive) = tokio::sync::oneshot::channel();
        log.submit(
            ws,
            Box::new(move |r| {
                let _ = send.send(r);
            }),
        );
        receive.await.unwrap()
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Opens `gate` once `ready` says so — or, if it never does (a submit that blocked the
    /// runtime thread on the held commit), after a long wait, so the test fails instead of
    /// hanging. Returns whether `ready` came.
    fn opener(gate: mpsc::Sender<()>, ready: mpsc::Receiver<()>) -> std::thread::JoinHandle<bool> {
        std::thread::spawn(move || {
            let on_time = ready.recv_timeout(Duration::from_secs(30)).is_ok();
            drop(gate);
            on_time
        })
    }

    /// 32 writers on one `current_thread` runtime, the first arriving at an idle log: every one
    /// of them submits while the first commit is still held, so they can form at most two
    /// groups (the one held, holding whoever had arrived by then, and all the others) — two
    /// fsyncs for 32 durable writes. A submit that committed on the runtime thread would stall
    /// it on the held commit, and each writer would get its own fsync.
    #[test]
    fn current_thread_writers_share_fsyncs() {
        const N: usize = 32;
        let (_dir, log, ks) = open();
        let log = Arc::new(log);
        let (ready, on_ready) = mpsc::channel();
        let opener = opener(log.hold_commits(), on_ready);
        let submitted = Arc::new(AtomicUsize::new(0));
        current_thread().block_on(async {
            let mut tasks = Vec::new();
            for key in 0..N as u64 {
                let (log, ks, submitted) = (log.clone(), ks.clone(), submitted.clone());
                tasks.push(tokio::spawn(async move {
                    let (send, receive) = tokio::sync::oneshot::channel();
                    log.submit(
                        durable_put(&log, &ks, key),
                        Box::new(move |r| {
                            let _ = send.send(r);
                        }),
                    );
                    submitted.fetch_add(1, Ordering::AcqRel);
                    receive.await.unwrap()
                }));
            }
            while submitted.load(Ordering::Acquire) < N {
                tokio::task::yield_now().await;
            }
            let _ = ready.send(());
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        });
        assert!(
            opener.join().unwrap(),
            "the writers could not all submit while a commit was in flight"
        );
        let stats = log.stats();
        assert_eq!(stats.committed.load(Ordering::Relaxed), N as u64);
        let syncs = stats.syncs.load(Ordering::Relaxed);
        assert!((1..=2).contains(&syncs), "{syncs} fsyncs for {N} writers");
        assert_eq!(ks.len().unwrap(), N);
    }

    /// While a durable commit is in flight (held before its fsync until the other task has
    /// run), a `current_thread` runtime keeps running its other tasks: the order of events
    /// proves it, no clock involved.
    #[test]
    fn current_thread_runs_other_tasks_during_a_commit() {
        let (_dir, log, ks) = open();
        let log = Arc::new(log);
        let (ready, on_ready) = mpsc::channel();
        let opener = opener(log.hold_commits(), on_ready);
        let events = Arc::new(Mutex::new(Vec::new()));
        let submitted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        current_thread().block_on(async {
            let writer = {
                let (log, ks, events, submitted) =
                    (log.clone(), ks.clone(), events.clone(), submitted.clone());
                tokio::spawn(async move {
                    let ws = durable_put(&log, &ks, 1);
                    let acked = commit_flagged(&log, ws, &submitted).await;
                    events.lock().unwrap().push("writer acknowledged");
                    acked
                })
            };
            let other = {
                let (events, submitted) = (events.clone(), submitted.clone());
                tokio::spawn(async move {
                    while !submitted.load(Ordering::Acquire) {
                        tokio::task::yield_now().await;
                    }
                    events.lock().unwrap().push("other task ran");
                    let _ = ready.send(());
                })
            };
            other.await.unwrap();
            writer.await.unwrap().unwrap();
        });
        assert!(
            opener.join().unwrap(),
            "the other task did not run during the commit"
        );
        assert_eq!(
            *events.lock().unwrap(),
            ["other task ran", "writer acknowledged"]
        );
        assert_eq!(log.stats().syncs.load(Ordering::Relaxed), 1);
    }

    /// Like [`commit`], but sets `submitted` once the write-set is handed over.
    async fn commit_flagged(
        log: &LocalLog,
        ws: WriteSet,
        submitted: &std::sync::atomic::AtomicBool,
    ) -> Result<u64> {
        let (send, receive) = tokio::sync::oneshot::channel();
        log.submit(
            ws,
            Box::new(move |r| {
                let _ = send.send(r);
            }),
        );
        submitted.store(true, Ordering::Release);
        receive.await.unwrap()
    }

    /// Outside any runtime (a plain thread, as when a table registers its metadata) a
    /// write-set still commits and is durable; so does one from a multi-thread runtime.
    #[test]
    fn commits_from_plain_threads_and_multi_thread_runtimes() {
        let (_dir, log, ks) = open();
        crate::local::commit_blocking(&log, durable_put(&log, &ks, 1)).unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        multi
            .block_on(commit(&log, durable_put(&log, &ks, 2)))
            .unwrap();
        assert_eq!(log.stats().syncs.load(Ordering::Relaxed), 2);
        assert_eq!(ks.len().unwrap(), 2);
    }
}
