//! Three (and four) celldb raft nodes in one process, each on its own real fjall directory,
//! over a test network that can partition nodes and delay messages. After each scenario no
//! acknowledged write is lost and every replica has the same digest.
//!
//! Scenarios: a leader isolated while writes continue (a new leader takes over); a follower
//! and then the leader stopped and restarted from their directories; a node that fell behind
//! the compacted log caught up by a snapshot, also when the first install is interrupted; a
//! membership change (learner, then voter; a voter removed) under load.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use celldb::raft::snapshot::{ChunkEncoder, SnapshotData, Staging};
use celldb::raft::{CellRaft, CmdBuilder, Node, Outcome, Raft, RaftNode, StateMachine};
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
struct Router {
    nodes: Mutex<HashMap<u64, (Raft, StateMachine)>>,
    /// Directed links that drop every message.
    cut: Mutex<HashSet<(u64, u64)>>,
    /// Delay per message, in milliseconds.
    delay_ms: AtomicU64,
    /// Drop every n-th message (0: none), counted over all links.
    drop_every: AtomicU64,
    messages: AtomicU64,
    snapshot_transfers: AtomicU64,
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
    fn isolate(&self, node: u64, others: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in others {
            cut.insert((node, other));
            cut.insert((other, node));
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

struct NetFactory {
    from: u64,
    router: Arc<Router>,
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

struct Net {
    from: u64,
    to: u64,
    router: Arc<Router>,
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
        self.router.delay().await;
        let (raft, _) = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc).await.map_err(network_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.router.delay().await;
        let (raft, _) = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(network_error)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.router.delay().await;
        let (raft, _) = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.pre_vote(rpc).await.map_err(network_error)
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
struct Group {
    router: Arc<Router>,
    base: tempfile::TempDir,
    nodes: BTreeMap<u64, RaftNode>,
    config: openraft::Config,
}

impl Group {
    async fn new(size: u64, config: openraft::Config) -> Self {
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

    fn dir(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}"))
    }

    async fn start(&mut self, id: u64) {
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

    async fn stop(&mut self, id: u64) {
        self.router.nodes.lock().unwrap().remove(&id);
        let node = self.nodes.remove(&id).unwrap();
        // A node whose storage failed (the interrupted install) reports it here: fine.
        let _ = node.shutdown().await;
    }

    /// The current leader, as the live nodes see it (waits up to 60 s).
    async fn leader(&self) -> u64 {
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
    async fn converged_digests(&self) -> BTreeMap<u64, (Option<u64>, u64)> {
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
    async fn check(&self, acked: &BTreeMap<u64, u64>) {
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
async fn write(router: &Router, key: u64, value: u64, extra: usize) -> Option<Outcome> {
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
    while Instant::now() < deadline {
        let rafts: Vec<(u64, Raft)> = router
            .nodes
            .lock()
            .unwrap()
            .iter()
            .map(|(id, (raft, _))| (*id, raft.clone()))
            .collect();
        let raft = match target.and_then(|t| rafts.iter().find(|(id, _)| *id == t)) {
            Some((_, raft)) => raft.clone(),
            None => rafts[(key as usize) % rafts.len()].1.clone(),
        };
        match raft.client_write(cmd.clone()).await {
            Ok(response) => return Some(response.data),
            Err(e) => {
                target = e.forward_to_leader().and_then(|f| f.leader_id).or(None);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    None
}

/// Runs `count` writes from `writers` concurrent tasks starting at key `first`, returning the
/// acknowledged ones. Runs `during` halfway through.
async fn load<F: Future<Output = ()>>(
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

fn test_config() -> openraft::Config {
    openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..celldb::raft::config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_while_writes_continue() {
    let group = Group::new(3, test_config()).await;
    let old = group.leader().await;
    let router = group.router.clone();
    router.delay_ms.store(2, Ordering::Relaxed);
    let acked = load(router.clone(), 0, 120, 4, 0, async {
        router.isolate(old, &[1, 2, 3]);
        // A new leader among the other two.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
            let new = others.iter().find(|id| {
                group.nodes[id].raft.metrics().borrow_watched().state == ServerState::Leader
            });
            if new.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no new leader while {old} was isolated"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        router.heal();
    })
    .await;
    group.check(&acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_nodes_restart_from_their_directories() {
    let mut group = Group::new(3, test_config()).await;
    let mut acked = load(group.router.clone(), 0, 40, 2, 0, async {}).await;
    let leader = group.leader().await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    group.stop(follower).await;
    acked.extend(load(group.router.clone(), 100, 40, 2, 0, async {}).await);
    group.start(follower).await;
    group.check(&acked).await;
    // Now the leader itself.
    group.stop(leader).await;
    acked.extend(load(group.router.clone(), 200, 40, 2, 0, async {}).await);
    group.start(leader).await;
    acked.extend(load(group.router.clone(), 300, 20, 2, 0, async {}).await);
    group.check(&acked).await;
}

fn snapshot_config() -> openraft::Config {
    openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(50),
        max_in_snapshot_log_to_keep: 5,
        purge_batch_size: 16,
        ..test_config()
    }
}

/// Cuts `lagging` off, writes until the leader's log is purged past it, heals; returns the
/// acknowledged writes. Each write also writes `extra` filler keys (a bigger snapshot).
async fn fall_behind(group: &Group, lagging: u64, extra: usize) -> BTreeMap<u64, u64> {
    group.router.isolate(lagging, &[1, 2, 3]);
    let acked = load(group.router.clone(), 0, 200, 4, extra, async {}).await;
    let leader = group.leader().await;
    group.nodes[&leader]
        .raft
        .trigger()
        .snapshot()
        .await
        .unwrap();
    let last = group.nodes[&leader]
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index;
    group.nodes[&leader]
        .raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(
            |m| {
                m.purged
                    .is_some_and(|p| Some(p.index) >= last.map(|l| l.saturating_sub(10)))
            },
            "the leader purges its log",
        )
        .await
        .unwrap();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fell_behind_catches_up_by_snapshot() {
    let group = Group::new(3, snapshot_config()).await;
    let leader = group.leader().await;
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let acked = fall_behind(&group, lagging, 0).await;
    group.router.heal();
    group.check(&acked).await;
    assert!(
        group.router.snapshot_transfers.load(Ordering::Relaxed) >= 1,
        "the lagging node caught up without a snapshot: the test did not test it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_install_is_finished_when_the_node_reopens() {
    let mut group = Group::new(3, snapshot_config()).await;
    let leader = group.leader().await;
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    // 200 writes of 25 keys: over one install batch (4,096 records).
    let acked = fall_behind(&group, lagging, 24).await;
    group.nodes[&lagging].state_machine().fail_install_after(1);
    group.router.heal();
    // The install fails after its first batch (a crash would stop it there): raft on that
    // node stops with a storage error, and the marker stays.
    let deadline = Instant::now() + Duration::from_secs(60);
    while group.router.snapshot_transfers.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no snapshot was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while group.nodes[&lagging]
        .raft
        .metrics()
        .borrow_watched()
        .running_state
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the interrupted install did not stop the node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    group.stop(lagging).await;
    let staging = group.dir(lagging).join("raft-snapshot");
    let staged = || {
        std::fs::read_dir(&staging)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("staged."))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(staged(), 1, "the interrupted install left its staged file");
    // Reopening finishes the install from the staged file, then raft catches up.
    group.start(lagging).await;
    assert_eq!(
        staged(),
        0,
        "reopening finished the install and deleted the file"
    );
    group.check(&acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_under_load() {
    let mut group = Group::new(3, test_config()).await;
    group.start(4).await;
    let router = group.router.clone();
    router.drop_every.store(17, Ordering::Relaxed);
    let leader_raft = group.nodes[&group.leader().await].raft.clone();
    let acked = load(router.clone(), 0, 160, 4, 0, async {
        leader_raft
            .add_learner(4, Node::default(), true)
            .await
            .expect("add node 4 as a learner");
        // Replace voter set {1,2,3} by {2,3,4}: 4 becomes a voter, 1 leaves.
        let mut attempt = 0;
        loop {
            let leader = leader_of(&router);
            match leader.change_membership([2u64, 3, 4], false).await {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    assert!(attempt < 50, "membership change failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    router.drop_every.store(0, Ordering::Relaxed);
    group.stop(1).await;
    group.check(&acked).await;
    let voters: Vec<u64> = group.nodes[&2]
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![2, 3, 4]);
}

fn leader_of(router: &Router) -> Raft {
    let nodes = router.nodes.lock().unwrap();
    nodes
        .values()
        .find(|(raft, _)| raft.metrics().borrow_watched().state == ServerState::Leader)
        .or_else(|| nodes.values().next())
        .map(|(raft, _)| raft.clone())
        .unwrap()
}
