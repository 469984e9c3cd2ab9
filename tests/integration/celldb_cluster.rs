//! celldb as a cluster of real `celldb serve --node-id` processes on loopback (three nodes,
//! SIGKILL, restarts), with clients using the `DB::` API through `raft://` URLs:
//!
//! - the leader is SIGKILLed while four writers place orders, then restarted: every
//!   acknowledged order is there exactly once, none twice (request ids), replicas agree;
//! - partitions through a user-space fault proxy (`cell-faultproxy`) between every pair of
//!   nodes: an isolated leader, a minority and a majority side, a one-way cut;
//! - linearizability of a register workload under a leader partition, checked by
//!   `cell-lincheck` — and the checker catches the two deliberately broken builds
//!   (`CELLDB_BROKEN=read-without-barrier`, `CELLDB_BROKEN=reply-before-commit`);
//! - a bank history across a leader SIGKILL, checked the same way; a retried request gets
//!   its first outcome.
//!
//! Bad input on the raft port and membership changes are in `celldb_cluster_admin`; the
//! same cluster across network namespaces is `celldb_cluster_netns` (behind a flag).
//!
//! Bounded: each scenario runs a few hundred operations. Longer runs: `CELLDB_CLUSTER_LONG=1`
//! multiplies the operation counts by 20 (docs/replication.md).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use crate::celldb_crash::next_random;
use cell_faultproxy::Mesh;
use cell_sdk::{Endpoint, Secret, SynapseConfig, protein};
use celldb::Db;
use celldb::raft::cluster::wire::{CellDbClusterClient, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

cell_sdk::cell_remote!(DB = "celldb");

pub(crate) const SECRET: &str = "celldb-cluster-test-secret";

/// Operation counts are multiplied by this (`CELLDB_CLUSTER_LONG=1`: 20).
pub(crate) fn scale() -> usize {
    if std::env::var_os("CELLDB_CLUSTER_LONG").is_some() {
        20
    } else {
        1
    }
}

#[protein]
#[DB::persist(table = "cl_orders")]
pub struct ClOrder {
    #[DB::key]
    id: u64,
    writer: u64,
    n: u64,
}

#[protein]
#[DB::persist(table = "cl_counter")]
pub struct ClCounter {
    #[DB::key]
    id: u8,
    next: u64,
}

#[protein]
#[DB::persist(table = "cl_accounts")]
pub struct ClAccount {
    #[DB::key]
    id: u64,
    balance: i64,
}

#[protein]
#[DB::persist(table = "cl_registers")]
pub struct ClRegister {
    #[DB::key]
    key: u64,
    value: u64,
}

/// A group of `celldb serve --node-id` processes on loopback.
pub(crate) struct Cluster {
    pub(crate) base: tempfile::TempDir,
    /// Each node's listen address.
    pub(crate) addrs: BTreeMap<u64, SocketAddr>,
    children: BTreeMap<u64, Child>,
    /// The proxy every node dials its peers through, when the cluster was made with one.
    pub(crate) mesh: Option<Mesh>,
    /// Extra environment of every node (the broken builds' switch).
    env: Vec<(String, String)>,
    /// The cluster id.
    cluster_id: String,
    /// The network namespace each node runs in (`ip netns exec`), when it has one
    /// (`celldb_cluster_netns`).
    pub(crate) netns: BTreeMap<u64, String>,
}

pub(crate) fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub(crate) fn config() -> SynapseConfig {
    SynapseConfig {
        secret: Some(Secret::new(SECRET)),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

impl Cluster {
    /// `n` nodes founded together; with `proxied`, every node reaches every other through a
    /// fault proxy (`self.mesh`). Waits for a leader.
    pub(crate) async fn new(n: u64, proxied: bool, env: &[(&str, &str)]) -> Self {
        // A port `free_addr` saw free can be taken before a node binds it (by another test's
        // node, or as the ephemeral port of any connection on the machine): then the whole
        // group starts again on other ports (the founders' list names every address).
        let mut attempt = 1;
        loop {
            let addrs: BTreeMap<u64, SocketAddr> = (1..=n).map(|id| (id, free_addr())).collect();
            let mesh = if proxied {
                Some(Mesh::start(&addrs).await.unwrap())
            } else {
                None
            };
            let mut cluster = Self {
                base: tempfile::tempdir().unwrap(),
                addrs,
                children: BTreeMap::new(),
                mesh,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                cluster_id: "test".into(),
                netns: BTreeMap::new(),
            };
            let started = (1..=n).try_for_each(|id| {
                let command = cluster.command(id);
                let child = cluster
                    .spawn(id, command)
                    .map_err(|e| format!("node {id}: {e}"))?;
                cluster.children.insert(id, child);
                Ok::<(), String>(())
            });
            match started {
                Ok(()) => {
                    cluster.leader().await;
                    return cluster;
                }
                Err(e) if e.contains("Address already in use") && attempt < 5 => {
                    eprintln!("a node's port was taken; starting the group again on others: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Nodes at `addrs`, node `id` running in network namespace `netns[id]`. Waits for a
    /// leader.
    pub(crate) async fn in_namespaces(
        addrs: BTreeMap<u64, SocketAddr>,
        netns: BTreeMap<u64, String>,
    ) -> Self {
        let mut cluster = Self {
            base: tempfile::tempdir().unwrap(),
            addrs,
            children: BTreeMap::new(),
            mesh: None,
            env: Vec::new(),
            cluster_id: "test".into(),
            netns,
        };
        let ids: Vec<u64> = cluster.addrs.keys().copied().collect();
        for id in ids {
            cluster.start(id);
        }
        cluster.leader().await;
        cluster
    }

    pub(crate) fn dir(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}"))
    }

    pub(crate) fn log_path(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}.log"))
    }

    /// Everything node `id` logged so far (every incarnation of its process).
    pub(crate) fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    fn founders(&self) -> String {
        self.addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `celldb serve` command of node `id` (founding member).
    pub(crate) fn command(&self, id: u64) -> Command {
        let mut command = match self.netns.get(&id) {
            // `ip netns exec` enters the namespace and execs the program: the same pid, so
            // SIGKILL reaches the node itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(env!("CARGO_BIN_EXE_celldb-cli"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_celldb-cli")),
        };
        command
            .arg("serve")
            .arg("--dir")
            .arg(self.dir(id))
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(self.addrs[&id].to_string())
            .arg("--cluster-id")
            .arg(&self.cluster_id)
            .arg("--cluster")
            .arg(self.founders());
        // Odd nodes run on one worker thread (what three nodes sharing two cores should
        // use), even ones on tokio's default: both shapes go through every test, and a
        // blocking call on a runtime thread shows up as a stalled node instead of hiding
        // behind a second worker.
        if id % 2 == 1 {
            command.args(["--threads", "1"]);
        } else {
            command.env_remove("CELLDB_THREADS");
        }
        if let Some(mesh) = &self.mesh {
            let dial: Vec<String> = mesh
                .dial_map(id)
                .into_iter()
                .filter(|(peer, _)| *peer != id)
                .map(|(peer, a)| format!("{peer}={a}"))
                .collect();
            command.arg("--dial").arg(dial.join(","));
        }
        command
            .env("CELL_SECRET", SECRET)
            .env("RUST_LOG", "warn,celldb=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Starts (or restarts) node `id` and waits until its port is bound.
    pub(crate) fn start(&mut self, id: u64) {
        let command = self.command(id);
        let child = self
            .spawn(id, command)
            .unwrap_or_else(|e| panic!("node {id}: {e}"));
        self.children.insert(id, child);
    }

    /// Spawns `command` as node `id`'s process, stderr appended to its log, and waits for
    /// its "serving" line. `Err` with its log when it exits instead.
    pub(crate) fn spawn(&self, id: u64, mut command: Command) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        if !line.contains("serving") {
            let _ = child.wait();
            return Err(format!("{line}{}", self.log(id)));
        }
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        Ok(child)
    }

    /// SIGKILL node `id` and reap it.
    pub(crate) fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client of the whole group.
    pub(crate) fn client(&self) -> Db {
        Db::connect_cluster(
            self.addrs.values().map(ToString::to_string).collect(),
            false,
            config(),
        )
    }

    /// A connection to node `id` alone.
    pub(crate) async fn node(&self, id: u64) -> Option<CellDbClusterClient> {
        CellDbClusterClient::connect_with(Endpoint::tcp(self.addrs[&id].to_string()), config())
            .await
            .ok()
            .map(|c| c.with_timeout(Duration::from_secs(5)))
    }

    pub(crate) async fn status(&self, id: u64) -> Option<NodeStatus> {
        self.node(id).await?.status().await.ok()
    }

    /// The leader a majority of the running nodes agree on (waits up to 60 s).
    pub(crate) async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
            let mut leaders = BTreeSet::new();
            for &id in self.children.keys() {
                if let Some(s) = self.status(id).await {
                    if s.state == "Leader" {
                        leaders.insert(s.id);
                    }
                    if let Some(l) = s.leader {
                        *votes.entry(l).or_default() += 1;
                    }
                }
            }
            let majority = self.addrs.len() / 2 + 1;
            if let Some((&l, _)) = votes
                .iter()
                .find(|(l, n)| **n >= majority && leaders.contains(l))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within 60 s; votes {votes:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node has applied the same index with the same digest;
    /// returns them. Panics after 60 s with what each node reported.
    pub(crate) async fn converged(&self) -> BTreeMap<u64, (u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut seen = BTreeMap::new();
            for &id in self.children.keys() {
                if let Some(node) = self.node(id).await
                    && let Ok(d) = node.digest().await
                {
                    seen.insert(id, d);
                }
            }
            let values: BTreeSet<(u64, u64)> = seen.values().copied().collect();
            if seen.len() == self.children.len() && values.len() == 1 {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge within 60 s: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One order: reads the shared counter, inserts the order under the next id, bumps the
/// counter. A commit applied twice would insert a second order for the same `(writer, n)`
/// (its retry would conflict and run the body again) — request ids must prevent that.
pub(crate) async fn place_order(db: &Db, writer: u64, n: u64) -> celldb::Result<u64> {
    db.transaction(|tx| async move {
        let next = tx.get::<ClCounter>(0u8).await?.map_or(1, |c| c.next);
        tx.insert(&ClOrder {
            id: next,
            writer,
            n,
        })
        .await?;
        tx.upsert(&ClCounter {
            id: 0,
            next: next + 1,
        })
        .await?;
        Ok(next)
    })
    .await
}

/// Writers place orders until `stop`; returns the acknowledged `(writer, n)` and how many
/// failed (outcome unknown).
pub(crate) async fn writers(
    db: &Db,
    count: u64,
    per_writer: u64,
    progress: Arc<Mutex<usize>>,
) -> (BTreeSet<(u64, u64)>, usize) {
    let mut tasks = Vec::new();
    for writer in 0..count {
        let db = db.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut failed = 0;
            for n in 0..per_writer {
                match place_order(&db, writer, n).await {
                    Ok(_) => {
                        acked.insert((writer, n));
                        *progress.lock().unwrap() += 1;
                    }
                    Err(e) => {
                        eprintln!("writer {writer} order {n}: {e}");
                        failed += 1;
                    }
                }
            }
            (acked, failed)
        }));
    }
    let mut acked = BTreeSet::new();
    let mut failed = 0;
    for task in tasks {
        let (a, f) = task.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    (acked, failed)
}

pub(crate) async fn wait_progress(progress: &Mutex<usize>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while *progress.lock().unwrap() < at_least {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged order exactly once; no order twice; the counter agrees.
pub(crate) async fn check_orders(db: &Db, acked: &BTreeSet<(u64, u64)>) {
    let orders = db.scan::<ClOrder>(..).await.unwrap();
    let mut seen: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for o in &orders {
        *seen.entry((o.writer, o.n)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "orders applied more than once: {twice:?}");
    let lost: Vec<_> = acked.iter().filter(|k| !seen.contains_key(k)).collect();
    assert!(lost.is_empty(), "acknowledged orders lost: {lost:?}");
    let counter = db.get::<ClCounter>(0u8).await.unwrap().unwrap();
    assert_eq!(
        counter.next,
        orders.len() as u64 + 1,
        "the counter and the orders disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_is_killed_while_writes_continue_and_no_order_is_lost_or_doubled() {
    let mut cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let progress = Arc::new(Mutex::new(0));
    let per_writer = 40 * scale() as u64;
    let work = {
        let (db, progress) = (db.clone(), progress.clone());
        tokio::spawn(async move { writers(&db, 4, per_writer, progress).await })
    };
    wait_progress(&progress, 30).await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    wait_progress(&progress, 80).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "a dead node cannot lead");
    cluster.start(leader);
    let (acked, failed) = work.await.unwrap();
    // The client fails over: no order fails for the leader's death (each retries for 30 s).
    assert_eq!(failed, 0, "orders failed across the failover");
    assert_eq!(acked.len() as u64, 4 * per_writer);
    check_orders(&db, &acked).await;
    let digests = cluster.converged().await;
    assert_eq!(digests.len(), 3);
}

/// A client that knows only node `id` (it follows redirects, but while `id` answers it stays).
fn pinned(cluster: &Cluster, id: u64) -> Db {
    Db::connect_cluster(vec![cluster.addrs[&id].to_string()], false, config())
}

async fn wait_for_other_leader(cluster: &Cluster, old: u64, alive: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for &id in alive {
            if let Some(s) = cluster.status(id).await
                && s.state == "Leader"
                && s.id != old
            {
                return s.id;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_lose_no_acknowledged_write_and_replicas_agree_after_healing() {
    let cluster = Cluster::new(3, true, &[]).await;
    let mesh = cluster.mesh.as_ref().unwrap();
    let db = cluster.client();
    let progress = Arc::new(Mutex::new(0));
    let per_writer = 50 * scale() as u64;
    let work = {
        let (db, progress) = (db.clone(), progress.clone());
        tokio::spawn(async move { writers(&db, 3, per_writer, progress).await })
    };
    wait_progress(&progress, 15).await;

    // An isolated leader: the other two elect a new one and writes go on there.
    let leader = cluster.leader().await;
    mesh.isolate(leader);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let second = wait_for_other_leader(&cluster, leader, &others).await;
    let before = *progress.lock().unwrap();
    wait_progress(&progress, before + 10).await;
    mesh.heal();

    // A minority side and a majority side: the leader with one follower keeps committing.
    let lonely = (1..=3).find(|&id| id != second && id != leader).unwrap();
    let majority: Vec<u64> = (1..=3).filter(|&id| id != lonely).collect();
    mesh.partition(&[&[lonely], &majority]);
    let before = *progress.lock().unwrap();
    wait_progress(&progress, before + 10).await;
    mesh.heal();

    // A one-way cut: the leader cannot reach one follower, which still reaches the leader
    // (pre-vote keeps the follower from deposing a leader the others still hear).
    let current = cluster.leader().await;
    let follower = (1..=3).find(|&id| id != current).unwrap();
    mesh.cut(current, follower);
    let before = *progress.lock().unwrap();
    wait_progress(&progress, before + 10).await;
    mesh.heal();

    let (acked, _) = work.await.unwrap();
    check_orders(&db, &acked).await;
    cluster.converged().await;
}

type RegIn = cell_lincheck::models::RegisterInput<u64, u64>;
type RegOut = cell_lincheck::models::RegisterOutput<u64>;

/// One register operation through `db`, recorded.
async fn register_op(
    rec: &cell_lincheck::Recorder<RegIn, RegOut>,
    client: u64,
    db: &Db,
    input: RegIn,
) {
    let call = rec.call(client, input.clone());
    let result = match input {
        RegIn::Put(key, value) => db
            .upsert(&ClRegister { key, value })
            .await
            .map(|()| RegOut::Written),
        RegIn::Get(key) => db
            .get::<ClRegister>(key)
            .await
            .map(|r| RegOut::Read(r.map(|r| r.value))),
    };
    match result {
        Ok(output) => rec.ret(call, output),
        Err(_) => rec.unknown(call),
    }
}

/// The checker's timeout: a guard against a search that never ends, not a speed requirement
/// (a timed-out check is neither verdict the tests want, so a slow machine must not reach it).
const CHECK_GUARD: Duration = Duration::from_secs(600);

/// How long a probe through the cut-off leader may take before the test goes on: a broken
/// build answers it at once, a correct one only after healing.
const PROBE_WAIT: Duration = Duration::from_secs(4);

/// Waits up to [`PROBE_WAIT`] for a probe; true if it finished (a panic in it propagates).
async fn answered_within(probe: &mut tokio::task::JoinHandle<()>) -> bool {
    match tokio::time::timeout(PROBE_WAIT, probe).await {
        Ok(joined) => {
            joined.unwrap();
            true
        }
        Err(_) => false,
    }
}

/// A register workload around a leader partition, checked for linearizability. Besides
/// random operations from clients of the whole group, two probes run through a client that
/// knows only the old leader while it is cut off: a write there, and a read there after a
/// write that completed on the new leader. Returns the checker's verdict.
async fn register_history_under_a_leader_partition(env: &[(&str, &str)]) -> cell_lincheck::Verdict {
    let cluster = Cluster::new(3, true, env).await;
    let mesh = cluster.mesh.as_ref().unwrap();
    let rec = cell_lincheck::Recorder::<RegIn, RegOut>::new();
    let leader = cluster.leader().await;
    let old = pinned(&cluster, leader);
    let full = cluster.client();
    // Key 0 starts at 1, known to everyone.
    register_op(&rec, 100, &full, RegIn::Put(0, 1)).await;
    register_op(&rec, 101, &old, RegIn::Get(0)).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut background = Vec::new();
    for client in 0..3u64 {
        let (db, rec, stop) = (cluster.client(), rec.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ client;
            let mut ops = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && ops < 60 * scale() {
                let x = next_random(&mut x);
                let key = 1 + x % 3;
                let input = if x.is_multiple_of(2) {
                    RegIn::Put(key, (client << 32) | ops as u64)
                } else {
                    RegIn::Get(key)
                };
                register_op(&rec, client, &db, input).await;
                ops += 1;
            }
        }));
    }

    mesh.isolate(leader);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    wait_for_other_leader(&cluster, leader, &others).await;
    // Probe 1: a write through the cut-off leader (it cannot commit: a correct build answers
    // only after healing, through the new leader), then a read through the new one.
    let mut pending_write = {
        let (rec, old) = (rec.clone(), old.clone());
        tokio::spawn(async move { register_op(&rec, 101, &old, RegIn::Put(0, 2)).await })
    };
    // A correct build cannot answer it before healing; a broken one answers at once. Waiting
    // for the answer (not a fixed pause) keeps a slow machine from healing first.
    let write_answered = answered_within(&mut pending_write).await;
    register_op(&rec, 100, &full, RegIn::Get(0)).await;
    // Probe 2: a write on the new leader, then a read through the cut-off one.
    register_op(&rec, 100, &full, RegIn::Put(0, 3)).await;
    let mut pending_read = {
        let (rec, old) = (rec.clone(), old.clone());
        tokio::spawn(async move { register_op(&rec, 102, &old, RegIn::Get(0)).await })
    };
    let read_answered = answered_within(&mut pending_read).await;
    mesh.heal();
    if !write_answered {
        pending_write.await.unwrap();
    }
    if !read_answered {
        pending_read.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in background {
        task.await.unwrap();
    }
    register_op(&rec, 100, &full, RegIn::Get(0)).await;
    let history = rec.finish();
    let answered = history.iter().filter(|op| op.output.is_some()).count();
    assert!(answered >= 60, "only {answered} operations were answered");
    cell_lincheck::check(
        &cell_lincheck::models::Register::new(),
        &history,
        CHECK_GUARD,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_history_across_a_leader_partition_is_linearizable() {
    let verdict = register_history_under_a_leader_partition(&[]).await;
    assert!(verdict.is_linearizable(), "{verdict:?}");
}

/// The checker is trusted because it catches this broken build: reads served by whoever
/// believes it leads, without a read barrier (the cut-off leader answers with stale data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_reads_served_without_a_barrier() {
    let verdict =
        register_history_under_a_leader_partition(&[("CELLDB_BROKEN", "read-without-barrier")])
            .await;
    assert!(
        matches!(verdict, cell_lincheck::Verdict::NotLinearizable { .. }),
        "the broken build passed: {verdict:?}"
    );
}

/// … and this one: commits answered before their entry reaches any journal (the cut-off
/// leader acknowledges a write that is never committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_replies_sent_before_the_entry_is_journaled() {
    let verdict =
        register_history_under_a_leader_partition(&[("CELLDB_BROKEN", "reply-before-commit")])
            .await;
    assert!(
        matches!(verdict, cell_lincheck::Verdict::NotLinearizable { .. }),
        "the broken build passed: {verdict:?}"
    );
}

type BankIn = cell_lincheck::models::BankInput;
type BankOut = cell_lincheck::models::BankOutput;
const ACCOUNTS: u64 = 4;

/// One bank operation through `db`, recorded: a transfer (a read-write transaction) or a read
/// of every balance (a read-only transaction, validated after a read barrier).
async fn bank_op(
    rec: &cell_lincheck::Recorder<BankIn, BankOut>,
    client: u64,
    db: &Db,
    input: BankIn,
) {
    let call = rec.call(client, input.clone());
    let result = match input {
        BankIn::Transfer { from, to, amount } => {
            db.transaction(|tx| async move {
                let mut a = tx
                    .get::<ClAccount>(from as u64)
                    .await?
                    .ok_or_else(|| DB::Error::abort("no account"))?;
                let mut b = tx
                    .get::<ClAccount>(to as u64)
                    .await?
                    .ok_or_else(|| DB::Error::abort("no account"))?;
                if a.balance < amount {
                    return Ok(BankOut::Insufficient);
                }
                a.balance -= amount;
                b.balance += amount;
                tx.update(&a).await?;
                tx.update(&b).await?;
                Ok(BankOut::Transferred)
            })
            .await
        }
        BankIn::ReadAll => {
            db.transaction(|tx| async move {
                let mut balances = Vec::new();
                for id in 0..ACCOUNTS {
                    let account = tx
                        .get::<ClAccount>(id)
                        .await?
                        .ok_or_else(|| DB::Error::abort("no account"))?;
                    balances.push(account.balance);
                }
                Ok(BankOut::Balances(balances))
            })
            .await
        }
    };
    match result {
        Ok(output) => rec.ret(call, output),
        Err(_) => rec.unknown(call),
    }
}

/// A bank workload while the leader is SIGKILLed and restarted: linearizable, and the money
/// is all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_history_across_a_leader_kill_is_linearizable() {
    let mut cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    db.transaction(|tx| async move {
        for id in 0..ACCOUNTS {
            tx.insert(&ClAccount { id, balance: 100 }).await?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let rec = cell_lincheck::Recorder::<BankIn, BankOut>::new();
    let progress = Arc::new(Mutex::new(0usize));
    let mut clients = Vec::new();
    for client in 0..3u64 {
        let (db, rec, progress) = (cluster.client(), rec.clone(), progress.clone());
        clients.push(tokio::spawn(async move {
            let mut x = 0x2545_f491_4f6c_dd1du64 ^ (client + 1);
            for _ in 0..40 * scale() {
                let x = next_random(&mut x);
                let input = if x.is_multiple_of(3) {
                    BankIn::ReadAll
                } else {
                    let from = (x % ACCOUNTS) as usize;
                    let to = ((x / 7 + 1 + from as u64) % ACCOUNTS) as usize;
                    let to = if to == from {
                        (from + 1) % ACCOUNTS as usize
                    } else {
                        to
                    };
                    BankIn::Transfer {
                        from,
                        to,
                        amount: (x % 60) as i64,
                    }
                };
                bank_op(&rec, client, &db, input).await;
                *progress.lock().unwrap() += 1;
            }
        }));
    }
    wait_progress(&progress, 30).await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    wait_progress(&progress, 60).await;
    cluster.start(leader);
    for client in clients {
        client.await.unwrap();
    }
    let history = rec.finish();
    let answered = history.iter().filter(|op| op.output.is_some()).count();
    assert!(answered >= 60, "only {answered} operations were answered");
    let verdict = cell_lincheck::check(
        &cell_lincheck::models::Bank::new(vec![100; ACCOUNTS as usize]),
        &history,
        CHECK_GUARD,
    );
    assert!(verdict.is_linearizable(), "{verdict:?}");
    let total: i64 = db
        .scan::<ClAccount>(..)
        .await
        .unwrap()
        .iter()
        .map(|a| a.balance)
        .sum();
    assert_eq!(
        total,
        100 * ACCOUNTS as i64,
        "money was created or destroyed"
    );
    cluster.converged().await;
}

/// The request ids themselves: the same request sent twice (a retry after a lost answer) is
/// answered with the first outcome — the same log index, not a conflict — and applied once;
/// a request of a session the group does not hold is refused, not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_gets_its_first_outcome_and_is_applied_once() {
    use celldb::raft::CmdBuilder;
    use celldb::raft::cluster::wire::{ClusterError, CommitReply};
    let cluster = Cluster::new(3, false, &[]).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).await.unwrap();
    let session = node.open_session().await.unwrap();
    // Insert-if-absent: applied a second time, its check would fail (a conflict).
    let mut cmd = CmdBuilder::new(0);
    cmd.check("t.dedup", b"k", None).put("t.dedup", b"k", b"v1");
    cmd.request(session, 1, 1);
    let bytes = cmd.finish().unwrap().0;
    let first = node.commit(bytes.clone()).await.unwrap();
    let CommitReply::Committed(index) = first else {
        panic!("the first attempt was not committed: {first:?}")
    };
    let retry = node.commit(bytes.clone()).await.unwrap();
    assert!(
        matches!(retry, CommitReply::Committed(i) if i == index),
        "the retry was not answered with the first outcome: {retry:?}"
    );
    // A new request with the same check does conflict: the key is there once.
    let mut again = CmdBuilder::new(0);
    again
        .check("t.dedup", b"k", None)
        .put("t.dedup", b"k", b"v2");
    again.request(session, 2, 2);
    let second = node.commit(again.finish().unwrap().0).await.unwrap();
    assert!(matches!(second, CommitReply::Conflict), "{second:?}");
    // A session nobody opened.
    let mut stray = CmdBuilder::new(0);
    stray.put("t.dedup", b"x", b"1").request(u64::MAX - 7, 1, 1);
    match node.commit(stray.finish().unwrap().0).await {
        Err(cell_sdk::CallError::App(ClusterError::SessionExpired)) => {}
        other => panic!("a request of an unknown session was not refused: {other:?}"),
    }
    assert_eq!(
        node.read("t.dedup".into(), b"x".to_vec(), false)
            .await
            .unwrap(),
        None,
        "the refused request was applied"
    );
    assert_eq!(
        node.read("t.dedup".into(), b"k".to_vec(), false)
            .await
            .unwrap(),
        Some(b"v1".to_vec())
    );
}
