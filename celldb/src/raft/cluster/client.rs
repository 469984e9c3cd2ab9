//! A [`Db`] whose engine is a celldb cluster (`Db::connect("raft://a:7001,b:7002,c:7003")`).
//!
//! Transactions run here as in every mode (`Tx` encodes records, maintains indexes, checks
//! unique values). Their reads are served by the node the client talks to (the leader, once
//! found) *without* a read barrier, each one recorded as a check: nothing depends on them
//! being current until the end. A writing transaction commits as one raft entry holding the
//! checks and the writes, which every replica validates by value at its log position; a
//! read-only one asks the leader whether all its reads still hold after a barrier. Either way
//! a transaction that read something stale conflicts and re-runs, and the ones that commit are
//! linearizable. Reads outside transactions (`User::get`) take the barrier themselves.
//!
//! **Failover.** The client keeps the leader it last reached and the addresses it was given.
//! A node that is not the leader answers with the leader's address, and the client goes
//! there; a node that cannot be reached, or a group without a leader (an election), makes it
//! try the next address after a short pause, for up to [`RETRY_FOR`]. A call with no answer
//! for [`CALL_TIMEOUT`] (a node whose network link is gone) counts as unreachable too.
//!
//! **Exactly once.** Commits carry a request id: the client's session (opened through the
//! log) and a sequence number. A commit whose answer was lost (the leader died after
//! proposing it, the connection broke) is sent again with the same id, and the group answers
//! with the first attempt's outcome instead of applying it twice. The group remembers a
//! session's answers until the client says it has them, and forgets an idle session after a
//! million entries (then a retry of it is reported as an unknown outcome, never re-applied).
//!
//! **Stale reads** are an opt-in (`raft://…?reads=stale`): reads go to whichever node the
//! client is connected to and see what that node has applied — a prefix of the log, possibly
//! behind the leader, never a state that was not committed. Transactions that write are
//! still validated at commit; read-only ones are not re-checked.

use crate::db::{Backend, Db, Ks, TableHandle};
use crate::error::{Error, Result};
use crate::raft::CmdBuilder;
use crate::raft::cluster::wire::{CellDbClusterClient, ClusterError, CommitReply, NodeStatus};
use crate::raft::state_machine::MAX_SESSION_ANSWERS;
use crate::schema::{index_keyspace, meta_of, records_keyspace};
use crate::table::{Durability, Table};
use crate::wire::WireBound;
use cell_sdk::{CallError, Endpoint, SynapseConfig};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a call keeps looking for a leader before it fails.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// How long one call may go unanswered before it counts as lost and is tried elsewhere (a
/// commit, with the same request id). A node answers within 3 s or says it is unavailable;
/// no answer at all means a dead link, where TCP alone would wait for many minutes.
/// `SynapseConfig::timeout`, when set, replaces it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a commit hears when the group no longer holds the client's session.
const EXPIRED: &str = "the cluster no longer holds this client's session";

/// The replicated `auto_inc` counters (the same keyspace members use).
const SEQ: &str = "celldb.seq";

/// A client of a cluster.
pub(crate) struct Client {
    addrs: Vec<String>,
    config: SynapseConfig,
    stale: bool,
    conns: Mutex<HashMap<String, CellDbClusterClient>>,
    /// The address that answered last (the leader, when a leader-only call succeeded).
    current: Mutex<Option<String>>,
    /// Next address to try when nobody is known to lead.
    rotate: AtomicUsize,
    session: tokio::sync::Mutex<Option<u64>>,
    seq: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
    /// A permit per commit in flight: never more than a session keeps answers for
    /// ([`MAX_SESSION_ANSWERS`]), so a retry always finds its first attempt's outcome.
    commits: tokio::sync::Semaphore,
    names: Mutex<(HashMap<String, u64>, Vec<String>)>,
}

/// Parses `raft://host:port,host:port[?reads=stale]` into addresses and the read mode.
///
/// # Errors
/// [`Error::Connection`] for an empty list or an unknown option.
pub fn parse_raft_url(url: &str) -> Result<(Vec<String>, bool)> {
    let rest = url
        .trim()
        .strip_prefix("raft://")
        .ok_or_else(|| Error::Connection(format!("{url:?} is not a raft:// address")))?;
    let (list, query) = match rest.split_once('?') {
        Some((list, query)) => (list, Some(query)),
        None => (rest, None),
    };
    let stale = match query {
        None | Some("reads=linearizable") => false,
        Some("reads=stale") => true,
        Some(other) => {
            return Err(Error::Connection(format!(
                "unknown option {other:?} in {url:?}: the one option is reads=stale (or \
                 reads=linearizable, the default)"
            )));
        }
    };
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err(Error::Connection(format!(
            "{url:?} names no node: raft://host:port,host:port,…"
        )));
    }
    Ok((addrs, stale))
}

impl Db {
    /// A handle on the celldb cluster whose nodes are at `addrs` (any of them; the client
    /// finds the leader). TCP needs the cluster's secret in `$CELL_SECRET`. `stale`: serve
    /// reads from any node (see the module docs of `raft::cluster::client`).
    /// An empty `addrs` gives a handle whose calls fail with [`Error::Connection`].
    pub fn connect_cluster(addrs: Vec<String>, stale: bool, config: SynapseConfig) -> Db {
        Db::with_backend(Backend::Cluster(Client::new(addrs, stale, config)))
    }

    /// The status of every node of a cluster handle, as each reports it (`None`: no answer).
    ///
    /// # Errors
    /// [`Error::Remote`] on a handle that is not a cluster's.
    pub async fn cluster_status(&self) -> Result<Vec<(String, Option<NodeStatus>)>> {
        let Backend::Cluster(client) = &self.inner.backend else {
            return Err(Error::Remote(
                "cluster_status is for a raft:// handle".into(),
            ));
        };
        let mut out = Vec::new();
        for addr in client.addrs.clone() {
            let status = match client.conn(&addr).await {
                Ok(conn) => conn
                    .with_timeout(Duration::from_secs(2))
                    .status()
                    .await
                    .ok(),
                Err(_) => None,
            };
            out.push((addr, status));
        }
        Ok(out)
    }
}

impl Db {
    fn cluster_client(&self, what: &str) -> Result<&Arc<Client>> {
        match &self.inner.backend {
            Backend::Cluster(client) => Ok(client),
            _ => Err(Error::Remote(format!("{what} is for a raft:// handle"))),
        }
    }

    /// Allocates a node id for a new node that will listen at `addr`, and adds it to the
    /// group as a learner (it catches up once it runs). `celldb cluster add`.
    ///
    /// # Errors
    /// [`Error::Connection`] when no leader answers; [`Error::Remote`] on another handle.
    pub async fn cluster_add_learner(&self, addr: &str) -> Result<u64> {
        let client = self.cluster_client("cluster_add_learner")?;
        client
            .run("adding a learner", |c| {
                let addr = addr.to_string();
                async move { c.add_learner(addr).await }
            })
            .await
    }

    /// Makes learner `id` a voter once it has caught up (waits up to a minute per attempt).
    ///
    /// # Errors
    /// As [`Db::cluster_add_learner`].
    pub async fn cluster_promote(&self, id: u64) -> Result<()> {
        let client = self.cluster_client("cluster_promote")?;
        client
            .run("promoting a learner", |c| async move {
                c.with_timeout(Duration::from_secs(90)).promote(id).await
            })
            .await
    }

    /// Removes node `id` from the group (its id is never allocated again).
    ///
    /// # Errors
    /// As [`Db::cluster_add_learner`].
    pub async fn cluster_remove(&self, id: u64) -> Result<()> {
        let client = self.cluster_client("cluster_remove")?;
        client
            .run("removing a node", |c| async move { c.remove(id).await })
            .await
    }
}

/// What one attempt of a call came to.
enum Attempt<T> {
    Done(T),
    /// Try again: at this address if given, else the next one after a pause.
    Again(Option<String>, String),
    Fail(Error),
}

impl Client {
    pub(crate) fn new(addrs: Vec<String>, stale: bool, config: SynapseConfig) -> Arc<Self> {
        let config = SynapseConfig {
            timeout: config.timeout.or(Some(CALL_TIMEOUT)),
            ..config
        };
        Arc::new(Client {
            addrs,
            config,
            stale,
            conns: Mutex::new(HashMap::new()),
            current: Mutex::new(None),
            rotate: AtomicUsize::new(0),
            session: tokio::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeSet::new()),
            commits: tokio::sync::Semaphore::new(MAX_SESSION_ANSWERS),
            names: Mutex::new((HashMap::new(), Vec::new())),
        })
    }

    /// The leader's applied index after a read barrier (a follower read waits for it).
    pub(crate) async fn read_index(&self) -> Result<u64> {
        self.run("a read index", |c| async move { c.read_index().await })
            .await
    }

    pub(crate) fn describe(&self) -> String {
        format!("raft://{}", self.addrs.join(","))
    }

    async fn conn(&self, addr: &str) -> std::result::Result<CellDbClusterClient, String> {
        if let Some(c) = self.lock_conns().get(addr) {
            return Ok(c.clone());
        }
        let config = SynapseConfig {
            connect_timeout: Duration::from_secs(1),
            ..self.config.clone()
        };
        let conn = CellDbClusterClient::connect_with(Endpoint::tcp(addr.to_string()), config)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        self.lock_conns().insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, CellDbClusterClient>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self) -> String {
        if let Some(addr) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return addr;
        }
        let i = self.rotate.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()].clone()
    }

    fn set_current(&self, addr: Option<String>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Classifies a call's result. Every failure that may have reached the group is retried:
    /// reads are idempotent, and a commit is retried with the same request id.
    fn classify<T>(
        &self,
        addr: &str,
        result: std::result::Result<T, CallError<ClusterError>>,
    ) -> Attempt<T> {
        match result {
            Ok(value) => {
                self.set_current(Some(addr.to_string()));
                Attempt::Done(value)
            }
            Err(CallError::App(ClusterError::NotLeader(redirect))) => {
                self.set_current(None);
                let why = format!("{addr} is not the leader (leader: {:?})", redirect.leader);
                match redirect.addr {
                    Some(leader) if leader != addr => Attempt::Again(Some(leader), why),
                    _ => Attempt::Again(None, why),
                }
            }
            Err(CallError::App(ClusterError::Unavailable(why))) => {
                self.set_current(None);
                Attempt::Again(None, format!("{addr}: {why}"))
            }
            Err(CallError::App(ClusterError::SessionExpired)) => {
                Attempt::Fail(Error::Connection(EXPIRED.into()))
            }
            Err(CallError::App(ClusterError::BadRequest(why))) => {
                Attempt::Fail(Error::Remote(format!("{addr} refused the request: {why}")))
            }
            Err(CallError::App(ClusterError::Storage(why))) => {
                Attempt::Fail(Error::Remote(format!("{addr}: storage: {why}")))
            }
            Err(CallError::App(ClusterError::SchemaMismatch(table, what))) => {
                Attempt::Fail(Error::SchemaMismatch {
                    table,
                    what,
                    stored: "the type the cluster stores".into(),
                    current: "this client's type".into(),
                })
            }
            Err(e) => {
                // Unreachable, timed out, disconnected: forget the connection and the leader.
                self.lock_conns().remove(addr);
                self.set_current(None);
                Attempt::Again(None, format!("{addr}: {e}"))
            }
        }
    }

    /// Runs `call` against the leader (or, for `any_node`, whichever node answers), following
    /// redirects and retrying for up to [`RETRY_FOR`].
    async fn run<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        F: Fn(CellDbClusterClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, CallError<ClusterError>>>,
    {
        if self.addrs.is_empty() {
            return Err(Error::Connection(format!(
                "{what}: the cluster handle was given no node addresses"
            )));
        }
        let deadline = Instant::now() + RETRY_FOR;
        let mut next: Option<String> = None;
        let mut last = String::from("no attempt");
        let mut pause = Duration::from_millis(20);
        while Instant::now() < deadline {
            let addr = next.take().unwrap_or_else(|| self.pick());
            let attempt = match self.conn(&addr).await {
                Ok(conn) => self.classify(&addr, call(conn).await),
                Err(e) => {
                    self.set_current(None);
                    Attempt::Again(None, e)
                }
            };
            match attempt {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Again(to, why) => {
                    tracing::debug!(what, %why, "celldb cluster: retrying");
                    last = why;
                    if to.is_some() {
                        next = to;
                    } else {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                }
            }
        }
        Err(Error::Connection(format!(
            "{what}: no answer from the cluster {} within {} s; last: {last}",
            self.describe(),
            RETRY_FOR.as_secs()
        )))
    }

    pub(crate) fn intern(&self, name: String) -> Ks {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = names.0.get(&name) {
            return Ks::Cluster(id);
        }
        let id = names.1.len() as u64;
        names.1.push(name.clone());
        names.0.insert(name, id);
        Ks::Cluster(id)
    }

    pub(crate) fn name(&self, ks: &Ks) -> Result<String> {
        let Ks::Cluster(id) = ks else {
            return Err(Error::Commit(
                "internal error: a cluster transaction named another engine's keyspace".into(),
            ));
        };
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .1
            .get(*id as usize)
            .cloned()
            .ok_or_else(|| Error::Commit("internal error: an unknown cluster keyspace".into()))
    }

    /// Registers (or checks) `T`'s replicated schema and returns its handle.
    pub(crate) async fn open_table<T: Table>(&self) -> Result<TableHandle> {
        let meta = meta_of::<T>();
        self.run("opening a table", |c| {
            let meta = meta.clone();
            async move { c.open_table(T::TABLE.to_string(), meta).await }
        })
        .await?;
        Ok(TableHandle {
            records: self.intern(records_keyspace(T::TABLE)),
            indexes: T::INDEXES
                .iter()
                .map(|d| self.intern(index_keyspace(T::TABLE, d.name)))
                .collect(),
            seq: self.intern(SEQ.to_string()),
            durability: Durability::Sync,
        })
    }

    /// A point read: linearizable (a barrier on the leader) unless `unchecked` or the
    /// handle reads stale; `unchecked` reads are a transaction's, validated at its end.
    pub(crate) async fn point(
        &self,
        ks: &Ks,
        key: &[u8],
        unchecked: bool,
    ) -> Result<Option<Vec<u8>>> {
        let name = self.name(ks)?;
        let stale = self.stale || unchecked;
        self.run("a read", |c| {
            let (name, key) = (name.clone(), key.to_vec());
            async move { c.read(name, key, stale).await }
        })
        .await
    }

    /// Every entry of the range, page after page (pages may come from different states:
    /// only a transaction reads ranges, and its end validates the whole range).
    pub(crate) async fn range(
        &self,
        ks: &Ks,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = self.name(ks)?;
        let stale = true;
        let mut out = Vec::new();
        let mut from = start.clone();
        loop {
            let page = self
                .run("a range read", |c| {
                    let (name, from, end) = (
                        name.clone(),
                        WireBound::from_bound(&from),
                        WireBound::from_bound(end),
                    );
                    async move { c.range(name, from, end, stale).await }
                })
                .await?;
            let more = page.more;
            if let Some((last, _)) = page.entries.last() {
                from = Bound::Excluded(last.clone());
            }
            out.extend(page.entries);
            if !more {
                return Ok(out);
            }
        }
    }

    pub(crate) async fn count(&self, ks: &Ks) -> Result<usize> {
        let name = self.name(ks)?;
        let n = self
            .run("counting", |c| {
                let name = name.clone();
                async move { c.count(name).await }
            })
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The client's session, opened through the log on first use.
    async fn session(&self, renew: bool) -> Result<u64> {
        let mut session = self.session.lock().await;
        if let Some(id) = *session
            && !renew
        {
            return Ok(id);
        }
        let id = self
            .run("opening a client session", |c| async move {
                c.open_session().await
            })
            .await?;
        *session = Some(id);
        Ok(id)
    }

    /// Commits a write-set as one request: retried with the same id until the group answers.
    /// Commits `cmd` with a request id; the log index it was applied at.
    pub(crate) async fn commit(&self, mut cmd: CmdBuilder) -> Result<u64> {
        let _permit = self
            .commits
            .acquire()
            .await
            .map_err(|_| Error::Commit("the client is closing".into()))?;
        let mut session = self.session(false).await?;
        let mut renewed = false;
        loop {
            // The number is taken and registered in one critical section: a request numbered
            // lower but not yet registered would otherwise be declared answered by this one's
            // `done_below`, and refused.
            let (seq, done_below) = {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                in_flight.insert(seq);
                (seq, in_flight.first().copied().unwrap_or(seq))
            };
            cmd.request(session, seq, done_below);
            let bytes = cmd
                .finish()
                .map_err(|e| Error::Commit(format!("encoding the write-set: {e}")))?;
            let result = self
                .run("a commit", |c| {
                    let bytes = bytes.0.clone();
                    async move { c.commit(bytes).await }
                })
                .await;
            self.in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seq);
            return match result {
                Ok(CommitReply::Committed(index)) => Ok(index),
                Ok(CommitReply::Conflict) => Err(Error::Conflict { attempts: 1 }),
                Ok(CommitReply::Rejected(reason)) => Err(Error::Commit(format!(
                    "every replica rejected the write-set: {reason}"
                ))),
                Err(Error::Connection(why)) if why == EXPIRED && !renewed => {
                    // The session expired while idle. This request's own attempts all came
                    // back "expired", so none was applied: a new session may send it again.
                    renewed = true;
                    session = self.session(true).await?;
                    continue;
                }
                Err(Error::Connection(why)) => Err(Error::Connection(format!(
                    "{why} (the commit's outcome is unknown: it may or may not be applied)"
                ))),
                Err(e) => Err(e),
            };
        }
    }

    /// A read-only transaction's commit: do its reads still hold after a barrier?
    pub(crate) async fn verify(&self, cmd: CmdBuilder) -> Result<()> {
        if self.stale {
            return Ok(());
        }
        let bytes = cmd
            .finish()
            .map_err(|e| Error::Commit(format!("encoding the read checks: {e}")))?;
        let holds = self
            .run("validating a read-only transaction", |c| {
                let bytes = bytes.0.clone();
                async move { c.verify(bytes).await }
            })
            .await?;
        if holds {
            Ok(())
        } else {
            Err(Error::Conflict { attempts: 1 })
        }
    }
}

/// A transaction's reads against a cluster: each read is recorded as a check in the
/// write-set-to-be.
pub(crate) struct ClusterTx {
    pub(crate) client: Arc<Client>,
    pub(crate) cmd: CmdBuilder,
    pub(crate) reads: usize,
}

impl ClusterTx {
    pub(crate) fn new(client: Arc<Client>) -> Self {
        Self {
            client,
            cmd: CmdBuilder::new(0),
            reads: 0,
        }
    }

    pub(crate) async fn point(&mut self, ks: &Ks, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.client.point(ks, key, true).await?;
        let name = self.client.name(ks)?;
        self.cmd.check(&name, key, value.as_deref());
        self.reads += 1;
        Ok(value)
    }

    pub(crate) async fn range(
        &mut self,
        ks: &Ks,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let entries = self.client.range(ks, start, end).await?;
        let name = self.client.name(ks)?;
        let digest = crate::raft::snapshot::range_digest(
            entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        );
        self.cmd
            .check_range(&name, start.clone(), end.clone(), digest);
        self.reads += 1;
        Ok(entries)
    }
}
