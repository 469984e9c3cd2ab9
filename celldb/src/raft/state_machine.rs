//! The replicated state machine: applies committed [`Cmd`]s to the replicated keyspaces of
//! the node's fjall database, deterministically.
//!
//! **Determinism.** The state at log index N is a function of the committed log alone, so
//! every replica decides the same for every entry. Entry N's reads are checked against the
//! state after entry N−1 *by comparing values* (a point read: the value now equals the value
//! seen; a range read: the xxh3 digest of the range now equals the digest seen). Nothing in
//! memory takes part: not the local log's commit versions, not what a restarted replica would
//! not have. Entries are applied in fjall batches for speed: the pending writes of a batch are
//! an overlay (the newest value per key) that point reads consult before fjall, written as one
//! fjall batch when it is committed; an entry whose checks scan a keyspace with pending writes
//! first commits the pending batch. The result is the same as one batch
//! per entry, whatever the batching (the property test `raft_apply_is_batching_invariant`
//! checks it). A conflict still consumes its index: nothing is written, the answer is
//! [`Outcome::Conflict`].
//!
//! **Durability.** Applies are not fsynced: the raft log is the durable copy. Every batch
//! writes the applied log id with the data, so after a crash the state and its applied id
//! agree and openraft re-applies from there.
//!
//! **Snapshots** ([`snapshot`](crate::raft::snapshot)): building one is O(1) (a fjall view and
//! the applied id read through it). Installing one writes an `installing` marker first, and
//! reopening a node whose marker is set finishes the install from the staged file: a crash in
//! the middle never leaves a half-installed state machine.

use crate::raft::cmd::{Cmd, CmdBody, Outcome, bound_from_wire};
use crate::raft::snapshot::{self, Reader, SnapshotData, View};
use crate::raft::{CellRaft, DATA_PREFIX, SM_KEYSPACE, io_error, read_json};
use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use futures::{FutureExt, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf,
};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type C = CellRaft;

const APPLIED_KEY: &[u8] = b"applied";
const MEMBERSHIP_KEY: &[u8] = b"membership";
const INSTALLING_KEY: &[u8] = b"installing";
/// Entries applied in one blocking batch at most.
const APPLY_BATCH: usize = 1024;
/// Records per fjall batch while installing a snapshot.
const INSTALL_BATCH: usize = 4096;
/// The replicated keyspace of client sessions (without `r.`): key = session id (8 bytes,
/// big-endian), value = a [`SessionRecord`]. Carried in snapshots like any replicated data.
pub(crate) const SESSIONS: &str = "celldb.sessions";
/// A session that commits nothing for this many entries expires (with its answers).
pub(crate) const SESSION_EXPIRY_ENTRIES: u64 = 1_000_000;
/// Answers one session keeps at most. A client that never raises `done_below` (a bug, or a
/// hostile client) would otherwise grow its record, which is rewritten with every applied
/// batch, without bound, and slow every replica down with it. Past the bound the oldest
/// answers are forgotten and `done_below` rises over them, so a late retry of one of those
/// requests is refused, never applied twice. Our client never has more requests of one session
/// in flight (`cluster::client` holds a permit per request), so it meets the bound only when
/// one request stays unanswered while this many later ones complete.
pub(crate) const MAX_SESSION_ANSWERS: usize = 4096;
/// How often (in log indexes) the sessions are scanned for expiry.
const SESSION_SCAN_EVERY: u64 = 4096;

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// What the group remembers of a client session: when it last committed, and the outcome
/// of each request it may still retry (those numbered `done_below` and up).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct SessionRecord {
    last_index: u64,
    done_below: u64,
    answers: BTreeMap<u64, Outcome>,
}

/// The first byte of a session record in its binary form (then bincode). Earlier builds stored
/// records as JSON (first byte `{`), which [`decode_session`] still reads. A record is
/// rewritten for nearly every replicated write (one per client session in each applied
/// batch), so its encoding is on the hot path of every replica.
const SESSION_BINARY: u8 = 1;

// No size limit either way, as with JSON before: a limit on encoding would stop every replica
// at the same entry for good, and decoding reads no more than the record's bytes (bincode
// preallocates cautiously, so a hostile length prefix fails at the end of the input).
fn encode_session(record: &SessionRecord) -> io::Result<Vec<u8>> {
    use bincode::Options as _;
    let mut out = vec![SESSION_BINARY];
    bincode::DefaultOptions::new()
        .serialize_into(&mut out, record)
        .map_err(|e| io_error("encoding a client session", e))?;
    Ok(out)
}

/// Decodes a stored session record, binary or (from earlier builds) JSON.
fn decode_session(bytes: &[u8]) -> Result<SessionRecord, String> {
    use bincode::Options as _;
    match bytes.split_first() {
        Some((&SESSION_BINARY, rest)) => bincode::DefaultOptions::new()
            .deserialize(rest)
            .map_err(|e| e.to_string()),
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!("unknown session record form {other}")),
        None => Err("an empty session record".into()),
    }
}

/// The state machine of one node. Cheap to clone (clones share it).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

struct Inner {
    node: u64,
    db: fjall::Database,
    sm: Keyspace,
    staging: PathBuf,
    /// Replicated keyspaces by name (without the `r.` prefix).
    data: Mutex<BTreeMap<String, Keyspace>>,
    /// The applied id and membership; held for a whole apply batch or install, so a snapshot
    /// is never taken between a batch's data and its applied id.
    state: Mutex<Applied>,
    /// Test hook: abort an install after this many record batches (0: never).
    fail_install_after: AtomicUsize,
    snapshots: AtomicU64,
}

#[derive(Clone, Default)]
struct Applied {
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
}

impl StateMachine {
    /// Opens the state machine of node `node` in `fjall` (the node's celldb database in
    /// `dir`); finishes an install a crash interrupted, and deletes partial transfers.
    pub(crate) fn open(node: u64, fjall: &fjall::Database, dir: &Path) -> io::Result<Self> {
        let sm = fjall
            .keyspace(SM_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(|e| io_error(format!("opening keyspace {SM_KEYSPACE}"), e))?;
        let mut data = BTreeMap::new();
        for name in fjall.list_keyspace_names() {
            let name: &str = name.as_ref();
            if let Some(logical) = name.strip_prefix(DATA_PREFIX) {
                let ks = fjall
                    .keyspace(name, KeyspaceCreateOptions::default)
                    .map_err(|e| io_error(format!("opening keyspace {name}"), e))?;
                data.insert(logical.to_string(), ks);
            }
        }
        let staging = dir.join("raft-snapshot");
        let installing = read_json::<PathBuf>(&sm, INSTALLING_KEY, "state machine")?;
        // Partial transfers, and staged snapshots no install is using (a transfer that
        // finished as the node stopped): the leader sends again what is still needed.
        if let Ok(entries) = std::fs::read_dir(&staging) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let used = installing.as_deref() == Some(entry.path().as_path());
                if (name.starts_with("incoming.") || name.starts_with("staged.")) && !used {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let applied = Applied {
            applied: read_json::<Option<LogIdOf<C>>>(&sm, APPLIED_KEY, "state machine")?.flatten(),
            membership: read_json(&sm, MEMBERSHIP_KEY, "state machine")?.unwrap_or_default(),
        };
        let machine = Self {
            inner: Arc::new(Inner {
                node,
                db: fjall.clone(),
                sm,
                staging,
                data: Mutex::new(data),
                state: Mutex::new(applied),
                fail_install_after: AtomicUsize::new(0),
                snapshots: AtomicU64::new(0),
            }),
        };
        if let Some(path) = installing {
            tracing::warn!(node, path = %path.display(), "finishing a snapshot install a crash interrupted");
            machine.inner.install_staged(&path)?;
        }
        Ok(machine)
    }

    /// Test hook: the next installs abort (with an error) after `batches` record batches,
    /// leaving the `installing` marker, as a crash would. `0` turns it off.
    #[doc(hidden)]
    pub fn fail_install_after(&self, batches: usize) {
        self.inner
            .fail_install_after
            .store(batches, Ordering::SeqCst);
    }

    /// xxh3 over every replicated `(keyspace, key, value)` in order, and the applied index:
    /// replicas that applied the same log have the same digest.
    ///
    /// # Errors
    /// Storage errors.
    pub fn digest(&self) -> io::Result<(Option<u64>, u64)> {
        let state = self.inner.lock_state();
        let data = self
            .inner
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (name, ks) in &data {
            for guard in ks.iter() {
                let (k, v) = guard
                    .into_inner()
                    .map_err(|e| io_error("reading replicated data", e))?;
                for part in [name.as_bytes(), &k[..], &v[..]] {
                    hasher.update(&(part.len() as u64).to_le_bytes());
                    hasher.update(part);
                }
            }
        }
        Ok((state.applied.as_ref().map(|id| id.index), hasher.digest()))
    }

    /// The value of `key` in replicated keyspace `keyspace` on this node (as applied here).
    ///
    /// # Errors
    /// Storage errors.
    pub fn read(&self, keyspace: &str, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.inner.read(keyspace, key)
    }

    /// The entries of `[start, end)` in `keyspace` as applied here, up to about `max_bytes`
    /// of keys and values (at least one entry); `true` when the range was cut there.
    ///
    /// # Errors
    /// Storage errors.
    pub fn read_range(
        &self,
        keyspace: &str,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        max_bytes: usize,
    ) -> io::Result<(Vec<Entry>, bool)> {
        let Some(ks) = self.inner.keyspace(keyspace) else {
            return Ok((Vec::new(), false));
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for guard in ks.range::<Vec<u8>, _>((start, end)) {
            if bytes >= max_bytes && !out.is_empty() {
                return Ok((out, true));
            }
            let (k, v) = guard
                .into_inner()
                .map_err(|e| io_error(format!("reading replicated keyspace {keyspace}"), e))?;
            bytes += k.len() + v.len() + 16;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok((out, false))
    }

    /// The number of entries of `keyspace` as applied here.
    ///
    /// # Errors
    /// Storage errors.
    pub fn count(&self, keyspace: &str) -> io::Result<u64> {
        match self.inner.keyspace(keyspace) {
            None => Ok(0),
            Some(ks) => ks
                .len()
                .map(|n| n as u64)
                .map_err(|e| io_error(format!("counting replicated keyspace {keyspace}"), e)),
        }
    }

    /// Whether every read check of `cmd` holds in one consistent view of this node's state
    /// (a read-only transaction's validation, after a read barrier). `Err(reason)` inside
    /// for a malformed command.
    ///
    /// # Errors
    /// Storage errors.
    pub fn reads_hold(&self, cmd: &Cmd) -> io::Result<Result<bool, String>> {
        let body = match cmd.decode() {
            Ok(body) => body,
            Err(reason) => return Ok(Err(reason)),
        };
        let snapshot = self.inner.db.snapshot();
        for point in &body.points {
            let now = match self.inner.keyspace(&point.keyspace) {
                None => None,
                Some(ks) => snapshot
                    .get(&ks, &point.key)
                    .map_err(|e| io_error("re-checking a read", e))?
                    .map(|v| v.to_vec()),
            };
            if now != point.seen {
                return Ok(Ok(false));
            }
        }
        for range in &body.ranges {
            let (Some(start), Some(end)) =
                (bound_from_wire(&range.start), bound_from_wire(&range.end))
            else {
                return Ok(Err("invalid range bound".into()));
            };
            let mut digest = crate::log::RangeDigest::default();
            if let Some(ks) = self.inner.keyspace(&range.keyspace) {
                for guard in snapshot.range::<Vec<u8>, _>(&ks, (start, end)) {
                    let (k, v) = guard
                        .into_inner()
                        .map_err(|e| io_error("re-checking a range read", e))?;
                    digest.add(&k, &v);
                }
            }
            if digest.finish() != range.digest {
                return Ok(Ok(false));
            }
        }
        Ok(Ok(true))
    }
}

/// Makes `record` the pending value of session `key` (see [`Pending::sessions`]).
fn stage_session(pending: &mut Pending, key: &[u8], record: SessionRecord) {
    pending
        .overlay
        .remove(&(SESSIONS.to_string(), key.to_vec()));
    pending.touched.insert(SESSIONS.to_string());
    pending.dirty = true;
    pending.sessions.insert(key.to_vec(), record);
}

fn to_json<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| io_error("encoding state machine metadata", e))
}

/// The writes of a batch being filled: the newest value of each key, written to fjall as one
/// batch (see the module docs).
struct Pending {
    /// Ordered, so the batch is filled in key order (fjall inserts sorted runs faster).
    overlay: BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>,
    /// Client session records this batch changed, decoded: entries of one session in a batch
    /// update one record, encoded once when the batch is committed (after the overlay, so
    /// these win over a pending value of the same key).
    sessions: HashMap<Vec<u8>, SessionRecord>,
    touched: HashSet<String>,
    dirty: bool,
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keyspace(&self, name: &str) -> Option<Keyspace> {
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn keyspace_for_write(&self, name: &str) -> io::Result<Keyspace> {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ks) = data.get(name) {
            return Ok(ks.clone());
        }
        let full = format!("{DATA_PREFIX}{name}");
        let ks = self
            .db
            .keyspace(&full, KeyspaceCreateOptions::default)
            .map_err(|e| io_error(format!("creating keyspace {full}"), e))?;
        data.insert(name.to_string(), ks.clone());
        Ok(ks)
    }

    fn read(&self, keyspace: &str, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.keyspace(keyspace) {
            None => Ok(None),
            Some(ks) => Ok(ks
                .get(key)
                .map_err(|e| io_error(format!("reading replicated keyspace {keyspace}"), e))?
                .map(|v| v.to_vec())),
        }
    }

    /// `key` of `keyspace` as the entries before this one left it: the batch's pending
    /// writes first.
    fn read_pending(
        &self,
        pending: &Pending,
        keyspace: &str,
        key: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        if keyspace == SESSIONS
            && let Some(record) = pending.sessions.get(key)
        {
            return encode_session(record).map(Some);
        }
        match pending.overlay.get(&(keyspace.to_string(), key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => self.read(keyspace, key),
        }
    }

    fn new_pending(&self) -> Pending {
        Pending {
            overlay: BTreeMap::new(),
            sessions: HashMap::new(),
            touched: HashSet::new(),
            dirty: false,
        }
    }

    /// Commits `pending` with the applied id and membership of `state`; starts a new one.
    fn flush(&self, pending: &mut Pending, state: &Applied) -> io::Result<()> {
        let mut fresh = self.new_pending();
        std::mem::swap(pending, &mut fresh);
        let mut batch = self.db.batch().durability(None);
        // One write per key: the overlay holds the newest value of each.
        for ((name, key), value) in fresh.overlay {
            let ks = self.keyspace_for_write(&name)?;
            match value {
                Some(v) => batch.insert(&ks, key, v),
                None => batch.remove(&ks, key),
            }
        }
        if !fresh.sessions.is_empty() {
            let ks = self.keyspace_for_write(SESSIONS)?;
            for (key, record) in fresh.sessions {
                batch.insert(&ks, key, encode_session(&record)?);
            }
        }
        batch.insert(&self.sm, APPLIED_KEY, to_json(&state.applied)?);
        batch.insert(&self.sm, MEMBERSHIP_KEY, to_json(&state.membership)?);
        batch
            .commit()
            .map_err(|e| io_error("writing applied entries", e))
    }

    /// Applies entries in order; returns one outcome per entry.
    fn apply_batch(&self, entries: Vec<EntryOf<C>>) -> io::Result<Vec<Outcome>> {
        let mut state = self.lock_state();
        let mut pending = self.new_pending();
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.log_id.index;
            let outcome = match &entry.payload {
                EntryPayload::Blank => Outcome::Committed { index },
                EntryPayload::Membership(m) => {
                    state.membership =
                        openraft::StoredMembership::new(Some(entry.log_id), m.clone());
                    Outcome::Committed { index }
                }
                EntryPayload::Normal(cmd) => self.apply_cmd(&mut pending, &state, cmd, index)?,
            };
            state.applied = Some(entry.log_id);
            pending.dirty = true;
            outcomes.push(outcome);
        }
        if pending.dirty {
            self.flush(&mut pending, &state)?;
        }
        Ok(outcomes)
    }

    fn apply_cmd(
        &self,
        pending: &mut Pending,
        state: &Applied,
        cmd: &Cmd,
        index: u64,
    ) -> io::Result<Outcome> {
        let body: CmdBody = match cmd.decode() {
            Ok(body) => body,
            Err(reason) => return Ok(Outcome::Rejected(reason)),
        };
        if index.is_multiple_of(SESSION_SCAN_EVERY) {
            self.expire_sessions(pending, state, index)?;
        }
        if body.open_session {
            let key = index.to_be_bytes();
            let record = SessionRecord {
                last_index: index,
                done_below: 0,
                answers: BTreeMap::new(),
            };
            stage_session(pending, &key, record);
            return Ok(Outcome::Committed { index });
        }
        if body.session == 0 {
            return self.apply_body(pending, state, body, index);
        }
        // The record as of the previous entry (pending or committed). `apply_body` may commit
        // the pending batch, with this record in it, before this entry stages anything.
        let key = body.session.to_be_bytes();
        let session = body.session;
        // The record stays in the batch while this entry is decided: `apply_body` may commit
        // the batch, which must hold the record as the previous entries left it.
        if !self.load_session(pending, &key, session)? {
            return Ok(Outcome::SessionExpired);
        }
        let Some(record) = pending.sessions.get(&key[..]) else {
            return Err(io_error(
                "applying a request",
                "its session record vanished",
            ));
        };
        if let Some(answer) = record.answers.get(&body.seq) {
            return Ok(answer.clone());
        }
        if body.seq < record.done_below {
            return Ok(Outcome::Rejected(format!(
                "request {} of session {session} is older than the answers the session keeps \
                 (from request {} on): not applied by this attempt; whether an earlier attempt \
                 was applied is not known here",
                body.seq, record.done_below
            )));
        }
        let (seq, done_below) = (body.seq, body.done_below);
        let outcome = self.apply_body(pending, state, body, index)?;
        // After a commit of the batch the record is read back (committed, unchanged).
        self.load_session(pending, &key, session)?;
        let Some(record) = pending.sessions.get_mut(&key[..]) else {
            return Err(io_error(
                "applying a request",
                "its session record vanished",
            ));
        };
        record.done_below = record.done_below.max(done_below);
        // The answers are ordered: forgetting those below the floor pops from the front
        // (usually one), where a `retain` would visit all of them for every entry.
        let floor = record.done_below;
        while record
            .answers
            .first_key_value()
            .is_some_and(|(oldest, _)| *oldest < floor)
        {
            record.answers.pop_first();
        }
        record.answers.insert(seq, outcome.clone());
        while record.answers.len() > MAX_SESSION_ANSWERS {
            let Some((oldest, _)) = record.answers.pop_first() else {
                break;
            };
            record.done_below = record.done_below.max(oldest.saturating_add(1));
        }
        record.last_index = index;
        Ok(outcome)
    }

    /// Puts session `key`'s record into the batch's decoded records unless it is there;
    /// false when the session does not exist (never opened, or expired).
    fn load_session(&self, pending: &mut Pending, key: &[u8], session: u64) -> io::Result<bool> {
        if pending.sessions.contains_key(key) {
            return Ok(true);
        }
        let Some(bytes) = self.read_pending(pending, SESSIONS, key)? else {
            return Ok(false);
        };
        let record = decode_session(&bytes).map_err(|_| {
            io_error(
                format!("decoding client session {session}"),
                "not a session record",
            )
        })?;
        stage_session(pending, key, record);
        Ok(true)
    }

    /// Stages one write of the entry being applied.
    fn stage(
        &self,
        pending: &mut Pending,
        name: &str,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> io::Result<()> {
        pending.touched.insert(name.to_string());
        pending
            .overlay
            .insert((name.to_string(), key.to_vec()), value);
        Ok(())
    }

    /// Forgets the sessions that committed nothing in the last [`SESSION_EXPIRY_ENTRIES`]
    /// entries (a function of the log: every replica expires the same sessions at the same
    /// index).
    fn expire_sessions(
        &self,
        pending: &mut Pending,
        state: &Applied,
        index: u64,
    ) -> io::Result<()> {
        let Some(ks) = self.keyspace(SESSIONS) else {
            return Ok(());
        };
        if pending.dirty {
            self.flush(pending, state)?;
        }
        let mut expired = Vec::new();
        for guard in ks.iter() {
            let (k, v) = guard
                .into_inner()
                .map_err(|e| io_error("reading client sessions", e))?;
            let last = decode_session(&v).map(|r| r.last_index).unwrap_or(0);
            if last.saturating_add(SESSION_EXPIRY_ENTRIES) < index {
                expired.push(k.to_vec());
            }
        }
        for key in expired {
            self.stage(pending, SESSIONS, &key, None)?;
        }
        Ok(())
    }

    /// Checks `body`'s reads and stages its writes (or nothing, on a conflict).
    fn apply_body(
        &self,
        pending: &mut Pending,
        state: &Applied,
        body: CmdBody,
        index: u64,
    ) -> io::Result<Outcome> {
        // Last write wins within one write-set (a fjall batch must not hold one key twice).
        let mut writes: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut seen_keys: HashMap<(String, Vec<u8>), usize> = HashMap::new();
        for w in body.writes {
            let slot = (w.keyspace.clone(), w.key.clone());
            match seen_keys.get(&slot) {
                Some(&i) => writes[i].2 = w.value,
                None => {
                    seen_keys.insert(slot, writes.len());
                    writes.push((w.keyspace, w.key, w.value));
                }
            }
        }
        // Range checks scan fjall, which does not see the overlay.
        let must_flush = body
            .ranges
            .iter()
            .any(|r| pending.touched.contains(&r.keyspace));
        if must_flush && pending.dirty {
            self.flush(pending, state)?;
        }
        for point in &body.points {
            let now = self.read_pending(pending, &point.keyspace, &point.key)?;
            if now != point.seen {
                return Ok(Outcome::Conflict);
            }
        }
        for range in &body.ranges {
            let (Some(start), Some(end)) =
                (bound_from_wire(&range.start), bound_from_wire(&range.end))
            else {
                return Ok(Outcome::Rejected("invalid range bound".into()));
            };
            let digest = match self.keyspace(&range.keyspace) {
                None => snapshot::range_digest(std::iter::empty()),
                Some(ks) => {
                    let mut digest = crate::log::RangeDigest::default();
                    for guard in ks.range::<Vec<u8>, _>((start, end)) {
                        let (k, v) = guard
                            .into_inner()
                            .map_err(|e| io_error("re-checking a range read", e))?;
                        digest.add(&k, &v);
                    }
                    digest.finish()
                }
            };
            if digest != range.digest {
                return Ok(Outcome::Conflict);
            }
        }
        for (name, key, value) in writes {
            self.stage(pending, &name, &key, value)?;
        }
        Ok(Outcome::Committed { index })
    }

    /// A view of the replicated state and the meta that describes it (the same cut).
    fn view(&self) -> io::Result<(SnapshotMetaOf<C>, View)> {
        let _state = self.lock_state();
        let snap = self.db.snapshot();
        let applied: Option<LogIdOf<C>> = match snap
            .get(&self.sm, APPLIED_KEY)
            .map_err(|e| io_error("reading the applied id", e))?
        {
            Some(bytes) => serde_json::from_slice::<Option<LogIdOf<C>>>(&bytes)
                .map_err(|e| io_error("decoding the applied id", e))?,
            None => None,
        };
        let membership: StoredMembershipOf<C> = match snap
            .get(&self.sm, MEMBERSHIP_KEY)
            .map_err(|e| io_error("reading the membership", e))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_error("decoding the membership", e))?,
            None => Default::default(),
        };
        let keyspaces = self
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, ks)| (n.clone(), ks.clone()))
            .collect();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: applied,
            last_membership: membership,
        };
        Ok((
            meta,
            View {
                snapshot: snap,
                keyspaces,
            },
        ))
    }

    /// Replaces the replicated state with the staged snapshot at `path`, crash-safely: the
    /// `installing` marker is durable before anything is cleared, and removed (durably) in
    /// the batch that writes the snapshot's applied id.
    fn install_staged(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock_state();
        let mut reader = Reader::open(path)?;
        self.sm
            .insert(INSTALLING_KEY, to_json(&path.to_path_buf())?)
            .map_err(|e| io_error("writing the install marker", e))?;
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| io_error("fsyncing the install marker", e))?;
        let existing: Vec<Keyspace> = self
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for ks in existing {
            ks.clear()
                .map_err(|e| io_error("clearing a replicated keyspace", e))?;
        }
        let targets: Vec<Keyspace> = reader
            .keyspaces
            .clone()
            .iter()
            .map(|name| self.keyspace_for_write(name))
            .collect::<io::Result<_>>()?;
        let fail_after = self.fail_install_after.load(Ordering::SeqCst);
        let mut batches = 0;
        loop {
            let mut batch = self.db.batch().durability(None);
            let mut records = 0;
            while records < INSTALL_BATCH {
                let Some((ks, key, value)) = reader.next_record()? else {
                    break;
                };
                batch.insert(&targets[ks], key, value);
                records += 1;
            }
            if records == 0 {
                break;
            }
            batch
                .commit()
                .map_err(|e| io_error("loading a snapshot", e))?;
            batches += 1;
            if fail_after != 0 && batches >= fail_after {
                return Err(io::Error::other("test hook: snapshot install interrupted"));
            }
        }
        let meta = reader.meta.clone();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.sm, APPLIED_KEY, to_json(&meta.last_log_id)?);
        batch.insert(&self.sm, MEMBERSHIP_KEY, to_json(&meta.last_membership)?);
        batch.remove(&self.sm, INSTALLING_KEY);
        batch
            .commit()
            .map_err(|e| io_error("finishing a snapshot install", e))?;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership;
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    fn snapshot_id(&self) -> String {
        format!(
            "{}.{}.{}",
            self.node,
            std::process::id(),
            self.snapshots.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Builds snapshots for openraft (a view: O(1)).
#[derive(Debug)]
pub struct SnapshotBuilder(StateMachine);

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotData>, io::Error> {
        let (meta, view) = self.0.inner.view()?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::View(view),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let state = self.inner.lock_state();
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(first) = entries.next().await {
            let mut items = vec![first?];
            while items.len() < APPLY_BATCH {
                match entries.next().now_or_never() {
                    Some(Some(item)) => items.push(item?),
                    _ => break,
                }
            }
            let (batch, responders): (Vec<_>, Vec<_>) = items.into_iter().unzip();
            let inner = self.inner.clone();
            // fjall writes can wait on the journal while another thread fsyncs: off the
            // runtime's threads.
            let outcomes = tokio::task::spawn_blocking(move || inner.apply_batch(batch))
                .await
                .map_err(|e| io_error("the apply task failed", e))??;
            for (responder, outcome) in responders.into_iter().zip(outcomes) {
                if let Some(responder) = responder {
                    responder.send(outcome);
                }
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        Some(SnapshotBuilder(self.clone()))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder(self.clone())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let inner = self.inner.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            let path = match snapshot {
                SnapshotData::Staged(path) => path,
                SnapshotData::View(view) => {
                    snapshot::stage_view(&inner.staging, &inner.snapshot_id(), &meta, view)?
                }
            };
            inner.install_staged(&path)
        })
        .await
        .map_err(|e| io_error("the install task failed", e))?
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, SnapshotData>>, io::Error> {
        let (meta, view) = self.inner.view()?;
        if meta.last_log_id.is_none() {
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta,
            snapshot: SnapshotData::View(view),
        }))
    }
}

impl StateMachine {
    /// Applies entries in one batch, outside openraft (tests of determinism).
    #[cfg(test)]
    pub(crate) fn apply_entries(&self, entries: Vec<EntryOf<C>>) -> io::Result<Vec<Outcome>> {
        self.inner.apply_batch(entries)
    }

    /// A snapshot view and its meta (tests of the stream).
    #[cfg(test)]
    pub(crate) fn view_for_test(&self) -> (SnapshotMetaOf<C>, View) {
        self.inner.view().unwrap()
    }

    /// Installs a staged snapshot file (tests of the stream).
    #[cfg(test)]
    pub(crate) fn install_for_test(&self, path: &Path) -> io::Result<()> {
        self.inner.install_staged(path)
    }

    /// Where received snapshots are staged (`<dir>/raft-snapshot`).
    pub fn staging_dir(&self) -> &Path {
        &self.inner.staging
    }
}

#[cfg(test)]
mod session_record_tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            last_index: 41,
            done_below: 3,
            answers: BTreeMap::from([
                (3, Outcome::Committed { index: 40 }),
                (4, Outcome::Conflict),
                (5, Outcome::Rejected("a \"quoted\" reason\0".into())),
                (6, Outcome::SessionExpired),
            ]),
        }
    }

    fn same(a: &SessionRecord, b: &SessionRecord) -> bool {
        a.last_index == b.last_index && a.done_below == b.done_below && a.answers == b.answers
    }

    #[test]
    fn session_records_round_trip_and_json_records_of_earlier_builds_still_decode() {
        let binary = encode_session(&record()).unwrap();
        assert_eq!(binary[0], SESSION_BINARY);
        assert!(same(&decode_session(&binary).unwrap(), &record()));
        let json = serde_json::to_vec(&record()).unwrap();
        assert!(same(&decode_session(&json).unwrap(), &record()));
    }

    #[test]
    fn damaged_session_records_are_errors() {
        let binary = encode_session(&record()).unwrap();
        for cut in 0..binary.len() {
            assert!(decode_session(&binary[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_session(b"\x07junk").is_err());
        // A length prefix that claims far more answers than there are bytes.
        let mut huge = vec![SESSION_BINARY, 1, 1];
        huge.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode_session(&huge).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_session_decoder(
            form in proptest::prelude::prop_oneof![proptest::prelude::Just(SESSION_BINARY), proptest::prelude::Just(b'{'), proptest::prelude::any::<u8>()],
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![form];
            bytes.extend_from_slice(&rest);
            let _ = decode_session(&bytes);
        }
    }
}
