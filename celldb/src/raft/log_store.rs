//! The raft log and the vote, in keyspaces of the node's celldb database, written by one
//! journal thread.
//!
//! Why one thread: openraft requires that log and vote writes become durable in the order they
//! were made (a vote durable before the entries of its term, never after), and that an append
//! be reported flushed only after the fsync that covers it. fjall has one journal per database,
//! so writing every raft operation from one thread, in arrival order, makes the order on disk
//! the call order; and one `persist(SyncAll)` after a drained queue covers every operation in
//! it (group commit, like [`LocalLog`](crate::LocalLog)'s committer). No tokio thread ever
//! waits on an fsync: the async methods hand a job to the thread and await a oneshot.
//!
//! Durability per operation: `append`, `save_vote`, `truncate_after` and `purge` are fsynced
//! before they complete; `save_committed` is not (the log is the durable copy; after a power
//! loss openraft re-applies from the log).
//!
//! Test-only negative control: built with the `raft-ack-before-fsync` feature *and* run with
//! `CELLDB_RAFT_ACK_BEFORE_FSYNC=1`, the store completes appends and votes before the fsync.
//! The fsync-ordering proof (`tests/integration/celldb_raft.rs`) must catch it. Without the
//! feature the switch does not exist.

use crate::raft::cmd::Cmd;
use crate::raft::{CellRaft, LOG_KEYSPACE, META_KEYSPACE, io_error, read_json};
use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use std::fmt::Debug;
use std::io;
use std::io::Write as _;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, mpsc};

type C = CellRaft;

/// Version byte of an encoded entry: a binary log id.
const ENTRY_VERSION: u8 = 2;
/// The first version (a JSON log id): still read, never written.
const JSON_ENTRY_VERSION: u8 = 1;
/// Bytes of a version-2 log id: term, leader node id, index.
const LOG_ID_BYTES: usize = 24;
/// `limited_get_log_entries` stops once the entries it read pass this many bytes (always
/// returning at least one), so an AppendEntries request stays under the 16 MiB frame limit.
const READ_BATCH_BYTES: usize = 8 << 20;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";

/// The raft log store of one node. Cheap to clone: clones share the journal thread.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

struct Shared {
    node: u64,
    log: Keyspace,
    meta: Keyspace,
    /// `None` once the store is closing.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: Arc<Mutex<Cached>>,
    /// The newest entries, kept equal to the log's end by the journal thread.
    tail: Arc<Mutex<Tail>>,
    /// fsyncs of the journal since the store opened.
    fsyncs: Arc<std::sync::atomic::AtomicU64>,
}

/// The newest entries of the log, in memory: replication (once per follower) and apply read
/// entries just appended, and serving them from here saves a fjall range read and a decode
/// per entry and reader. The journal thread, the log's only writer, keeps it a contiguous
/// copy of the log's last entries: it adds appended entries after their batch is written and
/// before anyone is told so, empties it before a truncation and trims it before a purge. A range it does
/// not hold whole is read from fjall.
#[derive(Default)]
struct Tail {
    entries: std::collections::VecDeque<EntryOf<C>>,
    /// Approximate bytes of `entries` (payloads), bounded by [`TAIL_BYTES`].
    bytes: usize,
}

/// At most this many entries stay in the [`Tail`]…
const TAIL_ENTRIES: usize = 8192;
/// …and at most about this many payload bytes.
const TAIL_BYTES: usize = 16 << 20;

fn entry_bytes(entry: &EntryOf<C>) -> usize {
    LOG_ID_BYTES
        + 2
        + match &entry.payload {
            EntryPayload::Normal(cmd) => cmd.0.len(),
            _ => 0,
        }
}

impl Tail {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn last(&self) -> Option<u64> {
        self.entries.back().map(|e| e.log_id.index)
    }

    /// Adds entries just written after the log's last entry.
    fn push(&mut self, entries: Vec<EntryOf<C>>) {
        let continues = match (self.last(), entries.first()) {
            (Some(last), Some(first)) => first.log_id.index == last + 1,
            _ => true,
        };
        if !continues {
            self.clear();
        }
        for entry in entries {
            self.bytes += entry_bytes(&entry);
            self.entries.push_back(entry);
        }
        while self.entries.len() > TAIL_ENTRIES
            || (self.bytes > TAIL_BYTES && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&entry);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets the entries up to `upto`.
    fn purge_upto(&mut self, upto: u64) {
        while self.first().is_some_and(|first| first <= upto) {
            self.pop_front();
        }
    }

    /// The entries of `[start, end)` (to the log's end when `end` lies beyond it), when
    /// the tail holds them all; `None` sends the reader to fjall.
    fn read(&self, start: u64, end: u64, byte_limit: Option<usize>) -> Option<Vec<EntryOf<C>>> {
        let first = self.first()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.entries.iter().skip(skip) {
            if entry.log_id.index >= end {
                break;
            }
            bytes += entry_bytes(entry);
            out.push(entry.clone());
            if byte_limit.is_some_and(|limit| bytes >= limit) {
                break;
            }
        }
        Some(out)
    }
}

/// What `get_log_state` answers, kept by the journal thread (the only writer).
#[derive(Default, Clone)]
struct Cached {
    last_log_id: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
}

enum Job {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        /// The same entries, for the [`Tail`].
        typed: Vec<EntryOf<C>>,
        last: LogIdOf<C>,
        written: tokio::sync::oneshot::Sender<io::Result<()>>,
        flushed: IOFlushed<C>,
    },
    Vote {
        bytes: Vec<u8>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Truncate {
        after: Option<LogIdOf<C>>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: LogIdOf<C>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Committed {
        bytes: Vec<u8>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

/// Completion owed once the fsync covering a job is done.
enum AfterSync {
    Flushed { flushed: IOFlushed<C>, last: u64 },
    Done(tokio::sync::oneshot::Sender<io::Result<()>>, &'static str),
}

impl LogStore {
    /// Opens (creating when missing) the raft log of node `node` in `db`'s fjall database, and
    /// starts its journal thread.
    ///
    /// # Errors
    /// Storage errors; stored log ids that do not decode.
    pub(crate) fn open(node: u64, fjall: &fjall::Database) -> io::Result<Self> {
        let open = |name: &str| {
            fjall
                .keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| io_error(format!("opening keyspace {name}"), e))
        };
        let log = open(LOG_KEYSPACE)?;
        let meta = open(META_KEYSPACE)?;
        let last_purged = read_json::<LogIdOf<C>>(&meta, PURGED_KEY, "raft metadata")?;
        let last_log_id = match log.last_key_value() {
            Some(guard) => {
                let (k, v) = guard
                    .into_inner()
                    .map_err(|e| io_error("reading the last raft entry", e))?;
                Some(decode_entry(&k, &v)?.log_id())
            }
            None => None,
        };
        let state = Arc::new(Mutex::new(Cached {
            last_log_id: last_log_id.or(last_purged),
            last_purged,
        }));
        let (sender, receiver) = mpsc::channel();
        let fsyncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tail = Arc::new(Mutex::new(Tail::default()));
        let journal = Journal {
            tail: tail.clone(),
            fsyncs: fsyncs.clone(),
            node,
            db: fjall.clone(),
            log: log.clone(),
            meta: meta.clone(),
            state: state.clone(),
            markers: Markers::from_env(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("celldb-raft-journal-{node}"))
            .spawn(move || journal.run(receiver))
            .map_err(|e| io_error("starting the raft journal thread", e))?;
        Ok(Self {
            shared: Arc::new(Shared {
                node,
                log,
                meta,
                jobs: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
                state,
                tail,
                fsyncs,
            }),
        })
    }

    fn send(&self, job: Job) -> io::Result<()> {
        let jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.as_ref() {
            Some(sender) => sender
                .send(job)
                .map_err(|_| io::Error::other("the raft journal thread has stopped")),
            None => Err(io::Error::other("the raft log store is closed")),
        }
    }

    async fn call(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<io::Result<()>>) -> Job,
    ) -> io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(make(done))?;
        wait.await
            .map_err(|_| io::Error::other("the raft journal thread dropped a job"))?
    }

    /// fsyncs of the raft journal since this store opened (benchmarks report them per
    /// acknowledged write).
    pub fn fsyncs(&self) -> u64 {
        self.shared
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the journal thread after the jobs already queued (called when the node stops;
    /// later calls fail).
    pub(crate) fn close(&self) {
        self.shared.stop();
    }
}

impl Shared {
    /// Closes the job channel (the thread ends after the queued jobs) and joins the thread.
    fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Encodes an entry: version, log id, kind, payload (a normal entry's write-set bytes as they
/// are). Version 2 stores the log id as three little-endian `u64`s (term, leader node,
/// index); version 1, which [`decode_entry`] still reads, stored it as length-prefixed JSON,
/// whose encoding and decoding were a visible part of every replicated write's CPU (each
/// entry is decoded again for each follower it is sent to, and for apply).
pub(crate) fn encode_entry(entry: &EntryOf<C>) -> io::Result<Vec<u8>> {
    let payload_len = match &entry.payload {
        EntryPayload::Normal(cmd) => cmd.0.len(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(1 + LOG_ID_BYTES + 1 + payload_len);
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(cmd) => {
            out.push(1);
            out.extend_from_slice(&cmd.0);
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            serde_json::to_writer(&mut out, m).map_err(|e| io_error("encoding a membership", e))?;
        }
    }
    Ok(out)
}

/// Decodes an entry stored at key `key`; the key must be its index.
pub(crate) fn decode_entry(key: &[u8], bytes: &[u8]) -> io::Result<EntryOf<C>> {
    let corrupt =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("raft log entry: {why}"));
    let index = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("its key is not 8 bytes"))?;
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    let (log_id, rest): (LogIdOf<C>, &[u8]) = match version {
        ENTRY_VERSION => {
            let id = rest
                .get(..LOG_ID_BYTES)
                .ok_or_else(|| corrupt("truncated log id"))?;
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&id[8 * i..8 * i + 8]);
                u64::from_le_bytes(b)
            };
            let leader = openraft::vote::leader_id_adv::LeaderId {
                term: word(0),
                node_id: word(1),
            };
            (LogIdOf::<C>::new(leader, word(2)), &rest[LOG_ID_BYTES..])
        }
        JSON_ENTRY_VERSION => {
            let len = rest
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| corrupt("truncated header"))?;
            let log_id_bytes = rest
                .get(4..4 + len)
                .ok_or_else(|| corrupt("truncated log id"))?;
            let log_id = serde_json::from_slice(log_id_bytes)
                .map_err(|e| corrupt(&format!("log id: {e}")))?;
            (log_id, &rest[4 + len..])
        }
        other => return Err(corrupt(&format!("unknown version {other}"))),
    };
    if log_id.index != index {
        return Err(corrupt(&format!(
            "stored at index {index} but says {}",
            log_id.index
        )));
    }
    let (&kind, payload) = rest
        .split_first()
        .ok_or_else(|| corrupt("no payload kind"))?;
    let payload = match kind {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Cmd(payload.to_vec())),
        2 => EntryPayload::Membership(
            serde_json::from_slice(payload).map_err(|e| corrupt(&format!("membership: {e}")))?,
        ),
        other => return Err(corrupt(&format!("unknown payload kind {other}"))),
    };
    Ok(EntryOf::<C>::new(log_id, payload))
}

fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let map = |b: Bound<&u64>| match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.start_bound()), map(range.end_bound()))
}

impl LogStore {
    fn read_entries<RB: RangeBounds<u64>>(
        &self,
        range: &RB,
        byte_limit: Option<usize>,
    ) -> io::Result<Vec<EntryOf<C>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Some(i),
            Bound::Excluded(&i) => i.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let Some(start) = start else {
            return Ok(Vec::new());
        };
        if let Some(entries) = self
            .shared
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(start, end, byte_limit)
        {
            return Ok(entries);
        }
        let range = index_range(range);
        let mut out = Vec::new();
        let mut bytes = 0;
        for guard in self.shared.log.range(range) {
            let (k, v) = guard
                .into_inner()
                .map_err(|e| io_error("reading raft log entries", e))?;
            bytes += v.len();
            out.push(decode_entry(&k, &v)?);
            if byte_limit.is_some_and(|limit| bytes >= limit) {
                break;
            }
        }
        Ok(out)
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        self.read_entries(&range, None)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        self.read_entries(&(start..end), Some(READ_BATCH_BYTES))
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        read_json(&self.shared.meta, VOTE_KEY, "raft metadata")
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(LogState {
            last_purged_log_id: state.last_purged,
            last_log_id: state.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(vote).map_err(|e| io_error("encoding the vote", e))?;
        self.call(|done| Job::Vote { bytes, done }).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| io_error("encoding the committed id", e))?;
        self.call(|done| Job::Committed { bytes, done }).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(
            read_json::<Option<LogIdOf<C>>>(&self.shared.meta, COMMITTED_KEY, "raft metadata")?
                .flatten(),
        )
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut typed = Vec::new();
        let mut last = None;
        for entry in entries {
            encoded.push((entry.log_id.index, encode_entry(&entry)?));
            last = Some(entry.log_id);
            typed.push(entry);
        }
        let Some(last) = last else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let (written, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Append {
            entries: encoded,
            typed,
            last,
            written,
            flushed: callback,
        })?;
        wait.await
            .map_err(|_| io::Error::other("the raft journal thread dropped an append"))?
    }

    async fn truncate_after(&mut self, after: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.call(|done| Job::Truncate { after, done }).await
    }

    async fn purge(&mut self, upto: LogIdOf<C>) -> Result<(), io::Error> {
        self.call(|done| Job::Purge { upto, done }).await
    }
}

/// The journal thread's state: the only writer of the raft keyspaces.
struct Journal {
    tail: Arc<Mutex<Tail>>,
    fsyncs: Arc<std::sync::atomic::AtomicU64>,
    node: u64,
    db: fjall::Database,
    log: Keyspace,
    meta: Keyspace,
    state: Arc<Mutex<Cached>>,
    markers: Markers,
}

impl Journal {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut queue = vec![first];
            while let Ok(more) = jobs.try_recv() {
                queue.push(more);
            }
            let mut after_sync = Vec::new();
            for job in queue {
                self.write(job, &mut after_sync);
            }
            if after_sync.is_empty() {
                continue;
            }
            let synced = self
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| io_error("fsyncing the raft journal", e));
            self.fsyncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for owed in after_sync {
                let result = match &synced {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::other(e.to_string())),
                };
                match owed {
                    AfterSync::Flushed { flushed, last } => {
                        self.markers
                            .line(format_args!("FLUSHED n={} i={last}", self.node));
                        flushed.io_completed(result);
                    }
                    AfterSync::Done(done, what) => {
                        self.markers.line(format_args!("{what}D n={}", self.node));
                        let _ = done.send(result);
                    }
                }
            }
        }
    }

    /// Writes one job in its own batch (no fsync); what it owes after the fsync goes to
    /// `after_sync`.
    fn write(&mut self, job: Job, after_sync: &mut Vec<AfterSync>) {
        match job {
            Job::Append {
                entries,
                typed,
                last,
                written,
                flushed,
            } => {
                let mut batch = self.db.batch().durability(None);
                for (index, bytes) in entries {
                    batch.insert(&self.log, index.to_be_bytes(), bytes);
                }
                match batch.commit() {
                    Ok(()) => {
                        self.cached().last_log_id = Some(last);
                        // Before `written` tells openraft the entries are there to read.
                        self.tail
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(typed);
                        self.markers
                            .line(format_args!("APPEND n={} i={}", self.node, last.index));
                        let _ = written.send(Ok(()));
                        if ack_before_fsync() {
                            self.markers
                                .line(format_args!("FLUSHED n={} i={}", self.node, last.index));
                            flushed.io_completed(Ok(()));
                        } else {
                            after_sync.push(AfterSync::Flushed {
                                flushed,
                                last: last.index,
                            });
                        }
                    }
                    Err(e) => {
                        let e = io_error("writing raft entries", e);
                        let _ = written.send(Err(io::Error::other(e.to_string())));
                        flushed.io_completed(Err(e));
                    }
                }
            }
            Job::Vote { bytes, done } => {
                self.markers.line(format_args!("VOTEW n={}", self.node));
                let result = self
                    .meta
                    .insert(VOTE_KEY, bytes)
                    .map_err(|e| io_error("writing the vote", e));
                self.owe(result, done, "VOTE", after_sync);
            }
            Job::Committed { bytes, done } => {
                let result = self
                    .meta
                    .insert(COMMITTED_KEY, bytes)
                    .map_err(|e| io_error("writing the committed log id", e));
                let _ = done.send(result);
            }
            Job::Truncate { after, done } => {
                let result = self.truncate(after);
                self.owe(result, done, "TRUNC", after_sync);
            }
            Job::Purge { upto, done } => {
                let result = self.purge(upto);
                self.owe(result, done, "PURGE", after_sync);
            }
        }
    }

    fn owe(
        &self,
        result: io::Result<()>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
        what: &'static str,
        after_sync: &mut Vec<AfterSync>,
    ) {
        match result {
            Err(e) => {
                let _ = done.send(Err(e));
            }
            Ok(()) if ack_before_fsync() && what == "VOTE" => {
                self.markers.line(format_args!("VOTED n={}", self.node));
                let _ = done.send(Ok(()));
            }
            Ok(()) => after_sync.push(AfterSync::Done(done, what)),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes every entry after `after` (all of them for `None`), in one batch.
    fn truncate(&mut self, after: Option<LogIdOf<C>>) -> io::Result<()> {
        let from = after.as_ref().map_or(0, |id| id.index + 1);
        // The tail is emptied first (truncation is rare: a follower's conflicting entries), so
        // no reader sees an entry fjall no longer holds, even if the deletion fails halfway.
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let mut batch = self.db.batch().durability(None);
        for guard in self.log.range(from.to_be_bytes()..) {
            let key = guard
                .key()
                .map_err(|e| io_error("reading raft entries to truncate", e))?;
            batch.remove(&self.log, key);
        }
        batch
            .commit()
            .map_err(|e| io_error("truncating the raft log", e))?;
        let mut cached = self.cached();
        // Truncating after a point beyond the last entry deletes nothing and changes nothing.
        let beyond = match (&after, &cached.last_log_id) {
            (Some(after), Some(last)) => after.index >= last.index,
            _ => false,
        };
        if !beyond {
            cached.last_log_id = after.or_else(|| cached.last_purged);
        }
        Ok(())
    }

    /// Deletes every entry up to `upto` and records it as the last purged, in one batch.
    fn purge(&mut self, upto: LogIdOf<C>) -> io::Result<()> {
        let bytes = serde_json::to_vec(&upto).map_err(|e| io_error("encoding a log id", e))?;
        let mut batch = self.db.batch().durability(None);
        // From the last purge on: what lies below it is gone already, and scanning from the
        // start would walk the tombstones of every earlier purge (until compaction drops
        // them), a cost that grew with the log's whole history on every purge.
        let from = self
            .cached()
            .last_purged
            .as_ref()
            .map_or(0, |p| p.index + 1);
        // Out of the tail first, so no reader gets an entry fjall no longer holds (should the
        // batch fail, the tail only lacks entries fjall still has: those reads go to fjall).
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .purge_upto(upto.index);
        if from <= upto.index {
            for guard in self
                .log
                .range(from.to_be_bytes()..=upto.index.to_be_bytes())
            {
                let key = guard
                    .key()
                    .map_err(|e| io_error("reading raft entries to purge", e))?;
                batch.remove(&self.log, key);
            }
        }
        batch.insert(&self.meta, PURGED_KEY, bytes);
        batch
            .commit()
            .map_err(|e| io_error("purging the raft log", e))?;
        let mut cached = self.cached();
        if cached
            .last_log_id
            .as_ref()
            .is_none_or(|last| last.index < upto.index)
        {
            cached.last_log_id = Some(upto);
        }
        cached.last_purged = Some(upto);
        Ok(())
    }
}

/// The deliberately broken build of the fsync-ordering proof (see the module docs).
#[cfg(feature = "raft-ack-before-fsync")]
fn ack_before_fsync() -> bool {
    static ON: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("CELLDB_RAFT_ACK_BEFORE_FSYNC").is_some());
    *ON
}

#[cfg(not(feature = "raft-ack-before-fsync"))]
fn ack_before_fsync() -> bool {
    false
}

/// Marker lines for the fsync-ordering proof: with `CELLDB_RAFT_MARKERS=1`, each node writes
/// `APPEND`/`FLUSHED`/`VOTEW`/`VOTED` lines to its own `/dev/null` descriptor, so `strace`
/// shows where each completion happened relative to the fsyncs. Off: nothing is written.
struct Markers(Option<std::fs::File>);

impl Markers {
    fn from_env() -> Self {
        if std::env::var_os("CELLDB_RAFT_MARKERS").is_some() {
            Self(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .ok(),
            )
        } else {
            Self(None)
        }
    }

    fn line(&self, args: std::fmt::Arguments<'_>) {
        if let Some(mut file) = self.0.as_ref() {
            // One write call per line: strace shows it whole.
            let _ = file.write_all(format!("{args}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Node;
    use openraft::vote::leader_id_adv::LeaderId;

    fn log_id(term: u64, node_id: u64, index: u64) -> LogIdOf<C> {
        LogIdOf::<C>::new(LeaderId { term, node_id }, index)
    }

    /// What version 1 wrote: the log id as length-prefixed JSON.
    fn encode_v1(entry: &EntryOf<C>) -> Vec<u8> {
        let id = serde_json::to_vec(&entry.log_id).unwrap();
        let mut out = vec![JSON_ENTRY_VERSION];
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(&id);
        match &entry.payload {
            EntryPayload::Blank => out.push(0),
            EntryPayload::Normal(cmd) => {
                out.push(1);
                out.extend_from_slice(&cmd.0);
            }
            EntryPayload::Membership(m) => {
                out.push(2);
                serde_json::to_writer(&mut out, m).unwrap();
            }
        }
        out
    }

    fn samples() -> Vec<EntryOf<C>> {
        let members =
            std::collections::BTreeMap::from([(1, Node::new("a:1")), (2, Node::new("b:2"))]);
        vec![
            EntryOf::<C>::new(log_id(1, 1, 1), EntryPayload::Blank),
            EntryOf::<C>::new(
                log_id(3, 2, 7),
                EntryPayload::Normal(Cmd(vec![1, 2, 3, 0, 255])),
            ),
            EntryOf::<C>::new(
                log_id(u64::MAX, u64::MAX, 9),
                EntryPayload::Normal(Cmd(vec![])),
            ),
            EntryOf::<C>::new(
                log_id(2, 1, 4),
                EntryPayload::Membership(
                    openraft::Membership::new(
                        vec![std::collections::BTreeSet::from([1, 2])],
                        members,
                    )
                    .unwrap(),
                ),
            ),
        ]
    }

    #[test]
    fn entries_round_trip_and_version_1_entries_still_decode() {
        for entry in samples() {
            let key = entry.log_id.index.to_be_bytes();
            let v2 = encode_entry(&entry).unwrap();
            assert_eq!(v2[0], ENTRY_VERSION);
            assert_eq!(decode_entry(&key, &v2).unwrap(), entry);
            assert_eq!(decode_entry(&key, &encode_v1(&entry)).unwrap(), entry);
        }
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        for entry in samples() {
            let key = entry.log_id.index.to_be_bytes();
            for bytes in [encode_entry(&entry).unwrap(), encode_v1(&entry)] {
                // Every truncation that cuts into the header is refused.
                for cut in 0..bytes.len() {
                    let _ = decode_entry(&key, &bytes[..cut]);
                }
                let header = if bytes[0] == ENTRY_VERSION {
                    1 + LOG_ID_BYTES + 1
                } else {
                    6
                };
                for cut in 0..header.min(bytes.len()) {
                    assert!(decode_entry(&key, &bytes[..cut]).is_err(), "cut at {cut}");
                }
            }
            // An entry stored under another index, and an unknown version, are refused.
            let bytes = encode_entry(&entry).unwrap();
            let other = (entry.log_id.index + 1).to_be_bytes();
            assert!(decode_entry(&other, &bytes).is_err());
            let mut unknown = bytes.clone();
            unknown[0] = 9;
            assert!(decode_entry(&key, &unknown).is_err());
        }
    }

    fn normal(index: u64, len: usize) -> EntryOf<C> {
        EntryOf::<C>::new(log_id(1, 1, index), EntryPayload::Normal(Cmd(vec![7; len])))
    }

    fn indexes(entries: &[EntryOf<C>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn the_tail_serves_only_ranges_it_holds_whole() {
        let mut tail = Tail::default();
        assert!(tail.read(0, u64::MAX, None).is_none());
        tail.push((5..=9).map(|i| normal(i, 10)).collect());
        assert_eq!(indexes(&tail.read(5, 10, None).unwrap()), [5, 6, 7, 8, 9]);
        assert_eq!(indexes(&tail.read(7, 9, None).unwrap()), [7, 8]);
        // Past the end: what the log holds (the tail is the log's end).
        assert_eq!(indexes(&tail.read(8, u64::MAX, None).unwrap()), [8, 9]);
        assert!(tail.read(10, 20, None).unwrap().is_empty());
        // Before its first entry: fjall's job.
        assert!(tail.read(4, 6, None).is_none());
        // A byte limit stops after the entry that reaches it (always at least one).
        assert_eq!(indexes(&tail.read(5, 10, Some(1)).unwrap()), [5]);
        // A batch that does not continue the tail replaces it.
        tail.push(vec![normal(20, 1)]);
        assert_eq!(tail.first(), Some(20));
        assert!(tail.read(9, 21, None).is_none());
        tail.purge_upto(20);
        assert!(tail.read(20, 21, None).is_none());
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    fn the_tail_stays_within_its_bounds() {
        let mut tail = Tail::default();
        tail.push(
            (1..=(TAIL_ENTRIES as u64 + 10))
                .map(|i| normal(i, 1))
                .collect(),
        );
        assert_eq!(tail.entries.len(), TAIL_ENTRIES);
        assert_eq!(tail.first(), Some(11));
        let mut big = Tail::default();
        big.push((1..=40).map(|i| normal(i, 1 << 20)).collect());
        assert!(big.bytes <= TAIL_BYTES);
        assert_eq!(big.last(), Some(40));
        big.push(vec![normal(41, TAIL_BYTES * 2)]);
        // One entry larger than the bound is kept alone: the newest entry is always there.
        assert_eq!(indexes(&big.read(41, 42, None).unwrap()), [41]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_entry_decoder(
            key in proptest::prelude::any::<[u8; 8]>(),
            version in 0u8..4,
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
        ) {
            let mut bytes = vec![version];
            bytes.extend_from_slice(&rest);
            let _ = decode_entry(&key, &bytes);
        }
    }
}
