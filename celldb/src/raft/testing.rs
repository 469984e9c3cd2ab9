//! A test harness for raft groups in one process: nodes on real celldb directories, joined by
//! an in-memory network that can cut links, delay and drop messages, and stream snapshots
//! through the real chunk encoder and staging. celldb's own group tests and the fsync-ordering
//! proof use it; it is public so that a provider's tests can run a replicated celldb too.
//!
//! It is a *test* harness: on a broken invariant (no leader within a minute, a replica that
//! does not catch up) it panics with a message, as a test should.
//!
//! # Example
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use celldb::raft::testing::{Group, load};
//! let group = Group::new(3, celldb::raft::config()).await;
//! let acked = load(group.router.clone(), 0, 50, 2, 0, async {}).await;
//! group.check(&acked).await; // every acknowledged write on every node, equal digests
//! # }
//! ```

#![allow(
    clippy::unwrap_used,
    reason = "a test harness: a poisoned lock or a failed setup is a failed test"
)]

use crate::raft::snapshot::{ChunkEncoder, SnapshotData, Staging};
use crate::raft::{CellRaft, CmdBuilder, Node, Outcome, Raft, RaftNode, StateMachine};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::rt::WatchReceiver;
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{OptionalSend, ServerState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type C = CellRaft;

/// Who can reach whom: the live nodes and the cut links.
#[derive(Default)]
pub struct Router {
    /// The live nodes: their raft handle and state machine (a stopped node is absent).
    pub nodes: Mutex<HashMap<u64, (Raft, StateMachine)>>,
    /// Directed links that drop every message.
    pub cut: Mutex<HashSet<(u64, u64)>>,
    /// Delay per message, in milliseconds.
    pub delay_ms: AtomicU64,
    /// Drop every n-th message (0: none), counted over all links.
    pub drop_every: AtomicU64,
    /// Messages sent so far (for `drop_every`).
    pub messages: AtomicU64,
    /// Snapshot transfers started.
    pub snapshot_transfers: AtomicU64,
}

impl Router {
    fn target(&self, from: u64, to: u64) -> Result<(Raft, StateMachine), Unreachable<C>> {
        let every = self.drop_every.load(Ordering::Relaxed);
        let n = self.messages.fetch_add(1, Ordering::Relaxed);
        if every > 0 && n % every == every - 1 {
            return Err(Unreachable::from_string(format!("message {n} dropped")));
        }
        if self.cut.lock().unwrap().contains(&(from, to)) {
            return Err(Unreachable::from_string(format!(
                "link {from}->{to} is cut"
            )));
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {to} is down")))
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in others {
            cut.insert((node, other));
            cut.insert((other, node));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut nodes: Vec<u64> = self.nodes.lock().unwrap().keys().copied().collect();
        nodes.sort_unstable();
        f.debug_struct("Router")
            .field("nodes", &nodes)
            .field("cut", &*self.cut.lock().unwrap())
            .field("delay_ms", &self.delay_ms)
            .field("drop_every", &self.drop_every)
            .finish_non_exhaustive()
    }
}

/// Creates a node's clients on the [`Router`].
#[derive(Debug)]
pub struct NetFactory {
    /// The node that sends.
    pub from: u64,
    /// The network.
    pub router: Arc<Router>,
}

impl RaftNetworkFactory<C> for NetFactory {
    type Network = Net;
    async fn new_client(&mut self, target: u64, _node: &Node) -> Net {
        Net {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

/// One node's client to another, over the [`Router`].
#[derive(Debug)]
pub struct Net {
    from: u64,
    to: u64,
    router: Arc<Router>,
}

impl Net {
    /// The target's raft handle after the link's delay, or `Unreachable` (cut, dropped, down).
    async fn reach(&self) -> Result<Raft, RPCError<C>> {
        self.router.delay().await;
        let (raft, _) = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        Ok(raft)
    }
}

fn network_error(e: impl std::error::Error + 'static) -> RPCError<C> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetworkV2<C> for Net {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.reach()
            .await?
            .append_entries(rpc)
            .await
            .map_err(network_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.reach().await?.vote(rpc).await.map_err(network_error)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.reach()
            .await?
            .pre_vote(rpc)
            .await
            .map_err(network_error)
    }

    /// Streams the snapshot through the real chunk encoder into the target's staging
    /// directory, checking the link (and cancellation) between chunks.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let SnapshotData::View(view) = snapshot.snapshot else {
            return Err(StreamingError::Unreachable(Unreachable::from_string(
                "a leader sends views",
            )));
        };
        let (raft, sm) = self
            .router
            .target(self.from, self.to)
            .map_err(StreamingError::Unreachable)?;
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(64 << 10)
            .min(64 << 10);
        let mut encoder = ChunkEncoder::new(&snapshot.meta, view, chunk)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let id = format!(
            "{}-{}",
            self.from,
            self.router
                .snapshot_transfers
                .fetch_add(1, Ordering::Relaxed)
        );
        let mut staging = Staging::begin(sm.staging_dir(), &id)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let mut cancel = std::pin::pin!(cancel);
        loop {
            let next = encoder
                .next_chunk()
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            let Some(bytes) = next else { break };
            assert!(bytes.len() <= 16 << 20, "a chunk must fit a runtime frame");
            if futures::FutureExt::now_or_never(cancel.as_mut()).is_some() {
                return Err(StreamingError::Closed(ReplicationClosed::new("cancelled")));
            }
            self.router.delay().await;
            self.router
                .target(self.from, self.to)
                .map_err(StreamingError::Unreachable)?;
            staging
                .write_chunk(&bytes)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        }
        let path = staging
            .finish()
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let snapshot = openraft::storage::Snapshot {
            meta: snapshot.meta,
            snapshot: SnapshotData::Staged(path),
        };
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// A group of in-process nodes on real directories.
#[derive(Debug)]
pub struct Group {
    /// The network between the nodes.
    pub router: Arc<Router>,
    /// The directory holding every node's directory.
    pub base: tempfile::TempDir,
    /// The running nodes.
    pub nodes: BTreeMap<u64, RaftNode>,
    /// The settings nodes start with.
    pub config: openraft::Config,
}

impl Group {
    /// Starts nodes `1..=size` and initializes them as one group; waits for a leader.
    pub async fn new(size: u64, config: openraft::Config) -> Self {
        let mut group = Self {
            router: Arc::new(Router::default()),
            base: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            config,
        };
        for id in 1..=size {
            group.start(id).await;
        }
        let members: BTreeMap<u64, Node> = (1..=size).map(|id| (id, Node::default())).collect();
        group.nodes[&1].raft.initialize(members).await.unwrap();
        group.leader().await;
        group
    }

    /// Node `id`'s directory.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}"))
    }

    /// Starts (or restarts) node `id` on its directory and connects it.
    pub async fn start(&mut self, id: u64) {
        let network = NetFactory {
            from: id,
            router: self.router.clone(),
        };
        let node = RaftNode::start(id, &self.dir(id), self.config.clone(), network)
            .await
            .unwrap();
        self.router
            .nodes
            .lock()
            .unwrap()
            .insert(id, (node.raft.clone(), node.state_machine().clone()));
        self.nodes.insert(id, node);
    }

    /// Disconnects and stops node `id` (its directory stays).
    pub async fn stop(&mut self, id: u64) {
        self.router.nodes.lock().unwrap().remove(&id);
        let node = self.nodes.remove(&id).unwrap();
        // A node whose storage failed (the interrupted install) reports it here: fine.
        let _ = node.shutdown().await;
    }

    /// The current leader, as the live nodes see it (waits up to 60 s).
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for node in self.nodes.values() {
                let metrics = node.raft.metrics().borrow_watched().clone();
                if metrics.state == ServerState::Leader {
                    return node.id;
                }
            }
            assert!(Instant::now() < deadline, "no leader within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every live node has applied the leader's last log index, then returns
    /// their digests.
    pub async fn converged_digests(&self) -> BTreeMap<u64, (Option<u64>, u64)> {
        let leader = self.leader().await;
        let last = self.nodes[&leader]
            .raft
            .metrics()
            .borrow_watched()
            .last_log_index;
        for node in self.nodes.values() {
            node.raft
                .wait(Some(Duration::from_secs(60)))
                .applied_index_at_least(last, "replica catches up")
                .await
                .unwrap_or_else(|e| panic!("node {} did not catch up: {e}", node.id));
        }
        self.nodes
            .iter()
            .map(|(id, node)| (*id, node.state_machine().digest().unwrap()))
            .collect()
    }

    /// Every acknowledged write is on every live node, and all digests are equal.
    pub async fn check(&self, acked: &BTreeMap<u64, u64>) {
        let digests = self.converged_digests().await;
        let first = *digests.values().next().unwrap();
        assert!(
            digests.values().all(|d| d.1 == first.1),
            "replicas differ: {digests:?}"
        );
        for node in self.nodes.values() {
            for (key, value) in acked {
                let stored = node
                    .state_machine()
                    .read("t.orders", &key.to_be_bytes())
                    .unwrap();
                assert_eq!(
                    stored,
                    Some(value.to_be_bytes().to_vec()),
                    "node {} lost acknowledged write {key}",
                    node.id
                );
            }
        }
        assert!(!acked.is_empty(), "the scenario acknowledged no write");
    }
}

/// Writes key `key` (plus `extra` filler keys) through whichever node leads, retrying on
/// redirects and errors for up to 30 s. `Some(outcome)` once raft answered.
pub async fn write(router: &Router, key: u64, value: u64, extra: usize) -> Option<Outcome> {
    let mut cmd = CmdBuilder::new(0);
    cmd.put("t.orders", &key.to_be_bytes(), &value.to_be_bytes());
    for i in 0..extra {
        cmd.put(
            "t.filler",
            &[&key.to_be_bytes()[..], &(i as u32).to_be_bytes()].concat(),
            &[7; 32],
        );
    }
    let cmd = cmd.finish().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut target = None;
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let rafts: Vec<(u64, Raft)> = router
            .nodes
            .lock()
            .unwrap()
            .iter()
            .map(|(id, (raft, _))| (*id, raft.clone()))
            .collect();
        if rafts.is_empty() {
            return None;
        }
        // The hinted leader, else a node that says it leads, else the next node in turn (a
        // removed or isolated node may know no leader: never ask it twice in a row).
        let raft = target
            .and_then(|t| rafts.iter().find(|(id, _)| *id == t))
            .or_else(|| {
                rafts
                    .iter()
                    .find(|(_, r)| r.metrics().borrow_watched().state == ServerState::Leader)
            })
            .map_or_else(
                || rafts[(key as usize + attempt) % rafts.len()].1.clone(),
                |(_, raft)| raft.clone(),
            );
        attempt += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, raft.client_write(cmd.clone())).await {
            Ok(Ok(response)) => return Some(response.data),
            Ok(Err(e)) => {
                target = e.forward_to_leader().and_then(|f| f.leader_id);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => break,
        }
    }
    None
}

/// Runs `count` writes from `writers` concurrent tasks starting at key `first`, returning the
/// acknowledged ones. Runs `during` halfway through.
pub async fn load<F: Future<Output = ()>>(
    router: Arc<Router>,
    first: u64,
    count: u64,
    writers: u64,
    extra: usize,
    during: F,
) -> BTreeMap<u64, u64> {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let router = router.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut key = first + w;
            while key < first + count {
                if let Some(Outcome::Committed { .. }) = write(&router, key, key * 10, extra).await
                {
                    acked.push((key, key * 10));
                }
                done.fetch_add(1, Ordering::Relaxed);
                key += writers;
            }
            acked
        }));
    }
    while done.load(Ordering::Relaxed) < count / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    during.await;
    let mut acked = BTreeMap::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}
