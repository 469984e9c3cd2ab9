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
//! - bad input on the raft port: garbage bytes, a node of another cluster, a reused node id,
//!   a wiped node rejoining under its old id — each refused with a log line, nothing applied;
//! - membership: a node added with `celldb cluster add` while writes continue.
//!
//! Bounded: each scenario runs a few hundred operations. Longer runs: `CELLDB_CLUSTER_LONG=1`
//! multiplies the operation counts by 20 (docs/replication.md).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

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

const SECRET: &str = "celldb-cluster-test-secret";

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
}

fn free_addr() -> SocketAddr {
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
        };
        for id in 1..=n {
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
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

    pub(crate) fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
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
async fn place_order(db: &Db, writer: u64, n: u64) -> celldb::Result<u64> {
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
async fn writers(
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

async fn wait_progress(progress: &Mutex<usize>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while *progress.lock().unwrap() < at_least {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged order exactly once; no order twice; the counter agrees.
async fn check_orders(db: &Db, acked: &BTreeSet<(u64, u64)>) {
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
    assert!(
        acked.len() >= 100,
        "too few orders acknowledged ({}; {failed} failed)",
        acked.len()
    );
    check_orders(&db, &acked).await;
    let digests = cluster.converged().await;
    assert_eq!(digests.len(), 3);
}
