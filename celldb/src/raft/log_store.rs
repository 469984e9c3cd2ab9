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
use openraft::type_config::alias::{EntryOf, EntryPayloadOf, LogIdOf, VoteOf};
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
/// Version byte of a *group*: consecutive entries stored as one fjall item under the first
/// one's index (see [`group_items`]).
const GROUP_VERSION: u8 = 3;
/// Entries in one group at most…
const GROUP_ENTRIES: usize = 1024;
/// …and about this many bytes (an entry larger than this is stored alone).
const GROUP_BYTES: usize = 4 << 20;
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
    /// Test hook: hold nothing, so every read goes to fjall ([`LogStore::without_tail`]).
    off: bool,
    entries: std::collections::VecDeque<EntryOf<C>>,
    /// Approximate bytes of `entries` (payloads), bounded by [`TAIL_BYTES`].
    bytes: usize,
}

/// At most this many entries stay in the [`Tail`]…
const TAIL_ENTRIES: usize = 8192;
/// …and at most about this many payload bytes.
const TAIL_BYTES: usize = 16 << 20;

fn entry_bytes(entry: &EntryOf<C>) -> usize {
    LOG_ID_BYTES + 2 + payload_len(entry)
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
        if self.off {
            return;
        }
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
                decode_item(&k, &v)?.pop().map(|(entry, _)| entry.log_id())
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

    /// Test hook: this store keeps no tail, so every read goes to fjall (openraft's storage
    /// suite runs both ways).
    #[doc(hidden)]
    pub fn without_tail(self) -> Self {
        let mut tail = self.shared.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.off = true;
        tail.clear();
        drop(tail);
        self
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
    let mut out = Vec::with_capacity(1 + LOG_ID_BYTES + 1 + payload_len(entry));
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    encode_payload(&mut out, &entry.payload)?;
    Ok(out)
}

/// The kind byte and payload of an encoded entry (the same in every version).
fn encode_payload(out: &mut Vec<u8>, payload: &EntryPayloadOf<C>) -> io::Result<()> {
    match payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(cmd) => {
            out.push(1);
            out.extend_from_slice(&cmd.0);
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            serde_json::to_writer(out, m).map_err(|e| io_error("encoding a membership", e))?;
        }
    }
    Ok(())
}

/// A normal entry's write-set bytes (0 for the others).
fn payload_len(entry: &EntryOf<C>) -> usize {
    match &entry.payload {
        EntryPayload::Normal(cmd) => cmd.0.len(),
        _ => 0,
    }
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

/// The fjall items an append of consecutive encoded entries is stored as: `(key index,
/// value)`. An item is one entry (versions 1 and 2) or a group of consecutive entries under the
/// first one's index (version 3: count, then each entry's length and encoding). One item per
/// append instead of one per entry: each fjall item costs a memtable insert, a journal record
/// and its share of flushes and compactions, which were about a tenth of a node's CPU per
/// replicated write.
fn group_items(entries: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    fn close(items: &mut Vec<(u64, Vec<u8>)>, group: &mut Vec<(u64, Vec<u8>)>) {
        match group.len() {
            0 => {}
            1 => items.append(group),
            n => {
                let first = group[0].0;
                let size: usize = group.iter().map(|(_, b)| 4 + b.len()).sum();
                let mut value = Vec::with_capacity(5 + size);
                value.push(GROUP_VERSION);
                value.extend_from_slice(&(n as u32).to_le_bytes());
                for (_, bytes) in group.drain(..) {
                    value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    value.extend_from_slice(&bytes);
                }
                items.push((first, value));
            }
        }
    }
    let mut items = Vec::new();
    let mut group: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut size = 0;
    for (index, bytes) in entries {
        let continues = group
            .last()
            .is_some_and(|(last, _)| last.checked_add(1) == Some(index));
        if !continues || group.len() >= GROUP_ENTRIES || size + bytes.len() > GROUP_BYTES {
            close(&mut items, &mut group);
            size = 0;
        }
        size += bytes.len();
        group.push((index, bytes));
    }
    close(&mut items, &mut group);
    items
}

/// The entries of the item stored at `key` (one, or a group), each with its encoded size.
fn decode_item(key: &[u8], bytes: &[u8]) -> io::Result<Vec<(EntryOf<C>, usize)>> {
    let corrupt =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("raft log group: {why}"));
    let Some(mut rest) = bytes.strip_prefix(&[GROUP_VERSION]) else {
        return Ok(vec![(decode_entry(key, bytes)?, bytes.len())]);
    };
    let first = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("its key is not 8 bytes"))?;
    let take_u32 = |rest: &mut &[u8]| -> io::Result<usize> {
        let (head, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated"))?;
        *rest = tail;
        Ok(u32::from_le_bytes(*head) as usize)
    };
    let count = take_u32(&mut rest)?;
    let mut out = Vec::with_capacity(count.min(rest.len() / 4));
    for i in 0..count {
        let len = take_u32(&mut rest)?;
        if len > rest.len() {
            return Err(corrupt("truncated entry"));
        }
        let (entry, tail) = rest.split_at(len);
        let index = first
            .checked_add(i as u64)
            .ok_or_else(|| corrupt("indexes past the end"))?;
        out.push((decode_entry(&index.to_be_bytes(), entry)?, len));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    if out.is_empty() {
        return Err(corrupt("no entries"));
    }
    Ok(out)
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
        if start >= end {
            return Ok(Vec::new());
        }
        let log = &self.shared.log;
        // The item holding `start` may be a group that begins before it.
        let from = item_holding(log, start)?.unwrap_or(start);
        let mut out = Vec::new();
        let mut bytes = 0;
        for guard in log.range(from.to_be_bytes()..end.to_be_bytes()) {
            let (k, v) = guard
                .into_inner()
                .map_err(|e| io_error("reading raft log entries", e))?;
            for (entry, size) in decode_item(&k, &v)? {
                let index = entry.log_id.index;
                if index < start {
                    continue;
                }
                if index >= end {
                    return Ok(out);
                }
                bytes += size;
                out.push(entry);
                if byte_limit.is_some_and(|limit| bytes >= limit) {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// The key of the item that holds `index` if any item could: the last key at or below it.
fn item_holding(log: &Keyspace, index: u64) -> io::Result<Option<u64>> {
    match log.range(..=index.to_be_bytes()).next_back() {
        Some(guard) => {
            let key = guard
                .key()
                .map_err(|e| io_error("reading raft log keys", e))?;
            <[u8; 8]>::try_from(&key[..])
                .map(|k| Some(u64::from_be_bytes(k)))
                .map_err(|_| io_error("reading raft log keys", "a key is not 8 bytes"))
        }
        None => Ok(None),
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
                for (index, value) in group_items(entries) {
                    batch.insert(&self.log, index.to_be_bytes(), value);
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
        // A group that begins before `from` and reaches it keeps its entries before `from`.
        if let Some(key) = item_holding(&self.log, from)?.filter(|key| *key < from) {
            let value = self
                .log
                .get(key.to_be_bytes())
                .map_err(|e| io_error("reading raft entries to truncate", e))?
                .ok_or_else(|| io_error("truncating the raft log", "an item vanished"))?;
            let entries = decode_item(&key.to_be_bytes(), &value)?;
            if entries.last().is_some_and(|(e, _)| e.log_id.index >= from) {
                let kept = entries
                    .into_iter()
                    .filter(|(e, _)| e.log_id.index < from)
                    .map(|(e, _)| Ok((e.log_id.index, encode_entry(&e)?)))
                    .collect::<io::Result<Vec<_>>>()?;
                for (index, value) in group_items(kept) {
                    batch.insert(&self.log, index.to_be_bytes(), value);
                }
            }
        }
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
            // Items (entries or groups) wholly at or below `upto` go; a group that reaches
            // past it stays whole (its purged entries are never read again).
            let scan_from = item_holding(&self.log, from)?.unwrap_or(from);
            let mut keys = Vec::new();
            for guard in self
                .log
                .range(scan_from.to_be_bytes()..=upto.index.to_be_bytes())
            {
                let key = guard
                    .key()
                    .map_err(|e| io_error("reading raft entries to purge", e))?;
                keys.push(key);
            }
            let next = match upto.index.checked_add(1) {
                Some(next) => self
                    .log
                    .range(next.to_be_bytes()..)
                    .next()
                    .map(|g| g.key())
                    .transpose()
                    .map_err(|e| io_error("reading raft entries to purge", e))?,
                None => None,
            };
            // Every item but the last ends before the next one begins, so at or below `upto`.
            // The last one ends before the item after `upto` begins, or it is the log's last.
            let last_is_whole = match (keys.last(), next) {
                (None, _) => false,
                (Some(_), Some(next)) => next.as_ref() == (upto.index + 1).to_be_bytes(),
                (Some(last), None) => {
                    let value = self
                        .log
                        .get(last)
                        .map_err(|e| io_error("reading raft entries to purge", e))?
                        .ok_or_else(|| io_error("purging the raft log", "an item vanished"))?;
                    decode_item(last, &value)?
                        .last()
                        .is_some_and(|(e, _)| e.log_id.index <= upto.index)
                }
            };
            let whole = if last_is_whole {
                keys.len()
            } else {
                keys.len().saturating_sub(1)
            };
            for key in keys.into_iter().take(whole) {
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
        encode_payload(&mut out, &entry.payload).unwrap();
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

    fn encoded(entries: &[EntryOf<C>]) -> Vec<(u64, Vec<u8>)> {
        entries
            .iter()
            .map(|e| (e.log_id.index, encode_entry(e).unwrap()))
            .collect()
    }

    fn decoded(items: &[(u64, Vec<u8>)]) -> Vec<EntryOf<C>> {
        items
            .iter()
            .flat_map(|(k, v)| decode_item(&k.to_be_bytes(), v).unwrap())
            .map(|(e, _)| e)
            .collect()
    }

    #[test]
    fn an_append_is_stored_as_groups_that_give_back_its_entries() {
        let entries: Vec<EntryOf<C>> = (10..2500).map(|i| normal(i, 3)).collect();
        let items = group_items(encoded(&entries));
        // 2,490 entries: groups of at most GROUP_ENTRIES, keyed by their first index.
        assert_eq!(items.len(), 3);
        assert_eq!(
            items.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [10, 1034, 2058]
        );
        assert_eq!(decoded(&items), entries);
        // One entry alone is stored as an entry (what earlier builds read), not a group.
        let one = group_items(encoded(&entries[..1]));
        assert_eq!(one[0].1[0], ENTRY_VERSION);
        // A gap starts a new group; a large entry stands alone.
        let gap = vec![
            normal(1, 1),
            normal(2, 1),
            normal(5, 1),
            normal(6, GROUP_BYTES),
        ];
        let items = group_items(encoded(&gap));
        assert_eq!(items.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1, 5, 6]);
        assert_eq!(decoded(&items), gap);
    }

    #[test]
    fn damaged_groups_are_errors_not_panics() {
        let entries: Vec<EntryOf<C>> = (7..12).map(|i| normal(i, 5)).collect();
        let (key, value) = group_items(encoded(&entries)).remove(0);
        let key = key.to_be_bytes();
        for cut in 1..value.len() {
            assert!(decode_item(&key, &value[..cut]).is_err(), "cut at {cut}");
        }
        // Stored under another index: the entries' own indexes disagree.
        assert!(decode_item(&8u64.to_be_bytes(), &value).is_err());
        let mut trailing = value.clone();
        trailing.push(0);
        assert!(decode_item(&key, &trailing).is_err());
        assert!(decode_item(&key, &[GROUP_VERSION, 0, 0, 0, 0]).is_err());
        assert!(decode_item(&u64::MAX.to_be_bytes(), &value).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_group_decoder(
            key in proptest::prelude::any::<[u8; 8]>(),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
        ) {
            let mut bytes = vec![GROUP_VERSION];
            bytes.extend_from_slice(&rest);
            let _ = decode_item(&key, &bytes);
        }
    }

    fn entry_of_term(term: u64, index: u64) -> EntryOf<C> {
        EntryOf::<C>::new(
            log_id(term, 1, index),
            EntryPayload::Normal(Cmd(vec![index as u8, term as u8])),
        )
    }

    /// Groups on a real store, read from fjall (no tail): a truncation and a purge inside a
    /// group, new entries after the truncation, and a reopened store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_hold_through_truncation_purge_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let mut store = LogStore::open(1, &db).unwrap().without_tail();
        let old: Vec<EntryOf<C>> = (1..=10).map(|i| entry_of_term(1, i)).collect();
        store.append(old.clone(), IOFlushed::noop()).await.unwrap();
        assert_eq!(store.try_get_log_entries(1..=10).await.unwrap(), old);
        assert_eq!(store.try_get_log_entries(4..7).await.unwrap(), old[3..6]);
        // Truncate inside the group, then append other entries at the same indexes.
        store.truncate_after(Some(log_id(1, 1, 5))).await.unwrap();
        assert_eq!(store.try_get_log_entries(1..=20).await.unwrap(), old[..5]);
        let new: Vec<EntryOf<C>> = (6..=8).map(|i| entry_of_term(2, i)).collect();
        store.append(new.clone(), IOFlushed::noop()).await.unwrap();
        let now: Vec<EntryOf<C>> = old[..5].iter().chain(&new).cloned().collect();
        assert_eq!(store.try_get_log_entries(1..=20).await.unwrap(), now);
        assert_eq!(store.try_get_log_entries(5..=6).await.unwrap(), now[4..6]);
        assert_eq!(
            store.limited_get_log_entries(2, 8).await.unwrap(),
            now[1..7]
        );
        // Purge inside the first group: what is above it stays readable.
        store.purge(log_id(1, 1, 3)).await.unwrap();
        assert_eq!(store.try_get_log_entries(4..=8).await.unwrap(), now[3..]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 8)));
        // Reopened: the same log.
        store.close();
        drop(store);
        let mut store = LogStore::open(1, &db).unwrap().without_tail();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 8)));
        assert_eq!(store.try_get_log_entries(4..=8).await.unwrap(), now[3..]);
        // A purge to a group's last entry removes the group; one past the log, everything.
        store.purge(log_id(1, 1, 5)).await.unwrap();
        assert_eq!(store.try_get_log_entries(6..=8).await.unwrap(), new);
        assert_eq!(store.shared.log.iter().count(), 1);
        store.purge(log_id(2, 1, 9)).await.unwrap();
        assert_eq!(store.shared.log.iter().count(), 0);
        store.close();
    }
}
