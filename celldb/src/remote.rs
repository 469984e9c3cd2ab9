//! The client side of remote mode: a [`Db`] whose engine is a `celldb serve` process.
//!
//! [`Db::connect`] parses an address and returns at once; the connection is made on first use
//! (so the default database of `DB::insert` can be remote without an `await` to open it).
//! Transactions run in the caller exactly as in embedded mode — the same `Tx` code encodes
//! records, maintains indexes and checks unique values — but their reads go to a snapshot the
//! server holds for them, and their write-set commits through the server's commit log.
//!
//! A client holds one *session* per connection: an id from `open_session` plus a `hold` call
//! kept open in a background task. The server ties every transaction to a session and aborts
//! them all when the connection closes (it drops the `hold` call).

use crate::db::{Backend, Db, Ks, TableHandle};
use crate::error::{Error, Result};
use crate::schema::meta_of;
use crate::table::{Durability, Table};
use crate::wire::{
    At, CellDbClient, Commit, Mismatch, OpenTable, PointReply, RangeReply, ServerStats, WireBound,
    WireError, WireWrite,
};
use cell_sdk::{CallError, Endpoint, SynapseConfig, TypedClient};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The environment variable naming the celldb server the default database uses.
pub const URL_ENV: &str = "CELLDB_URL";

/// A connection to a celldb server (lazily made).
pub(crate) struct Client {
    endpoint: Endpoint,
    config: SynapseConfig,
    rpc: tokio::sync::OnceCell<CellDbClient>,
    session: Mutex<Option<Arc<Session>>>,
    /// Serializes opening a session (one per connection, not one per racing caller).
    opening: tokio::sync::Mutex<()>,
}

struct Session {
    id: u64,
    alive: AtomicBool,
}

/// Parses a celldb address: `unix:/path.sock`, `unix:///path.sock`, `tcp://host:port`,
/// `cell:name` (the default socket of cell `name`) or a bare absolute socket path.
///
/// # Errors
/// [`Error::Connection`] naming the forms accepted.
pub fn parse_url(url: &str) -> Result<Endpoint> {
    let url = url.trim();
    let endpoint = if let Some(path) = url.strip_prefix("unix://") {
        Endpoint::unix(path)
    } else if let Some(path) = url.strip_prefix("unix:") {
        Endpoint::unix(path)
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        Endpoint::tcp(addr)
    } else if let Some(name) = url.strip_prefix("cell:") {
        Endpoint::for_cell(name)
    } else if url.starts_with('/') {
        Endpoint::unix(url)
    } else {
        return Err(Error::Connection(format!(
            "cannot read the celldb address {url:?}: use unix:/path/to.sock, tcp://host:port \
             (with $CELL_SECRET) or cell:<name>"
        )));
    };
    match &endpoint {
        Endpoint::Unix(p) if p.as_os_str().is_empty() => Err(Error::Connection(format!(
            "the celldb address {url:?} has no socket path"
        ))),
        _ => Ok(endpoint),
    }
}

impl Db {
    /// A handle on the celldb server at `url` (see [`parse_url`] for the forms; TCP takes its
    /// secret from `$CELL_SECRET`). Returns at once: the connection is made on first use, and
    /// remade after the server restarts. Every method works as on a local database; see
    /// `docs/celldb.md` for what differs (isolation, failures).
    ///
    /// # Errors
    /// [`Error::Connection`] when `url` is not an address.
    ///
    /// # Examples
    /// ```
    /// let db = celldb::Db::connect("unix:/tmp/nowhere/celldb.sock").unwrap();
    /// assert!(db.is_remote());
    /// ```
    pub fn connect(url: &str) -> Result<Db> {
        if url.trim().starts_with("raft://") {
            let (addrs, stale) = crate::raft::cluster::client::parse_raft_url(url)?;
            return Ok(Self::connect_cluster(
                addrs,
                stale,
                SynapseConfig::default(),
            ));
        }
        Ok(Self::connect_with(
            parse_url(url)?,
            SynapseConfig::default(),
        ))
    }

    /// A handle on the celldb server at `endpoint`, with explicit client settings (secret,
    /// call deadline, in-flight bound).
    pub fn connect_with(endpoint: Endpoint, config: SynapseConfig) -> Db {
        Db::with_backend(Backend::Remote(Arc::new(Client {
            endpoint,
            config,
            rpc: tokio::sync::OnceCell::new(),
            session: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        })))
    }

    /// The server's counters (open transactions, sessions, commits, conflicts, fsyncs).
    ///
    /// # Errors
    /// [`Error::Remote`] on a local database; [`Error::Connection`].
    pub async fn server_stats(&self) -> Result<ServerStats> {
        match &self.inner.backend {
            Backend::Remote(client) => {
                let rpc = client.rpc().await?;
                rpc.stats().await.map_err(|e| client.call_error(e))
            }
            Backend::Local(_) | Backend::Cluster(_) => Err(Error::Remote(
                "server_stats is for a handle on a celldb server".into(),
            )),
        }
    }
}

impl Client {
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn rpc(&self) -> Result<&CellDbClient> {
        self.rpc
            .get_or_try_init(|| async {
                CellDbClient::connect_with(self.endpoint.clone(), self.config.clone())
                    .await
                    .map_err(|e| Error::Connection(format!("{}: {e}", self.endpoint)))
            })
            .await
    }

    fn call_error(&self, e: CallError<impl Into<WireError> + std::fmt::Debug>) -> Error {
        match e {
            CallError::App(e) => from_wire(e.into()),
            other => Error::Connection(format!("{}: {other}", self.endpoint)),
        }
    }

    fn current_session(&self) -> Option<u64> {
        let session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        session
            .as_ref()
            .filter(|s| s.alive.load(Ordering::Acquire))
            .map(|s| s.id)
    }

    /// The live session, opened (with its `hold` call) if there is none.
    async fn session(&self) -> Result<u64> {
        if let Some(id) = self.current_session() {
            return Ok(id);
        }
        let _opening = self.opening.lock().await;
        if let Some(id) = self.current_session() {
            return Ok(id);
        }
        let rpc = self.rpc().await?;
        let id = rpc.open_session().await.map_err(|e| self.call_error(e))?;
        let session = Arc::new(Session {
            id,
            alive: AtomicBool::new(true),
        });
        // No deadline for the hold: it lasts as long as the connection.
        let holder = CellDbClient::from_synapse(rpc.synapse().with_timeout(None));
        let held = session.clone();
        tokio::spawn(async move {
            let _ = holder.hold(id).await;
            held.alive.store(false, Ordering::Release);
        });
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session);
        Ok(id)
    }

    fn forget_session(&self, id: u64) {
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if session.as_ref().is_some_and(|s| s.id == id) {
            *session = None;
        }
    }

    pub(crate) async fn open_table<T: Table>(&self) -> Result<TableHandle> {
        let rpc = self.rpc().await?;
        let ids = rpc
            .open_table(OpenTable {
                table: T::TABLE.to_string(),
                meta: meta_of::<T>(),
            })
            .await
            .map_err(|e| self.call_error(e))?;
        if ids.indexes.len() != T::INDEXES.len() {
            return Err(Error::Remote(format!(
                "the server opened {} index(es) of `{}`, the type has {}",
                ids.indexes.len(),
                T::TABLE,
                T::INDEXES.len()
            )));
        }
        Ok(TableHandle {
            records: Ks::Remote(ids.records),
            indexes: ids.indexes.into_iter().map(Ks::Remote).collect(),
            seq: Ks::Remote(ids.seq),
            durability: T::DURABILITY.unwrap_or(Durability::Sync),
        })
    }

    /// Runs a read in transaction `tx` (0: begins one, and `tx` becomes its id). A new
    /// transaction whose session died (connection closed) retries once on a new session.
    async fn in_tx<R, F, Fut>(&self, tx: &mut RemoteTx, keyspace: u64, read: F) -> Result<R>
    where
        F: Fn(CellDbClient, At) -> Fut,
        Fut: Future<Output = Result<(u64, R), CallError<WireError>>>,
    {
        let rpc = self.rpc().await?;
        for _ in 0..2 {
            if tx.id == 0 {
                tx.session = self.session().await?;
            }
            let at = At {
                session: tx.session,
                tx: tx.id,
                keyspace,
            };
            match read(rpc.clone(), at).await {
                Ok((id, out)) => {
                    tx.id = id;
                    return Ok(out);
                }
                Err(CallError::App(WireError::UnknownSession)) if tx.id == 0 => {
                    self.forget_session(tx.session);
                }
                Err(e) => return Err(self.call_error(e)),
            }
        }
        Err(Error::Conflict { attempts: 1 })
    }

    pub(crate) async fn point(
        &self,
        tx: &mut RemoteTx,
        keyspace: u64,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.in_tx(tx, keyspace, |rpc, at| async move {
            rpc.point(at, key.to_vec())
                .await
                .map(|PointReply { tx, value }| (tx, value))
        })
        .await
    }

    pub(crate) async fn range(
        &self,
        tx: &mut RemoteTx,
        keyspace: u64,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // The server sends a large range in pages, each from the transaction's snapshot; ask
        // for the next one after the last key received until it says there is no more.
        let mut entries = Vec::new();
        let mut from = WireBound::from_bound(start);
        loop {
            let (page, more) = self
                .in_tx(tx, keyspace, |rpc, at| {
                    let from = from.clone();
                    async move {
                        rpc.range(at, from, WireBound::from_bound(end))
                            .await
                            .map(|RangeReply { tx, entries, more }| (tx, (entries, more)))
                    }
                })
                .await?;
            entries.extend(page);
            match entries.last() {
                Some((last, _)) if more => from = WireBound::Excluded(last.clone()),
                _ => return Ok(entries),
            }
        }
    }

    pub(crate) async fn commit(
        &self,
        tx: &mut RemoteTx,
        writes: Vec<WireWrite>,
        sync: bool,
    ) -> Result<u64> {
        let rpc = self.rpc().await?;
        let commit = Commit {
            session: tx.session,
            tx: tx.id,
            writes,
            sync,
        };
        // The server ends the transaction when it receives the commit, whatever the outcome.
        tx.id = 0;
        rpc.commit(commit).await.map_err(|e| self.call_error(e))
    }

    pub(crate) async fn latest(&self, keyspace: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let rpc = self.rpc().await?;
        rpc.latest(keyspace, key.to_vec())
            .await
            .map_err(|e| self.call_error(e))
    }

    pub(crate) async fn count(&self, keyspace: u64) -> Result<usize> {
        let rpc = self.rpc().await?;
        let n = rpc.count(keyspace).await.map_err(|e| self.call_error(e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Tells the server to drop a transaction that will not commit (in the background: the
    /// caller is dropping it and cannot wait).
    fn release(&self, tx: &RemoteTx) {
        let (Some(rpc), Ok(runtime)) = (self.rpc.get(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (rpc, session, id) = (rpc.clone(), tx.session, tx.id);
        runtime.spawn(async move {
            let _ = rpc.release(session, id).await;
        });
    }
}

/// The server-side transaction a client [`Tx`](crate::Tx) reads in: `id` 0 until its first
/// read begins it. Dropped without a commit, it is released on the server.
pub(crate) struct RemoteTx {
    /// The server's client (not a `Db`: a transaction needs the connection, nothing else).
    pub(crate) client: Arc<Client>,
    pub(crate) session: u64,
    pub(crate) id: u64,
}

impl RemoteTx {
    /// A transaction the server has not begun yet.
    pub(crate) fn new(client: Arc<Client>) -> Self {
        Self {
            client,
            session: 0,
            id: 0,
        }
    }
}

impl Drop for RemoteTx {
    fn drop(&mut self) {
        if self.id != 0 {
            self.client.release(self);
        }
    }
}

impl From<cell_sdk::Never> for WireError {
    fn from(never: cell_sdk::Never) -> Self {
        match never {}
    }
}

/// A server's refusal as the embedded API's error.
fn from_wire(e: WireError) -> Error {
    match e {
        // The transaction's snapshot is gone or stale: running it again is always safe.
        WireError::Conflict | WireError::UnknownTransaction | WireError::UnknownSession => {
            Error::Conflict { attempts: 1 }
        }
        WireError::SchemaMismatch(Mismatch {
            table,
            what,
            stored,
            current,
        }) => Error::SchemaMismatch {
            table,
            what,
            stored,
            current,
        },
        WireError::Corrupt(table, reason) => Error::Corrupt { table, reason },
        WireError::Commit(reason) => Error::Commit(reason),
        WireError::Storage(reason) => Error::Remote(format!("storage error: {reason}")),
        WireError::BadRequest(reason) => Error::Remote(format!("bad request: {reason}")),
        WireError::Limit(reason) => Error::Remote(format!("refused by the server: {reason}")),
    }
}
