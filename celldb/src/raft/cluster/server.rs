//! A cluster node: a [`RaftNode`] on its directory, its identity, and the
//! [`CellDbCluster`] service on one TCP port, which carries both raft traffic between nodes
//! and clients' reads and writes.
//!
//! Writes and linearizable reads are served by the leader; any other node answers
//! [`ClusterError::NotLeader`] with the leader's id and address, and the client goes there.
//! Every client request is checked before raft sees it (a [`Cmd`] decodes and validates, or
//! is refused as a bad request) and again by every replica when it applies it.

use crate::db::Db;
use crate::raft::cluster::identity::Identity;
use crate::raft::cluster::peer::{self, PeerNetwork};
use crate::raft::cluster::wire::{
    CellDbCluster, ClusterError, CommitReply, NodeStatus, PeerError, PeerHeader, PeerReply,
    RangePage, Redirect,
};
use crate::raft::snapshot::{SnapshotData, Staging};
use crate::raft::{Cmd, CmdBuilder, Node, NodeError, Outcome, Raft, RaftNode};
use crate::schema::TableMeta;
use crate::wire::WireBound;
use openraft::rt::WatchReceiver as _;
use openraft::{ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a node starts: [`ClusterConfig::new`], then set the fields that differ.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The cluster id: every node of a group has the same, and refuses others'.
    pub cluster: String,
    /// This node's id.
    pub node: u64,
    /// The address this node listens on (its raft and client port).
    pub listen: String,
    /// The founding members (`--cluster 1=host:port,…`): a new group is initialized by the
    /// member with the smallest id. Empty for a node that waits to be added.
    pub founders: BTreeMap<u64, String>,
    /// Addresses to dial peers at instead of their membership address (`--dial`).
    pub dial: BTreeMap<u64, String>,
    /// Raft settings ([`crate::raft::config`] by default).
    pub raft: openraft::Config,
    /// The cluster's shared secret for calls to peers (`None`: `$CELL_SECRET`). Bind the
    /// node's own port with the same one.
    pub secret: Option<cell_sdk::Secret>,
    /// Serve the `DB::` API's reads on [`ClusterNode::db`] with bounded staleness: a read
    /// sees every write acknowledged more than this long before it, from the local replica,
    /// without a round trip to the leader while the node's newest read index is that young
    /// (`None`: linearizable reads). Clients of the node are not affected. See
    /// docs/replication.md, "Bounded staleness".
    pub max_staleness: Option<Duration>,
}

impl ClusterConfig {
    /// Node `node` of cluster `cluster`, listening on `listen`: no founders (it waits to be
    /// added with `celldb cluster add`), no `--dial` overrides, [`crate::raft::config`],
    /// `$CELL_SECRET`, linearizable reads.
    pub fn new(cluster: impl Into<String>, node: u64, listen: impl Into<String>) -> Self {
        let cluster = cluster.into();
        let mut raft = crate::raft::config();
        raft.cluster_name.clone_from(&cluster);
        Self {
            cluster,
            node,
            listen: listen.into(),
            founders: BTreeMap::new(),
            dial: BTreeMap::new(),
            raft,
            secret: None,
            max_staleness: None,
        }
    }
}

/// The replicated keyspace of cluster bookkeeping (the next node id to allocate).
const NODES: &str = "celldb.nodes";
const NEXT_ID: &[u8] = b"next_id";
/// How long a write or a read barrier may wait for a quorum before the client is told to try
/// elsewhere.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Bytes of keys and values in one range page.
const PAGE_BYTES: usize = 4 << 20;

/// A running cluster node. Dropping it does not stop it: call [`ClusterNode::shutdown`].
#[derive(Debug)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    node: RaftNode,
}

struct Shared {
    raft: Raft,
    sm: crate::raft::StateMachine,
    log: crate::raft::LogStore,
    db: Db,
    identity: Arc<Identity>,
    /// Snapshot transfers being received, by sending node: (transfer id, next chunk, file).
    incoming: Mutex<HashMap<u64, (u64, u64, Staging)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The service handle bound to the node's port.
#[derive(Clone, Debug)]
pub struct Handler {
    shared: Arc<Shared>,
}

impl ClusterNode {
    /// Opens `dir` as node `config.node` of cluster `config.cluster` and starts raft; founds
    /// the group if `config.founders` names this node as the smallest id and the directory is
    /// new. Serve [`ClusterNode::handler`] on `config.listen` for the node to be reachable.
    ///
    /// # Errors
    /// [`NodeError`]: the directory (another cluster's or node's, locked, unreadable), raft.
    pub async fn start(dir: &Path, config: ClusterConfig) -> Result<Self, NodeError> {
        let db = Db::open(dir)?;
        let local = db
            .local()
            .ok_or_else(|| NodeError::Raft("a cluster node needs a local directory".into()))?;
        let identity = Arc::new(Identity::load_or_create(
            &local.fjall,
            &config.cluster,
            config.node,
        )?);
        let network = PeerNetwork {
            identity: identity.clone(),
            dial: Arc::new(config.dial.clone()),
            config: cell_sdk::SynapseConfig {
                connect_timeout: Duration::from_secs(2),
                secret: config.secret.clone(),
                ..Default::default()
            },
            transfers: Arc::new(AtomicU64::new(0)),
        };
        let node =
            RaftNode::start_on(config.node, db.clone(), config.raft.clone(), network).await?;
        if let Some(member) = db.member() {
            if let Some(bound) = config.max_staleness {
                member.set_max_staleness(bound);
            }
            // The node's own address first: it answers with the leader's, so a node that
            // joined without a founders list still finds the leader.
            let mut addrs = vec![config.listen.clone()];
            addrs.extend(
                config
                    .founders
                    .values()
                    .filter(|a| **a != config.listen)
                    .cloned(),
            );
            member.set_remote(crate::raft::cluster::client::Client::new(
                addrs,
                false,
                cell_sdk::SynapseConfig {
                    secret: config.secret.clone(),
                    ..Default::default()
                },
            ));
        }
        let shared = Arc::new(Shared {
            raft: node.raft.clone(),
            sm: node.state_machine().clone(),
            log: node.log_store().clone(),
            db,
            identity,
            incoming: Mutex::new(HashMap::new()),
        });
        let founder = config.founders.keys().next() == Some(&config.node);
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if founder && !initialized {
            let members: BTreeMap<u64, Node> = config
                .founders
                .iter()
                .map(|(id, addr)| (*id, Node::new(addr.clone())))
                .collect();
            tracing::info!(node = config.node, ?members, "founding the group");
            node.raft
                .initialize(members)
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
        }
        Ok(Self { shared, node })
    }

    /// The service to bind on the node's address.
    pub fn handler(&self) -> Handler {
        Handler {
            shared: self.shared.clone(),
        }
    }

    /// The node's database: the `DB::` API on it reads this node's replica (follower reads
    /// ask the leader for a read index first) and forwards writes to the leader.
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// The raft handle.
    pub fn raft(&self) -> &Raft {
        &self.node.raft
    }

    /// Stops raft and closes the directory.
    ///
    /// # Errors
    /// As [`RaftNode::shutdown`].
    pub async fn shutdown(self) -> Result<(), NodeError> {
        drop(self.shared);
        self.node.shutdown().await
    }
}

fn refused(reason: String) -> PeerError {
    PeerError::Refused(reason)
}

impl Shared {
    fn admit(&self, header: &PeerHeader) -> Result<(), PeerError> {
        self.identity.admit(header).map_err(refused)
    }

    fn reply<T: serde::Serialize>(&self, value: &T) -> Result<PeerReply, PeerError> {
        Ok(PeerReply {
            incarnation: self.identity.incarnation,
            body: peer::encode(value).map_err(PeerError::Raft)?,
        })
    }

    /// Where clients should go: the leader this node knows, and its address.
    fn redirect(&self, leader: Option<u64>) -> ClusterError {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader = leader.or(metrics.current_leader);
        let addr = leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        ClusterError::NotLeader(Redirect { leader, addr })
    }

    /// The read barrier: this node is the leader and has applied everything committed before
    /// the call.
    async fn barrier(&self) -> Result<(), ClusterError> {
        if broken::read_without_barrier() {
            return self.is_leader();
        }
        let barrier = self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex);
        let Ok(result) = tokio::time::timeout(ANSWER_WITHIN, barrier).await else {
            return Err(ClusterError::Unavailable(format!(
                "no quorum confirmed this node's leadership within {} s",
                ANSWER_WITHIN.as_secs()
            )));
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.forward_to_leader() {
                Some(forward) => Err(self.redirect(forward.leader_id)),
                None => Err(ClusterError::Unavailable(format!("read barrier: {e}"))),
            },
        }
    }

    async fn propose(&self, cmd: Cmd) -> Result<Outcome, ClusterError> {
        if broken::reply_before_commit() {
            self.is_leader()?;
            let raft = self.raft.clone();
            tokio::spawn(async move { raft.client_write(cmd).await });
            return Ok(Outcome::Committed { index: 0 });
        }
        // A leader cut off from its quorum cannot commit: the client hears so (and retries
        // elsewhere with the same request id) instead of waiting for the partition to heal.
        let Ok(result) = tokio::time::timeout(ANSWER_WITHIN, self.raft.client_write(cmd)).await
        else {
            return Err(ClusterError::Unavailable(format!(
                "not committed within {} s (no quorum?); the outcome is decided by the log",
                ANSWER_WITHIN.as_secs()
            )));
        };
        match result {
            Ok(response) => Ok(response.data),
            Err(e) => match e.forward_to_leader() {
                Some(forward) => Err(self.redirect(forward.leader_id)),
                None => Err(ClusterError::Unavailable(format!("raft write: {e}"))),
            },
        }
    }

    fn is_leader(&self) -> Result<(), ClusterError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.state == ServerState::Leader {
            Ok(())
        } else {
            Err(self.redirect(None))
        }
    }
}

fn storage(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Storage(e.to_string())
}

fn check_name(name: &str) -> Result<(), ClusterError> {
    if crate::raft::valid_keyspace_name(name) {
        Ok(())
    } else {
        Err(ClusterError::BadRequest(format!(
            "invalid keyspace name {name:?}"
        )))
    }
}

impl CellDbCluster for Handler {
    async fn append(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError> {
        let s = &self.shared;
        s.admit(&header)?;
        let rpc = peer::decode(&body).map_err(PeerError::BadMessage)?;
        let response = s
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| PeerError::Raft(e.to_string()))?;
        s.reply(&response)
    }

    async fn vote(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError> {
        let s = &self.shared;
        s.admit(&header)?;
        let rpc = peer::decode(&body).map_err(PeerError::BadMessage)?;
        let response = s
            .raft
            .vote(rpc)
            .await
            .map_err(|e| PeerError::Raft(e.to_string()))?;
        s.reply(&response)
    }

    async fn pre_vote(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError> {
        let s = &self.shared;
        s.admit(&header)?;
        let rpc = peer::decode(&body).map_err(PeerError::BadMessage)?;
        let response = s
            .raft
            .pre_vote(rpc)
            .await
            .map_err(|e| PeerError::Raft(e.to_string()))?;
        s.reply(&response)
    }

    async fn snapshot_chunk(
        &self,
        header: PeerHeader,
        transfer: u64,
        index: u64,
        chunk: Vec<u8>,
    ) -> Result<PeerReply, PeerError> {
        let s = &self.shared;
        s.admit(&header)?;
        let mut incoming = s.incoming.lock().unwrap_or_else(|p| p.into_inner());
        if index == 0 {
            // One transfer per sender at a time: a new one replaces (and deletes) the last.
            let id = format!("{}-{transfer}", header.from);
            let staging = Staging::begin(s.sm.staging_dir(), &id)
                .map_err(|e| PeerError::Raft(format!("staging a snapshot: {e}")))?;
            incoming.insert(header.from, (transfer, 0, staging));
        }
        let Some((current, next, staging)) = incoming.get_mut(&header.from) else {
            return Err(PeerError::BadMessage(format!(
                "chunk {index} of snapshot transfer {transfer} without its first chunk"
            )));
        };
        if *current != transfer || *next != index {
            return Err(PeerError::BadMessage(format!(
                "chunk {index} of snapshot transfer {transfer}, expected chunk {next} of \
                 transfer {current}"
            )));
        }
        staging
            .write_chunk(&chunk)
            .map_err(|e| PeerError::BadMessage(format!("snapshot chunk {index}: {e}")))?;
        *next += 1;
        drop(incoming);
        s.reply(&())
    }

    async fn snapshot_install(
        &self,
        header: PeerHeader,
        transfer: u64,
        body: Vec<u8>,
    ) -> Result<PeerReply, PeerError> {
        let s = &self.shared;
        s.admit(&header)?;
        let (vote, meta) = peer::decode(&body).map_err(PeerError::BadMessage)?;
        let staging = {
            let mut incoming = s.incoming.lock().unwrap_or_else(|p| p.into_inner());
            match incoming.remove(&header.from) {
                Some((current, _, staging)) if current == transfer => staging,
                _ => {
                    return Err(PeerError::BadMessage(format!(
                        "install of snapshot transfer {transfer}, which this node is not receiving"
                    )));
                }
            }
        };
        let path = staging
            .finish()
            .map_err(|e| PeerError::BadMessage(format!("snapshot transfer {transfer}: {e}")))?;
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: SnapshotData::Staged(path),
        };
        let response = s
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| PeerError::Raft(e.to_string()))?;
        s.reply(&response)
    }

    async fn status(&self) -> NodeStatus {
        let s = &self.shared;
        let m = s.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let addr = |id: u64| {
            membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        NodeStatus {
            id: s.identity.node,
            cluster: s.identity.cluster.clone(),
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied: m.last_applied.as_ref().map(|l| l.index),
            voters: membership.voter_ids().map(|id| (id, addr(id))).collect(),
            learners: membership.learner_ids().map(|id| (id, addr(id))).collect(),
            fsyncs: s.log.fsyncs(),
            refused: s
                .identity
                .refused
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn digest(&self) -> Result<(u64, u64), ClusterError> {
        let (applied, digest) = self.shared.sm.digest().map_err(storage)?;
        Ok((applied.unwrap_or(0), digest))
    }

    async fn open_session(&self) -> Result<u64, ClusterError> {
        let cmd = CmdBuilder::open_session()
            .finish()
            .map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        match self.shared.propose(cmd).await? {
            Outcome::Committed { index } => Ok(index),
            other => Err(ClusterError::Unavailable(format!(
                "opening a session: {other:?}"
            ))),
        }
    }

    async fn read_index(&self) -> Result<u64, ClusterError> {
        let s = &self.shared;
        s.barrier().await?;
        // The barrier returned once this leader applied its read index: what it has applied
        // now is at least that (a follower waiting for it waits a little longer, safely).
        let applied = s.raft.metrics().borrow_watched().last_applied;
        Ok(applied.map_or(0, |l| l.index))
    }

    async fn open_table(&self, table: String, meta: TableMeta) -> Result<(), ClusterError> {
        let s = &self.shared;
        s.is_leader()?;
        let Some(member) = s.db.member() else {
            return Err(ClusterError::Unavailable(
                "this node has no raft member".into(),
            ));
        };
        let Some(local) = s.db.local() else {
            return Err(ClusterError::Unavailable(
                "this node has no directory".into(),
            ));
        };
        match Box::pin(member.register_meta(&local.fjall, &table, &meta)).await {
            Ok(()) => Ok(()),
            Err(crate::Error::NotLeader { leader }) => Err(s.redirect(leader)),
            Err(crate::Error::SchemaMismatch { table, what, .. }) => {
                Err(ClusterError::SchemaMismatch(table, what))
            }
            Err(e) => Err(ClusterError::Unavailable(e.to_string())),
        }
    }

    async fn read(
        &self,
        keyspace: String,
        key: Vec<u8>,
        stale: bool,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        check_name(&keyspace)?;
        let s = &self.shared;
        if !stale {
            s.barrier().await?;
        }
        s.sm.read(&keyspace, &key).map_err(storage)
    }

    async fn range(
        &self,
        keyspace: String,
        start: WireBound,
        end: WireBound,
        stale: bool,
    ) -> Result<RangePage, ClusterError> {
        check_name(&keyspace)?;
        let s = &self.shared;
        if !stale {
            s.barrier().await?;
        }
        let (entries, more) =
            s.sm.read_range(&keyspace, start.into_bound(), end.into_bound(), PAGE_BYTES)
                .map_err(storage)?;
        Ok(RangePage { entries, more })
    }

    async fn count(&self, keyspace: String) -> Result<u64, ClusterError> {
        check_name(&keyspace)?;
        let s = &self.shared;
        s.barrier().await?;
        s.sm.count(&keyspace).map_err(storage)
    }

    async fn commit(&self, cmd: Vec<u8>) -> Result<CommitReply, ClusterError> {
        let cmd = Cmd(cmd);
        let body = cmd.decode().map_err(ClusterError::BadRequest)?;
        // The group's own bookkeeping is written by the state machine and the node, never by
        // a client: a forged session record would stop every replica that applies it.
        if let Some(w) = body
            .writes
            .iter()
            .find(|w| w.keyspace == crate::raft::state_machine::SESSIONS || w.keyspace == NODES)
        {
            return Err(ClusterError::BadRequest(format!(
                "keyspace {} is the cluster's own bookkeeping: clients may not write it",
                w.keyspace
            )));
        }
        // Nor check it: a session record's bytes depend on the build that wrote them (JSON
        // before, binary now), so a check of them could commit on one replica and conflict on
        // another while a group holds records of two builds.
        let sessions = crate::raft::state_machine::SESSIONS;
        if body.points.iter().any(|p| p.keyspace == sessions)
            || body.ranges.iter().any(|r| r.keyspace == sessions)
        {
            return Err(ClusterError::BadRequest(format!(
                "keyspace {sessions} is the cluster's own bookkeeping: clients may not check it"
            )));
        }
        let s = &self.shared;
        match s.propose(cmd).await? {
            Outcome::Committed { index } => Ok(CommitReply::Committed(index)),
            Outcome::Conflict => Ok(CommitReply::Conflict),
            Outcome::Rejected(reason) => Ok(CommitReply::Rejected(reason)),
            Outcome::SessionExpired => Err(ClusterError::SessionExpired),
        }
    }

    async fn verify(&self, cmd: Vec<u8>) -> Result<bool, ClusterError> {
        let s = &self.shared;
        s.barrier().await?;
        s.sm.reads_hold(&Cmd(cmd))
            .map_err(storage)?
            .map_err(ClusterError::BadRequest)
    }

    async fn add_learner(&self, addr: String) -> Result<u64, ClusterError> {
        let s = &self.shared;
        s.is_leader()?;
        // The id comes from a replicated counter (checked and bumped in one entry), so no
        // id is ever handed out twice, even across leaders.
        let id = loop {
            s.barrier().await?;
            let stored = s.sm.read(NODES, NEXT_ID).map_err(storage)?;
            let metrics = s.raft.metrics().borrow_watched().clone();
            let highest = metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .max()
                .unwrap_or(0);
            let from_counter = stored
                .as_deref()
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            let id = from_counter.max(highest + 1);
            let mut cmd = CmdBuilder::new(0);
            cmd.check(NODES, NEXT_ID, stored.as_deref());
            cmd.put(NODES, NEXT_ID, &(id + 1).to_be_bytes());
            let cmd = cmd
                .finish()
                .map_err(|e| ClusterError::BadRequest(e.to_string()))?;
            match s.propose(cmd).await? {
                Outcome::Committed { .. } => break id,
                Outcome::Conflict => continue,
                other => {
                    return Err(ClusterError::Unavailable(format!(
                        "allocating a node id: {other:?}"
                    )));
                }
            }
        };
        s.raft
            .add_learner(id, Node::new(addr), false)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => s.redirect(f.leader_id),
                None => ClusterError::Unavailable(format!("adding learner {id}: {e}")),
            })?;
        tracing::info!(node = s.identity.node, learner = id, "added a learner");
        Ok(id)
    }

    async fn promote(&self, id: u64) -> Result<(), ClusterError> {
        let s = &self.shared;
        s.is_leader()?;
        let caught_up = |m: &openraft::RaftMetrics<crate::raft::CellRaft>| {
            let last = m.last_log_index.unwrap_or(0);
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .is_some_and(|matched| matched.index + 100 >= last)
        };
        s.raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(caught_up, "the learner catches up")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("learner {id} did not catch up: {e}"))
            })?;
        s.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => s.redirect(f.leader_id),
                None => ClusterError::Unavailable(format!("promoting node {id}: {e}")),
            })?;
        tracing::info!(node = s.identity.node, voter = id, "promoted a learner");
        Ok(())
    }

    async fn remove(&self, id: u64) -> Result<(), ClusterError> {
        let s = &self.shared;
        s.is_leader()?;
        let membership = s.raft.metrics().borrow_watched().membership_config.clone();
        let is_voter = membership.membership().voter_ids().any(|v| v == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        s.raft
            .change_membership(change, false)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => s.redirect(f.leader_id),
                None => ClusterError::Unavailable(format!("removing node {id}: {e}")),
            })?;
        tracing::info!(node = s.identity.node, removed = id, "removed a node");
        Ok(())
    }
}

/// The deliberately broken builds the linearizability tests must catch. Each is compiled in
/// only with its test-only cargo feature, and inert unless `CELLDB_BROKEN` names it.
mod broken {
    #[cfg(any(
        feature = "raft-read-without-barrier",
        feature = "raft-reply-before-commit"
    ))]
    fn named(what: &str) -> bool {
        std::env::var("CELLDB_BROKEN").is_ok_and(|v| v.split(',').any(|w| w == what))
    }

    /// Linearizable reads served by whoever believes it leads, without a read barrier.
    pub(super) fn read_without_barrier() -> bool {
        #[cfg(feature = "raft-read-without-barrier")]
        return named("read-without-barrier");
        #[cfg(not(feature = "raft-read-without-barrier"))]
        false
    }

    /// Commits answered as soon as they are handed to raft, before the entry is in any
    /// journal (let alone on a majority).
    pub(super) fn reply_before_commit() -> bool {
        #[cfg(feature = "raft-reply-before-commit")]
        return named("reply-before-commit");
        #[cfg(not(feature = "raft-reply-before-commit"))]
        false
    }
}
