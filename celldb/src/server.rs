//! `celldb serve`: one database directory served over the runtime ([`CellDb`]).
//!
//! A [`Server`] owns a local [`Db`] and implements the protocol of [`crate::wire`]. It knows
//! tables by metadata only and moves bytes: a transaction is a fjall snapshot plus the read
//! checks of what it served from it; a commit turns the client's write-set into a
//! [`WriteSet`] with those read checks and submits it to the database's [`LocalLog`] — the same
//! validation and group commit as embedded mode, and acknowledged = fsynced on the server.
//!
//! Sessions tie transactions to a connection: a session belongs to the connection that opened
//! it (the runtime's call context names it), and only calls on that connection may use the
//! session and its transactions; each client holds one `hold` call open for its session's
//! lifetime, and when the connection closes its sessions end, their transactions are aborted
//! and their snapshots freed. Session and transaction ids come from the OS's CSPRNG. Nothing
//! from the network is trusted: unknown ids, bad keys and bad table names are refused
//! ([`WireError::BadRequest`], [`WireError::UnknownSession`], …), and [`Strict`] refuses a
//! payload that is not exactly its method's archive.
//!
//! What a client can make the server hold is bounded ([`ServerConfig`]): sessions per
//! connection and per server, open transactions per session and per server (each pins a
//! snapshot), read-check bytes per session and per server, tables, indexes per table, the
//! size of a table's metadata, and the bytes of one range reply — a larger range comes in
//! pages read from the same snapshot, and the pages a client read are validated as one range
//! at commit. The records clients write are not bounded (docs/celldb.md lists every bound).
//!
//! [`LocalLog`]: crate::LocalLog

use crate::db::Db;
use crate::error::Error;
use crate::local::{Local, Opened};
use crate::log::{CommitLog, RangeDigest, ReadCheck, Write, WriteSet};
use crate::schema::{LAYOUT_VERSION, same_schema};
use crate::table::Durability;
use crate::wire::{
    At, CellDb, Commit, Mismatch, OpenTable, PointReply, RangeReply, ServerStats, TableIds,
    WireBound, WireError,
};
use fjall::{Keyspace, Readable, Slice};
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The longest key fjall accepts.
const MAX_KEY: usize = u16::MAX as usize;

/// What a range reply counts per entry beyond its key and value bytes (the encoding's lengths
/// and padding), so that many tiny entries also stay under the page size.
const ENTRY_OVERHEAD: usize = 16;

/// The bounds of a [`Server`]. `celldb serve` sets them from its flags; the defaults are
/// [`ServerConfig::default`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Bytes of keys and values one range reply carries at most (default 4 MiB, a quarter of
    /// the runtime's 16 MiB frame); a larger range is sent in pages. One entry is always sent,
    /// whatever its size. `celldb serve --page-bytes`.
    pub page_bytes: usize,
    /// Sessions (client connections) the server holds at most (default 1024); one more is
    /// refused with [`WireError::Limit`]. `celldb serve --max-sessions`.
    pub max_sessions: usize,
    /// Transactions one session holds open at most (default 256); the read that would begin
    /// one more is refused with [`WireError::Limit`]. `celldb serve --max-tx-per-session`.
    pub max_tx_per_session: usize,
    /// Sessions one connection may open (default 8; a client handle uses one at a time).
    /// `celldb serve --max-sessions-per-connection`.
    pub max_sessions_per_connection: usize,
    /// Sessions all TCP connections from one IP address may hold together (default 256, a
    /// quarter of [`ServerConfig::max_sessions`]), so that one host opening many connections
    /// cannot take every session. Not applied on a Unix socket, where every peer is the
    /// server's own uid. `celldb serve --max-sessions-per-peer`.
    pub max_sessions_per_peer: usize,
    /// Transactions the whole server holds open at most, whatever the session (default 4096;
    /// each pins a fjall snapshot). `celldb serve --max-transactions`.
    pub max_transactions: usize,
    /// Bytes of read checks the transactions of one session hold at most (default 16 MiB, so
    /// that one connection's sessions stay under half of [`ServerConfig::max_read_bytes`]):
    /// the keys they read and the values they saw, which their commits re-check. The read past
    /// it is refused. `celldb serve --max-session-read-bytes`.
    pub max_session_read_bytes: usize,
    /// Bytes of read checks all transactions together hold at most (default 256 MiB).
    /// `celldb serve --max-read-bytes`.
    pub max_read_bytes: usize,
    /// Tables the database may hold (default 256): `open_table` of one more is refused. Each
    /// table is a keyspace plus one per index on disk. `celldb serve --max-tables`.
    pub max_tables: usize,
    /// Indexes one table may declare (default 32). `celldb serve --max-indexes-per-table`.
    pub max_indexes_per_table: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            page_bytes: 4 << 20,
            max_sessions: 1024,
            max_tx_per_session: 256,
            max_sessions_per_connection: 8,
            max_sessions_per_peer: 256,
            max_transactions: 4096,
            max_session_read_bytes: 16 << 20,
            max_read_bytes: 256 << 20,
            max_tables: 256,
            max_indexes_per_table: 32,
        }
    }
}

/// The largest table metadata `open_table` accepts (its encoded [`crate::TableMeta`]: type
/// description, names, index names), so that the tables a client may create hold a bounded
/// number of bytes in the metadata keyspace.
pub const MAX_META_BYTES: usize = 64 * 1024;

/// Serves one local database. Wrap it in `CellDbServer` to bind it
/// (`Membrane::bind(endpoint, CellDbServer(server), config)`); `celldb serve` does that.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

struct State {
    db: Db,
    config: ServerConfig,
    /// Keyspaces clients may read and write: those of the tables they opened, and the
    /// `auto_inc` counters. Never the metadata keyspace.
    keyspaces: RwLock<HashMap<u64, Keyspace>>,
    /// Open transactions.
    txs: Mutex<Txs>,
    /// Live sessions by id.
    sessions: Mutex<HashMap<u64, Session>>,
    /// Bytes of read checks held by all open transactions (each [`ServerTx`] gives its share
    /// back when it is dropped).
    read_bytes: Arc<AtomicUsize>,
    /// Held while `open_table` checks the table bound and creates a table.
    creating: Mutex<()>,
    /// Connections that opened a session (their close ends their sessions).
    connections: Mutex<HashSet<u64>>,
    stop: tokio::sync::watch::Sender<bool>,
    bad_requests: AtomicU64,
}

type SharedTx = Arc<Mutex<ServerTx>>;

/// A live session.
struct Session {
    /// When it was opened, while its `hold` call has not arrived yet (`None` once held;
    /// [`Server::abort_idle`] drops sessions never held).
    unheld_since: Option<std::time::Instant>,
    /// Bytes of read checks its transactions hold (each gives its share back on drop).
    read_bytes: Arc<AtomicUsize>,
    /// The connection that opened it (`None` outside a served call): only calls on that
    /// connection may use the session and its transactions.
    connection: Option<u64>,
    /// The TCP peer's IP address (`None` on a Unix socket, where every peer is the server's
    /// own uid), for the bound per peer.
    peer_ip: Option<std::net::IpAddr>,
}

/// Open transactions by id, with the count per session that bounds them.
#[derive(Default)]
struct Txs {
    /// id → (owning session, state).
    by_id: HashMap<u64, (u64, SharedTx)>,
    /// session → how many of `by_id` it owns (no entry: none).
    per_session: HashMap<u64, usize>,
}

impl Txs {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn get(&self, id: u64) -> Option<&(u64, SharedTx)> {
        self.by_id.get(&id)
    }

    fn of_session(&self, session: u64) -> usize {
        self.per_session.get(&session).copied().unwrap_or(0)
    }

    fn insert(&mut self, id: u64, session: u64, tx: SharedTx) {
        if let Some((old, _)) = self.by_id.insert(id, (session, tx)) {
            self.uncount(old);
        }
        *self.per_session.entry(session).or_insert(0) += 1;
    }

    /// Removes transaction `id` if `session` owns it.
    fn remove_owned(&mut self, id: u64, session: u64) -> Option<SharedTx> {
        match self.by_id.get(&id) {
            Some((owner, _)) if *owner == session => {
                let (_, tx) = self.by_id.remove(&id)?;
                self.uncount(session);
                Some(tx)
            }
            _ => None,
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(u64, &SharedTx) -> bool) {
        let mut removed = Vec::new();
        self.by_id.retain(|_, (session, tx)| {
            let kept = keep(*session, tx);
            if !kept {
                removed.push(*session);
            }
            kept
        });
        for session in removed {
            self.uncount(session);
        }
    }

    fn uncount(&mut self, session: u64) {
        if let Some(n) = self.per_session.get_mut(&session) {
            *n -= 1;
            if *n == 0 {
                self.per_session.remove(&session);
            }
        }
    }
}

/// A transaction held for a client: its snapshot and what it read from it.
struct ServerTx {
    snapshot: fjall::Snapshot,
    version: u64,
    reads: Vec<ReadCheck>,
    /// A range read cut at the page size, whose next page the client may ask for.
    scan: Option<Scan>,
    /// Last read served, for [`Server::abort_idle`].
    touched: std::time::Instant,
    /// Bytes of `reads` (and of the paged read in progress), counted in `State::read_bytes`.
    held: usize,
    /// The server's count of read-check bytes, given `held` back on drop.
    total: Arc<AtomicUsize>,
    /// The session's count, likewise.
    session_total: Arc<AtomicUsize>,
}

impl Drop for ServerTx {
    fn drop(&mut self) {
        self.total.fetch_sub(self.held, Ordering::Relaxed);
        self.session_total.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// A paged range read in progress: the read check of the pages sent so far, still growing.
struct Scan {
    keyspace: Keyspace,
    /// The start of the first page.
    start: Bound<Vec<u8>>,
    /// The end the client asked for.
    end: Bound<Vec<u8>>,
    /// The last key sent: the next page starts after it.
    last: Vec<u8>,
    /// Digest of every entry sent, in order.
    digest: RangeDigest,
}

impl ServerTx {
    /// Records the read check of a paged range read the client stopped asking pages of: what
    /// it saw is the range from the first start up to the last key sent.
    fn close_scan(&mut self) {
        if let Some(scan) = self.scan.take() {
            self.reads.push(ReadCheck::Range {
                keyspace: scan.keyspace,
                start: scan.start,
                end: Bound::Included(scan.last),
                digest: scan.digest.finish(),
            });
        }
    }
}

impl Server {
    /// A server for `db`, which must be a local database ([`Db::open`]), with the default
    /// bounds.
    ///
    /// # Errors
    /// [`Error::Remote`] when `db` is itself a handle on a server.
    pub fn new(db: Db) -> crate::Result<Self> {
        Self::with_config(db, ServerConfig::default())
    }

    /// A server for `db` with explicit bounds (a zero bound counts as one).
    ///
    /// # Errors
    /// [`Error::Remote`] when `db` is itself a handle on a server.
    pub fn with_config(db: Db, config: ServerConfig) -> crate::Result<Self> {
        let config = ServerConfig {
            page_bytes: config.page_bytes.max(1),
            max_sessions: config.max_sessions.max(1),
            max_tx_per_session: config.max_tx_per_session.max(1),
            max_sessions_per_connection: config.max_sessions_per_connection.max(1),
            max_sessions_per_peer: config.max_sessions_per_peer.max(1),
            max_transactions: config.max_transactions.max(1),
            max_session_read_bytes: config.max_session_read_bytes.max(1),
            max_read_bytes: config.max_read_bytes.max(1),
            max_tables: config.max_tables.max(1),
            max_indexes_per_table: config.max_indexes_per_table,
        };
        let seq = db
            .local()
            .ok_or_else(|| Error::Remote("a celldb server serves a local database".into()))?
            .seq
            .clone();
        let mut keyspaces = HashMap::new();
        keyspaces.insert(seq.id(), seq);
        // Every table already stored, so that clients that outlive a server restart can go on
        // with the keyspace ids they hold (fjall keeps ids across restarts). Metadata that
        // does not decode is skipped here: opening that table reports it.
        if let Some(local) = db.local() {
            for guard in local.meta.iter() {
                let Ok((name, bytes)) = guard.into_inner() else {
                    continue;
                };
                let name = String::from_utf8_lossy(&name).into_owned();
                let Ok(meta) = cell_sdk::codec::from_bytes::<crate::TableMeta>(&bytes) else {
                    continue;
                };
                if !valid_name(&name) || meta.indexes.iter().any(|(n, _)| !valid_name(n)) {
                    continue;
                }
                let names = std::iter::once(crate::schema::records_keyspace(&name)).chain(
                    meta.indexes
                        .iter()
                        .map(|(index, _)| crate::schema::index_keyspace(&name, index)),
                );
                for ks_name in names {
                    let ks = local
                        .fjall
                        .keyspace(&ks_name, fjall::KeyspaceCreateOptions::default)?;
                    keyspaces.insert(ks.id(), ks);
                }
            }
        }
        Ok(Self {
            state: Arc::new(State {
                db,
                config,
                keyspaces: RwLock::new(keyspaces),
                txs: Mutex::new(Txs::default()),
                sessions: Mutex::new(HashMap::new()),
                read_bytes: Arc::new(AtomicUsize::new(0)),
                creating: Mutex::new(()),
                connections: Mutex::new(HashSet::new()),
                stop: tokio::sync::watch::channel(false).0,
                bad_requests: AtomicU64::new(0),
            }),
        })
    }

    /// Ends every `hold` call (call it when the server starts shutting down, so that the
    /// connections can drain instead of waiting for the drain timeout).
    pub fn stop(&self) {
        self.state.stop.send_replace(true);
    }

    /// The counters `stats` returns.
    pub fn stats(&self) -> ServerStats {
        let log = self.state.db.stats();
        ServerStats {
            open_transactions: lock(&self.state.txs).len() as u64,
            sessions: lock(&self.state.sessions).len() as u64,
            committed: log.committed.load(Ordering::Relaxed),
            conflicts: log.conflicts.load(Ordering::Relaxed),
            syncs: log.syncs.load(Ordering::Relaxed),
            bad_requests: self.state.bad_requests.load(Ordering::Relaxed),
        }
    }

    /// Aborts every transaction that served no read for `idle` (a client that is connected
    /// but stuck would otherwise hold its snapshot, and the versions it pins, until it
    /// disconnects); returns how many. Also ends the sessions opened `idle` ago whose `hold`
    /// call never came (a session without one would never end, and would count against
    /// [`ServerConfig::max_sessions`] forever), with their transactions.
    /// `celldb serve --tx-timeout` runs it periodically.
    pub fn abort_idle(&self, idle: std::time::Duration) -> usize {
        let now = std::time::Instant::now();
        // Sessions before transactions, the order `tx` takes them in.
        let mut sessions = lock(&self.state.sessions);
        let mut never_held = HashSet::new();
        sessions.retain(|id, session| match session.unheld_since {
            Some(at) if now.duration_since(at) >= idle => {
                never_held.insert(*id);
                false
            }
            _ => true,
        });
        let mut txs = lock(&self.state.txs);
        drop(sessions);
        let before = txs.len();
        // A transaction serving a read right now is locked, hence not idle.
        txs.retain(|session, tx| {
            !never_held.contains(&session)
                && match tx.try_lock() {
                    Ok(tx) => now.duration_since(tx.touched) < idle,
                    Err(_) => true,
                }
        });
        before - txs.len()
    }

    fn local(&self) -> &Local {
        // `new` checked it.
        self.state
            .db
            .local()
            .unwrap_or_else(|| unreachable!("Server::new accepts local databases only"))
    }

    fn bad(&self, reason: impl Into<String>) -> WireError {
        self.state.bad_requests.fetch_add(1, Ordering::Relaxed);
        WireError::BadRequest(reason.into())
    }

    fn keyspace(&self, id: u64) -> Result<Keyspace, WireError> {
        let found = self
            .state
            .keyspaces
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        found.ok_or_else(|| self.bad(format!("unknown keyspace id {id}; open its table first")))
    }

    fn check_key(&self, key: &[u8]) -> Result<(), WireError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(self.bad(format!(
                "keys are 1 to {MAX_KEY} bytes, this one has {}",
                key.len()
            )));
        }
        Ok(())
    }

    /// The transaction `at` names, or a new one of its session when `at.tx` is 0.
    fn tx(&self, at: &At) -> Result<(u64, SharedTx), WireError> {
        if at.tx != 0 {
            // The session must be this connection's; then the transaction that session's.
            if self.owned(at.session).is_err() {
                return Err(WireError::UnknownTransaction);
            }
            return match lock(&self.state.txs).get(at.tx) {
                Some((session, tx)) if *session == at.session => Ok((at.tx, tx.clone())),
                _ => Err(WireError::UnknownTransaction),
            };
        }
        // Held until the transaction is registered: a session closing meanwhile then sees it
        // (its guard takes this lock first) and aborts it too.
        let sessions = lock(&self.state.sessions);
        let Some(session) = sessions
            .get(&at.session)
            .filter(|s| s.connection == connection())
        else {
            return Err(WireError::UnknownSession);
        };
        let session_bytes = session.read_bytes.clone();
        if lock(&self.state.txs).of_session(at.session) >= self.state.config.max_tx_per_session {
            return Err(WireError::Limit(format!(
                "this session holds {} open transactions, the server's maximum (`celldb serve \
                 --max-tx-per-session`): commit or drop some before beginning another",
                self.state.config.max_tx_per_session
            )));
        }
        let mut txs = lock(&self.state.txs);
        if txs.len() >= self.state.config.max_transactions {
            return Err(WireError::Limit(format!(
                "the server holds {} open transactions, its maximum (`celldb serve \
                 --max-transactions`): retry when others have ended",
                self.state.config.max_transactions
            )));
        }
        let local = self.local();
        // As in embedded mode: the version is read before the snapshot is taken, so a commit
        // in between makes the transaction look older than its snapshot (validated, safe).
        let version = local.log.version();
        let snapshot = local.fjall.snapshot();
        let id = fresh_id(|id| txs.get(id).is_some())?;
        let tx = Arc::new(Mutex::new(ServerTx {
            snapshot,
            version,
            reads: Vec::new(),
            scan: None,
            touched: std::time::Instant::now(),
            held: 0,
            total: self.state.read_bytes.clone(),
            session_total: session_bytes,
        }));
        txs.insert(id, at.session, tx.clone());
        drop(txs);
        drop(sessions);
        Ok((id, tx))
    }
}

impl Server {
    /// Counts `bytes` more of read checks held by `tx`, or refuses the read that would hold
    /// them past the per-transaction or the server-wide bound.
    fn charge(&self, tx: &mut ServerTx, bytes: usize) -> Result<(), WireError> {
        let config = &self.state.config;
        let before = tx.session_total.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > config.max_session_read_bytes {
            tx.session_total.fetch_sub(bytes, Ordering::Relaxed);
            return Err(WireError::Limit(format!(
                "this session's transactions hold {before} bytes of read checks, the server's \
                 maximum per session is {} (`celldb serve --max-session-read-bytes`): read \
                 less in one transaction, or end some",
                config.max_session_read_bytes
            )));
        }
        let before = self.state.read_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > config.max_read_bytes {
            self.state.read_bytes.fetch_sub(bytes, Ordering::Relaxed);
            tx.session_total.fetch_sub(bytes, Ordering::Relaxed);
            return Err(WireError::Limit(format!(
                "the server's open transactions hold {before} bytes of read checks, its maximum \
                 is {} (`celldb serve --max-read-bytes`): retry when others have ended",
                config.max_read_bytes
            )));
        }
        tx.held += bytes;
        Ok(())
    }
}

/// A session or transaction id from the OS's CSPRNG: unguessable (a client cannot use another
/// connection's ids by counting), never 0 (which means "none" in the protocol), and not one in
/// use (`taken`).
fn fresh_id(taken: impl Fn(u64) -> bool) -> Result<u64, WireError> {
    loop {
        let id = getrandom::u64()
            .map_err(|e| WireError::Storage(format!("no random numbers from the OS: {e}")))?;
        if id != 0 && !taken(id) {
            return Ok(id);
        }
    }
}

/// The connection of the call being served (the runtime's call context).
fn connection() -> Option<u64> {
    cell_sdk::CallContext::with_current(|ctx| ctx.map(|c| c.connection().id().get()))
}

impl Server {
    /// `Ok` when `session` is live and was opened on this call's connection. Another
    /// connection's session is unknown to this one (it is not told that it exists).
    fn owned(&self, session: u64) -> Result<(), WireError> {
        match lock(&self.state.sessions).get(&session) {
            Some(s) if s.connection == connection() => Ok(()),
            _ => Err(WireError::UnknownSession),
        }
    }

    /// Ends every session of connection `id` and aborts their transactions (the connection
    /// closed; its `hold` calls, if any, were dropped too).
    fn close_connection(state: &State, id: u64) {
        let mut sessions = lock(&state.sessions);
        let mut ended = HashSet::new();
        sessions.retain(|sid, s| {
            let keep = s.connection != Some(id);
            if !keep {
                ended.insert(*sid);
            }
            keep
        });
        let mut txs = lock(&state.txs);
        drop(sessions);
        txs.retain(|session, _| !ended.contains(&session));
        lock(&state.connections).remove(&id);
        if !ended.is_empty() {
            tracing::debug!(
                connection = id,
                sessions = ended.len(),
                "celldb: a connection closed; its sessions ended"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn storage(e: impl std::fmt::Display) -> WireError {
    WireError::Storage(e.to_string())
}

/// A table or index name as fjall accepts it in a keyspace name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-#$".contains(&b))
}

/// Removes a session and aborts its transactions when the `hold` call that owns it ends —
/// normally because its connection closed and the runtime dropped the call.
struct SessionGuard {
    state: Arc<State>,
    session: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        lock(&self.state.sessions).remove(&self.session);
        let mut txs = lock(&self.state.txs);
        let before = txs.len();
        txs.retain(|session, _| session != self.session);
        tracing::debug!(
            session = self.session,
            aborted = before - txs.len(),
            "celldb: session closed"
        );
    }
}

impl CellDb for Server {
    async fn open_table(&self, open: OpenTable) -> Result<TableIds, WireError> {
        let OpenTable { table, meta } = open;
        if !valid_name(&table) {
            return Err(self.bad(format!("invalid table name {table:?}")));
        }
        if let Some((name, _)) = meta.indexes.iter().find(|(n, _)| !valid_name(n)) {
            return Err(self.bad(format!("invalid index name {name:?}")));
        }
        let config = &self.state.config;
        if meta.indexes.len() > config.max_indexes_per_table {
            return Err(WireError::Limit(format!(
                "table {table:?} declares {} indexes, the server's maximum is {} (`celldb serve \
                 --max-indexes-per-table`)",
                meta.indexes.len(),
                config.max_indexes_per_table
            )));
        }
        let meta_bytes = cell_sdk::codec::to_bytes(&meta)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if meta_bytes > MAX_META_BYTES {
            return Err(self.bad(format!(
                "the metadata of table {table:?} takes {meta_bytes} bytes, more than the \
                 {MAX_META_BYTES} a server accepts"
            )));
        }
        if meta.layout != LAYOUT_VERSION {
            return Err(self.bad(format!(
                "the client writes layout {}, this server layout {LAYOUT_VERSION}",
                meta.layout
            )));
        }
        let local = self.local();
        // One table creation at a time, so that two cannot both pass the bound.
        let _creating = lock(&self.state.creating);
        if !local.has_table(&table).map_err(to_wire)? {
            let tables = local.table_count().map_err(to_wire)?;
            if tables >= config.max_tables {
                return Err(WireError::Limit(format!(
                    "the database holds {tables} tables, the server's maximum (`celldb serve \
                     --max-tables`); table {table:?} is not created"
                )));
            }
        }
        let (raw, opened) = local.open_raw(&table, &meta).map_err(to_wire)?;
        if let Opened::Differs(stored) = opened {
            debug_assert!(!same_schema(&stored, &meta));
            // A migration decodes records as the previous type: only the client has the
            // types, and it runs migrations against the directory in embedded mode.
            return Err(WireError::SchemaMismatch(Mismatch {
                what: format!(
                    "{} (a celldb server does not migrate tables: open the directory once \
                     with the new type in embedded mode, `Db::open`, while the server is stopped)",
                    crate::migrate::what_changed(&stored, &meta)
                ),
                table,
                stored: format!("{} keyed by {}", stored.describe, stored.key_type),
                current: format!("{} keyed by {}", meta.describe, meta.key_type),
            }));
        }
        let ids = TableIds {
            records: raw.records.id(),
            indexes: raw.indexes.iter().map(Keyspace::id).collect(),
            seq: local.seq.id(),
        };
        let mut keyspaces = self
            .state
            .keyspaces
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keyspaces.insert(raw.records.id(), raw.records);
        for ks in raw.indexes {
            keyspaces.insert(ks.id(), ks);
        }
        Ok(ids)
    }

    async fn open_session(&self) -> Result<u64, WireError> {
        let context = cell_sdk::CallContext::current();
        let conn = context.as_ref().map(|c| c.connection().id().get());
        let peer_ip = context.as_ref().and_then(|c| match c.connection().peer() {
            cell_sdk::Peer::Tcp { addr, .. } => Some(addr.ip()),
            _ => None,
        });
        let mut sessions = lock(&self.state.sessions);
        let config = &self.state.config;
        if let Some(conn) = conn {
            let mine = sessions
                .values()
                .filter(|s| s.connection == Some(conn))
                .count();
            if mine >= config.max_sessions_per_connection {
                return Err(WireError::Limit(format!(
                    "this connection holds {mine} sessions, the server's maximum per connection \
                     (`celldb serve --max-sessions-per-connection`)"
                )));
            }
        }
        if let Some(ip) = peer_ip {
            let theirs = sessions.values().filter(|s| s.peer_ip == Some(ip)).count();
            if theirs >= config.max_sessions_per_peer {
                return Err(WireError::Limit(format!(
                    "the connections from {ip} hold {theirs} sessions, the server's maximum per \
                     peer (`celldb serve --max-sessions-per-peer`)"
                )));
            }
        }
        if sessions.len() >= config.max_sessions {
            return Err(WireError::Limit(format!(
                "the server holds {} sessions, its maximum (`celldb serve --max-sessions`)",
                config.max_sessions
            )));
        }
        // The first session of a connection: end its sessions when it closes, whether or not
        // their `hold` calls ever came.
        if let (Some(conn), Some(context)) = (conn, &context)
            && lock(&self.state.connections).insert(conn)
        {
            let state = Arc::downgrade(&self.state);
            context.connection().on_close(move || {
                if let Some(state) = state.upgrade() {
                    Server::close_connection(&state, conn);
                }
            });
        }
        let id = fresh_id(|id| sessions.contains_key(&id))?;
        sessions.insert(
            id,
            Session {
                unheld_since: Some(std::time::Instant::now()),
                read_bytes: Arc::new(AtomicUsize::new(0)),
                connection: conn,
                peer_ip,
            },
        );
        Ok(id)
    }

    async fn hold(&self, session: u64) -> bool {
        match lock(&self.state.sessions).get_mut(&session) {
            Some(opened) if opened.connection == connection() => opened.unheld_since = None,
            _ => return false,
        }
        let _guard = SessionGuard {
            state: self.state.clone(),
            session,
        };
        let mut stop = self.state.stop.subscribe();
        let _ = stop.wait_for(|s| *s).await;
        true
    }

    async fn point(&self, at: At, key: Vec<u8>) -> Result<PointReply, WireError> {
        self.check_key(&key)?;
        let ks = self.keyspace(at.keyspace)?;
        let (id, tx) = self.tx(&at)?;
        let mut tx = lock(&tx);
        tx.touched = std::time::Instant::now();
        let seen = tx.snapshot.get(&ks, &key).map_err(storage)?;
        let bytes = key.len() + seen.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD;
        self.charge(&mut tx, bytes)?;
        let value = seen.as_ref().map(|v| v.to_vec());
        tx.reads.push(ReadCheck::Point {
            keyspace: ks,
            key: Slice::from(key),
            seen,
        });
        Ok(PointReply { tx: id, value })
    }

    async fn range(
        &self,
        at: At,
        start: WireBound,
        end: WireBound,
    ) -> Result<RangeReply, WireError> {
        let (start, end) = (start.into_bound(), end.into_bound());
        let key_of = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        if let (Some(s), Some(e)) = (key_of(&start), key_of(&end))
            && s > e
        {
            return Err(self.bad("a range whose start is after its end"));
        }
        let ks = self.keyspace(at.keyspace)?;
        let (id, tx) = self.tx(&at)?;
        let mut tx = lock(&tx);
        tx.touched = std::time::Instant::now();
        // The next page of the paged read in progress continues its read check; any other
        // range read ends that one (the client read up to its last key).
        let continues = tx.scan.as_ref().is_some_and(|scan| {
            scan.keyspace.id() == ks.id()
                && end == scan.end
                && matches!(&start, Bound::Excluded(k) if *k == scan.last)
        });
        if !continues {
            // A new read check holds its bounds (and, while paged, its last key: below).
            let bytes = key_of(&start).map_or(0, |k| k.len())
                + key_of(&end).map_or(0, |k| k.len())
                + ENTRY_OVERHEAD;
            self.charge(&mut tx, bytes)?;
        }
        let mut scan = if continues {
            tx.scan.take()
        } else {
            tx.close_scan();
            None
        }
        .unwrap_or_else(|| Scan {
            keyspace: ks.clone(),
            start: start.clone(),
            end: end.clone(),
            last: Vec::new(),
            digest: RangeDigest::default(),
        });
        let page = read_page(
            &tx.snapshot,
            &ks,
            (start, end),
            self.state.config.page_bytes,
            &mut scan.digest,
        );
        let (entries, more) = match page {
            Ok(page) => page,
            Err(e) => {
                // The pages sent before this one were seen, and their read check is gone with
                // `scan`: abort the transaction, so that it cannot commit without it (the
                // client's commit is told it is unknown, a conflict, and the body re-runs).
                drop(tx);
                lock(&self.state.txs).remove_owned(id, at.session);
                return Err(e);
            }
        };
        if more {
            if let Some((last, _)) = entries.last() {
                let grown = last.len().saturating_sub(scan.last.len());
                if let Err(e) = self.charge(&mut tx, grown) {
                    // As for a failed page: the pages sent are not covered any more.
                    drop(tx);
                    lock(&self.state.txs).remove_owned(id, at.session);
                    return Err(e);
                }
                scan.last = last.clone();
            }
            tx.scan = Some(scan);
        } else {
            tx.reads.push(ReadCheck::Range {
                keyspace: scan.keyspace,
                start: scan.start,
                end: scan.end,
                digest: scan.digest.finish(),
            });
        }
        Ok(RangeReply {
            tx: id,
            entries,
            more,
        })
    }

    async fn commit(&self, commit: Commit) -> Result<u64, WireError> {
        let mut writes = Vec::with_capacity(commit.writes.len());
        for w in commit.writes {
            self.check_key(&w.key)?;
            writes.push(Write {
                keyspace: self.keyspace(w.keyspace)?,
                key: Slice::from(w.key),
                value: w.value.map(Slice::from),
            });
        }
        let local = self.local();
        let (version, reads) = if commit.tx == 0 {
            (local.log.version(), Vec::new())
        } else {
            if self.owned(commit.session).is_err() {
                return Err(WireError::UnknownTransaction);
            }
            let taken = lock(&self.state.txs).remove_owned(commit.tx, commit.session);
            let Some(tx) = taken else {
                return Err(WireError::UnknownTransaction);
            };
            let mut tx = lock(&tx);
            tx.close_scan();
            (tx.version, std::mem::take(&mut tx.reads))
        };
        if writes.is_empty() {
            return Ok(local.log.version());
        }
        let ws = WriteSet {
            // The client's write map has distinct keys, but the server does not rely on it.
            distinct_keys: false,
            version,
            reads,
            writes,
            durability: if commit.sync {
                Durability::Sync
            } else {
                Durability::Buffered
            },
        };
        let (send, receive) = tokio::sync::oneshot::channel();
        let ack: crate::log::Ack = Box::new(move |result| {
            let _ = send.send(result);
        });
        // The log hands the write-set to its committer thread (it never fsyncs on a runtime
        // thread), so the connection's other calls — the client's concurrent commits above
        // all — go on and join the next group while this one waits.
        local.log.submit(ws, ack);
        match receive.await {
            Ok(result) => result.map_err(to_wire),
            Err(_) => Err(WireError::Commit("the commit thread has stopped".into())),
        }
    }

    async fn release(&self, session: u64, tx: u64) -> bool {
        if self.owned(session).is_err() {
            return false;
        }
        lock(&self.state.txs).remove_owned(tx, session).is_some()
    }

    async fn latest(&self, keyspace: u64, key: Vec<u8>) -> Result<Option<Vec<u8>>, WireError> {
        self.check_key(&key)?;
        let ks = self.keyspace(keyspace)?;
        Ok(ks.get(&key).map_err(storage)?.map(|v| v.to_vec()))
    }

    async fn count(&self, keyspace: u64) -> Result<u64, WireError> {
        let ks = self.keyspace(keyspace)?;
        Ok(ks.len().map_err(storage)? as u64)
    }

    async fn stats(&self) -> ServerStats {
        Server::stats(self)
    }
}

/// Keys and values, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The next page of a range read from `snapshot`: entries up to `page_bytes` (at least one),
/// each added to `digest`, and whether more follow.
fn read_page(
    snapshot: &fjall::Snapshot,
    ks: &Keyspace,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    page_bytes: usize,
    digest: &mut RangeDigest,
) -> Result<(Entries, bool), WireError> {
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut range = snapshot.range::<Vec<u8>, _>(ks, range);
    for guard in range.by_ref() {
        let (k, v) = guard.into_inner().map_err(storage)?;
        digest.add(&k, &v);
        bytes = bytes.saturating_add(k.len() + v.len() + ENTRY_OVERHEAD);
        entries.push((k.to_vec(), v.to_vec()));
        if bytes >= page_bytes {
            // A page that filled exactly at the range's end is the last one.
            return match range.next() {
                None => Ok((entries, false)),
                Some(guard) => guard.into_inner().map(|_| (entries, true)).map_err(storage),
            };
        }
    }
    Ok((entries, false))
}

/// An embedded-mode error, as the wire carries it.
fn to_wire(e: Error) -> WireError {
    match e {
        Error::Conflict { .. } => WireError::Conflict,
        Error::SchemaMismatch {
            table,
            what,
            stored,
            current,
        } => WireError::SchemaMismatch(Mismatch {
            table,
            what,
            stored,
            current,
        }),
        Error::Corrupt { table, reason } => WireError::Corrupt(table, reason),
        Error::Commit(reason) => WireError::Commit(reason),
        other => WireError::Storage(other.to_string()),
    }
}

/// What `celldb serve` binds: the generated [`CellDbServer`](crate::wire::CellDbServer) around
/// a [`Server`], plus one check the generated decoder does not make. rkyv validates that an
/// archive's root and everything it points to is well formed, but accepts bytes before it, and
/// the generated decoder ignores the payload of a method without arguments entirely: a request
/// is served here only when its payload is *exactly* the archive of the method's arguments
/// (decoded, encoded again, byte for byte the same — an empty payload for `open_session` and
/// `stats`). Anything else is a decode error, which closes the connection like other bad
/// frames.
///
/// Build it with [`Server::service`].
pub struct Strict(crate::wire::CellDbServer<Server>);

impl std::fmt::Debug for Strict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strict").finish_non_exhaustive()
    }
}

impl Server {
    /// This server as the service `celldb serve` binds (see [`Strict`]).
    pub fn service(self) -> Strict {
        Strict(crate::wire::CellDbServer(self))
    }
}

type Inner = crate::wire::CellDbServer<Server>;

impl cell_sdk::Protocol for Strict {
    const NAME: &'static str = <Inner as cell_sdk::Protocol>::NAME;
    const FINGERPRINT: u64 = <Inner as cell_sdk::Protocol>::FINGERPRINT;
    const METHODS: &'static [&'static str] = <Inner as cell_sdk::Protocol>::METHODS;
}

impl cell_sdk::ServiceClient for Strict {
    type Client = crate::wire::CellDbClient;
}

/// `payload` must be exactly what encoding `args` gives.
fn exact<T: cell_sdk::Protein>(
    method: u16,
    args: &T,
    payload: &[u8],
) -> Result<(), cell_sdk::DispatchError> {
    let canonical = cell_sdk::codec::to_bytes(args).map_err(|e| not_exact::<T>(payload, &e))?;
    if canonical[..] == *payload {
        return Ok(());
    }
    let name = <Inner as cell_sdk::Protocol>::METHODS
        .get(usize::from(method))
        .copied()
        .unwrap_or("?");
    Err(not_exact::<T>(
        payload,
        &format!(
            "the payload of `{name}` is not exactly the archive of its arguments ({} bytes, the \
             archive has {})",
            payload.len(),
            canonical.len()
        ),
    ))
}

fn not_exact<T: cell_sdk::Protein>(
    payload: &[u8],
    reason: &dyn std::fmt::Display,
) -> cell_sdk::DispatchError {
    cell_sdk::DispatchError::Decode(cell_sdk::codec::DecodeError {
        type_name: <T as cell_sdk::Fingerprint>::type_name(),
        len: payload.len(),
        reason: reason.to_string(),
    })
}

impl cell_sdk::Service for Strict {
    type Call = <Inner as cell_sdk::Service>::Call;
    type Reply = <Inner as cell_sdk::Service>::Reply;

    fn decode(method: u16, payload: &[u8]) -> Result<Self::Call, cell_sdk::DispatchError> {
        use crate::wire::__CellDbCall as C;
        let call = <Inner as cell_sdk::Service>::decode(method, payload)?;
        // Each arm moves the arguments into the tuple the client encoded, checks, and moves
        // them back: no copy of a (possibly large) write-set.
        Ok(match call {
            C::M0(open) => {
                exact(method, &open, payload)?;
                C::M0(open)
            }
            C::M1() => {
                exact(method, &(), payload)?;
                C::M1()
            }
            C::M2(session) => {
                exact(method, &session, payload)?;
                C::M2(session)
            }
            C::M3(at, key) => {
                let args = (at, key);
                exact(method, &args, payload)?;
                C::M3(args.0, args.1)
            }
            C::M4(at, start, end) => {
                let args = (at, start, end);
                exact(method, &args, payload)?;
                C::M4(args.0, args.1, args.2)
            }
            C::M5(commit) => {
                exact(method, &commit, payload)?;
                C::M5(commit)
            }
            C::M6(session, tx) => {
                let args = (session, tx);
                exact(method, &args, payload)?;
                C::M6(args.0, args.1)
            }
            C::M7(keyspace, key) => {
                let args = (keyspace, key);
                exact(method, &args, payload)?;
                C::M7(args.0, args.1)
            }
            C::M8(keyspace) => {
                exact(method, &keyspace, payload)?;
                C::M8(keyspace)
            }
            C::M9() => {
                exact(method, &(), payload)?;
                C::M9()
            }
        })
    }

    fn call(&self, call: Self::Call) -> impl Future<Output = Self::Reply> + Send + '_ {
        <Inner as cell_sdk::Service>::call(&self.0, call)
    }

    fn encode(
        reply: &Self::Reply,
        out: &mut cell_sdk::codec::Bytes,
    ) -> Result<cell_sdk::Status, cell_sdk::codec::EncodeError> {
        <Inner as cell_sdk::Service>::encode(reply, out)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    /// With the defaults, one connection's sessions cannot reach a server-wide bound alone
    /// (`celldb_hostile::a_hostile_client_cannot_starve_well_behaved_ones` tries it).
    #[test]
    fn one_connection_stays_below_every_server_wide_bound_by_default() {
        let c = ServerConfig::default();
        assert!(c.max_sessions_per_connection < c.max_sessions);
        assert!(c.max_sessions_per_peer < c.max_sessions);
        assert!(c.max_sessions_per_connection * c.max_tx_per_session < c.max_transactions);
        assert!(c.max_sessions_per_connection * c.max_session_read_bytes < c.max_read_bytes);
    }
}
