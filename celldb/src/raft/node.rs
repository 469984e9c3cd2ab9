//! A raft group member on a celldb directory: the database, its log store and state machine,
//! and the openraft handle, started and stopped together.

use crate::Db;
use crate::raft::{CellRaft, LogStore, Node, Raft, StateMachine};
use openraft::network::RaftNetworkFactory;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

type C = CellRaft;

/// Why a node could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The celldb directory could not be opened.
    #[error("opening the node's database: {0}")]
    Open(#[from] crate::Error),
    /// The raft storage could not be opened.
    #[error("opening the node's raft storage: {0}")]
    Storage(#[from] std::io::Error),
    /// openraft refused (configuration, initialization, a fatal storage error).
    #[error("raft: {0}")]
    Raft(String),
}

/// Opens the raft storage of node `id` in `db` (a local database): its log store and state
/// machine. [`RaftNode::start`] does this for you; storage tests (openraft's suite) use it
/// directly. Keep `db` open while they are in use.
///
/// # Errors
/// [`NodeError::Raft`] for a handle on a server; storage errors.
pub fn open_storage(id: u64, db: &Db) -> Result<(LogStore, StateMachine), NodeError> {
    let local = db.local().ok_or_else(|| {
        NodeError::Raft("raft storage needs a local database, not a server".into())
    })?;
    let log = LogStore::open(id, &local.fjall)?;
    let state_machine = StateMachine::open(id, &local.fjall, &local.path)?;
    Ok((log, state_machine))
}

/// celldb's raft settings: timeouts sized for a loaded two-core machine, pre-vote on (a healed
/// minority node does not depose the leader), snapshots every 5,000 entries.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "celldb".into(),
        heartbeat_interval: 100,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        install_snapshot_timeout: 10_000,
        enable_pre_vote: Some(true),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        snapshot_max_chunk_size: crate::raft::snapshot::MAX_CHUNK_BYTES as u64,
        ..Default::default()
    }
}

/// One member of a raft group, on its own celldb directory.
#[derive(Debug)]
pub struct RaftNode {
    /// The node id.
    pub id: u64,
    /// The openraft handle (writes, reads, membership, metrics).
    pub raft: Raft,
    log: LogStore,
    state_machine: StateMachine,
    /// Holds the directory's lock until the node stops.
    db: Db,
}

impl RaftNode {
    /// Opens (or creates) the node's directory `dir` and starts raft with `network`. A new
    /// directory is an uninitialized member: initialize the group once, on one node
    /// (`raft.initialize`), or add it to a running group.
    ///
    /// # Errors
    /// [`NodeError`] when the directory, the storage or raft cannot start.
    pub async fn start<N>(
        id: u64,
        dir: &Path,
        config: openraft::Config,
        network: N,
    ) -> Result<Self, NodeError>
    where
        N: RaftNetworkFactory<C>,
        N::Network: openraft::network::NetSnapshot<C, SnapshotData = crate::raft::SnapshotData>,
    {
        Self::start_on(id, Db::open(dir)?, config, network).await
    }

    /// [`RaftNode::start`] on a database already open (a cluster node reads its identity from
    /// the directory before its network exists).
    ///
    /// # Errors
    /// [`NodeError`] when the storage or raft cannot start.
    pub async fn start_on<N>(
        id: u64,
        db: Db,
        config: openraft::Config,
        network: N,
    ) -> Result<Self, NodeError>
    where
        N: RaftNetworkFactory<C>,
        N::Network: openraft::network::NetSnapshot<C, SnapshotData = crate::raft::SnapshotData>,
    {
        let (log, state_machine) = open_storage(id, &db)?;
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| NodeError::Raft(e.to_string()))?,
        );
        let raft = Raft::new(id, config, network, log.clone(), state_machine.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if let Some(local) = db.local() {
            // `db` was opened just above: nothing else can have set it.
            let _ = local
                .member
                .set(crate::raft::member::Member::new(raft.clone()));
        }
        Ok(Self {
            id,
            raft,
            log,
            state_machine,
            db,
        })
    }

    /// A one-node group on `dir`, initialized if new: the smallest raft deployment, and the
    /// doc example.
    ///
    /// # Errors
    /// As [`RaftNode::start`].
    pub async fn start_single(id: u64, dir: &Path) -> Result<Self, NodeError> {
        let node = Self::start(id, dir, config(), NoPeers).await?;
        if !node
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
        {
            let members = BTreeMap::from([(id, Node::default())]);
            node.raft
                .initialize(members)
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
        }
        node.raft
            .wait(Some(std::time::Duration::from_secs(30)))
            .current_leader(id, "a one-node group elects itself")
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        Ok(node)
    }

    /// The node's state machine (digests, local reads in tests).
    pub fn state_machine(&self) -> &StateMachine {
        &self.state_machine
    }

    /// The node's log store.
    pub fn log_store(&self) -> &LogStore {
        &self.log
    }

    /// The node's database handle.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stops raft, then the journal thread, then closes the directory (its lock is released
    /// when this returns, so the directory can be reopened).
    ///
    /// # Errors
    /// [`NodeError::Raft`] when raft's tasks did not stop cleanly.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let result = self
            .raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()));
        drop(self.raft);
        self.log.close();
        drop(self.state_machine);
        drop(self.db);
        result
    }
}

/// The network of a one-node group: there is nobody to call.
#[derive(Debug, Clone, Copy)]
struct NoPeers;

impl RaftNetworkFactory<C> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: u64, _node: &Node) -> NoPeers {
        NoPeers
    }
}

impl openraft::network::v2::RaftNetworkV2<C> for NoPeers {
    type SnapshotData = crate::raft::SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<C>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::AppendEntriesResponse<C>, openraft::errors::RPCError<C>> {
        Err(unreachable_peer())
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<C>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::VoteResponse<C>, openraft::errors::RPCError<C>> {
        Err(unreachable_peer())
    }

    async fn full_snapshot(
        &mut self,
        _vote: openraft::type_config::alias::VoteOf<C>,
        _snapshot: openraft::type_config::alias::SnapshotOf<C, crate::raft::SnapshotData>,
        _cancel: impl Future<Output = openraft::errors::ReplicationClosed>
        + openraft::OptionalSend
        + 'static,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::SnapshotResponse<C>, openraft::errors::StreamingError<C>> {
        Err(openraft::errors::StreamingError::Unreachable(
            openraft::errors::Unreachable::from_string("a one-node group has no peers"),
        ))
    }
}

fn unreachable_peer() -> openraft::errors::RPCError<C> {
    openraft::errors::RPCError::Unreachable(openraft::errors::Unreachable::from_string(
        "a one-node group has no peers",
    ))
}
