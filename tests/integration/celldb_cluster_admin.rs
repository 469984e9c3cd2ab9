//! Administration of a celldb cluster and bad input on its raft port, against real
//! `celldb serve --node-id` processes on loopback (the harness of `celldb_cluster`):
//!
//! - bad input on the raft port, each refused with a log line and nothing applied: garbage
//!   bytes, a node of another cluster, a second process under a running node's id, a wiped
//!   node rejoining under its old id;
//! - membership under load: `celldb cluster add` (a learner, then a voter) and
//!   `celldb cluster remove` while writers place orders;
//! - a follower SIGKILLed while a snapshot is being received or installed
//!   (`--snapshot-every 30`), then restarted: it converges to the others' digest;
//! - `celldb cluster status`: one line per node with its role, one leader;
//! - records of 1 MB commit and a follower behind by them catches up (AppendEntries split
//!   under the frame limit, deadlines that grow with the bytes); concurrent orders on a
//!   healthy cluster all commit (no spurious error from reads of more than one state).
//!
//! The tests of this file run one at a time (each runs three or four node processes; two
//! shared cores stretch elections when several clusters run at once).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use crate::celldb_cluster::{
    Cluster, SECRET, check_orders, config, free_addr, place_order, wait_progress,
};
use crate::celldb_crash::next_random;
use cell_sdk::{Endpoint, protein};
use celldb::Db;
use celldb::raft::cluster::wire::{CellDbClusterClient, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cell_sdk::cell_remote!(DB = "celldb");

/// One test of this file at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A record with a large value (40 KB): a hundred and fifty make a snapshot of several MB.
#[protein]
#[DB::persist(table = "cla_blobs")]
pub struct ClaBlob {
    #[DB::key]
    id: u64,
    body: String,
}

/// Processes this file started itself (not the cluster's founding processes); SIGKILLed
/// when dropped.
#[derive(Default)]
struct Procs(BTreeMap<u64, Child>);

impl Procs {
    /// Spawns `command` through the cluster's harness (its stderr goes to
    /// `cluster.log(log_id)`), and waits for its "serving" line.
    fn spawn(&mut self, cluster: &Cluster, log_id: u64, command: Command) {
        let child = cluster
            .spawn(log_id, command)
            .unwrap_or_else(|log| panic!("process {log_id} did not start: {log}"));
        self.0.insert(log_id, child);
    }

    fn kill(&mut self, log_id: u64) {
        if let Some(mut child) = self.0.remove(&log_id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.0) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `celldb serve --node-id` command that is not one of the cluster's founders' own:
/// `members` is its `--cluster` (none: a node waiting for `celldb cluster add`).
fn serve_command(
    dir: &Path,
    node: u64,
    listen: &str,
    cluster_id: &str,
    members: Option<&str>,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .arg("serve")
        .arg("--dir")
        .arg(dir)
        .arg("--node-id")
        .arg(node.to_string())
        .arg("--listen")
        .arg(listen)
        .arg("--cluster-id")
        .arg(cluster_id);
    if let Some(members) = members {
        command.arg("--cluster").arg(members);
    }
    command
        .env("CELL_SECRET", SECRET)
        .env("RUST_LOG", "warn,celldb=info");
    command
}

/// The `celldb` command line (`celldb cluster …`), with the cluster's secret.
fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .args(args)
        .env("CELL_SECRET", SECRET)
        .env("RUST_LOG", "warn");
    command
}

fn raft_url(cluster: &Cluster) -> String {
    let addrs: Vec<String> = cluster.addrs.values().map(ToString::to_string).collect();
    format!("raft://{}", addrs.join(","))
}

fn addrs_of(cluster: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| cluster.addrs[id].to_string()).collect()
}

/// A `celldb cluster …` process whose stdout is read line by line while it runs.
struct CliRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl CliRun {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
    }

    /// The first stdout line starting with `prefix` (waits up to `secs`).
    async fn line(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.drain();
            if let Some(line) = self.stdout.iter().find(|l| l.starts_with(prefix)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line {prefix:?} within {secs} s; stdout {:?}, stderr {}",
                self.stdout,
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `secs`) for the process to exit: its status and whole stdout.
    async fn finish(mut self, secs: u64) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {secs} s; stdout {:?}, stderr {}",
                    self.stdout,
                    self.stderr.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The reader thread ends with the pipe; what it read before is in the channel.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        let stderr = self.stderr.lock().unwrap().clone();
        (status, self.stdout.join("\n"), stderr)
    }
}

/// Runs a `celldb cluster …` command to its end (off the runtime's threads).
async fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let mut command = cli(args);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn node_at(addr: &str) -> Option<CellDbClusterClient> {
    CellDbClusterClient::connect_with(Endpoint::tcp(addr.to_string()), config())
        .await
        .ok()
        .map(|c| c.with_timeout(Duration::from_secs(5)))
}

async fn status_at(addr: &str) -> Option<NodeStatus> {
    node_at(addr).await?.status().await.ok()
}

/// `(applied index, digest of the replicated data)` of the node at `addr`.
async fn digest_at(addr: &str) -> Option<(u64, u64)> {
    node_at(addr).await?.digest().await.ok()
}

/// Waits until the nodes at `addrs` report one applied index and one digest; returns them.
async fn converged_at(addrs: &[String]) -> (u64, u64) {
    converged_within(addrs, 60).await
}

/// [`converged_at`], waiting up to `secs`.
async fn converged_within(addrs: &[String], secs: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut seen = BTreeMap::new();
        for addr in addrs {
            if let Some(d) = digest_at(addr).await {
                seen.insert(addr.clone(), d);
            }
        }
        let values: BTreeSet<(u64, u64)> = seen.values().copied().collect();
        if seen.len() == addrs.len() && values.len() == 1 {
            return values.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge within {secs} s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader that a majority of the nodes at `ids` name, and that says it leads (60 s).
async fn leader_among(cluster: &Cluster, ids: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        let mut leaders = BTreeSet::new();
        for &id in ids {
            if let Some(s) = cluster.status(id).await {
                if s.state == "Leader" {
                    leaders.insert(s.id);
                }
                if let Some(l) = s.leader {
                    *votes.entry(l).or_default() += 1;
                }
            }
        }
        if let Some((&l, _)) = votes
            .iter()
            .find(|(l, n)| **n > ids.len() / 2 && leaders.contains(l))
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no leader among {ids:?} within 60 s; votes {votes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 30 s) until the log of one of `ids` has a line containing `needle`;
/// returns that node and the line.
async fn wait_log(cluster: &Cluster, ids: &[u64], needle: &str) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for &id in ids {
            if let Some(line) = cluster.log(id).lines().find(|l| l.contains(needle)) {
                return (id, line.to_string());
            }
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = ids
                .iter()
                .map(|id| format!("--- log {id}:\n{}", cluster.log(*id)))
                .collect();
            panic!("no log line {needle:?} within 30 s\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Messages refused at the envelope, summed over the nodes at `ids`.
async fn refused(cluster: &Cluster, ids: &[u64]) -> u64 {
    let mut sum = 0;
    for &id in ids {
        sum += cluster.status(id).await.map_or(0, |s| s.refused);
    }
    sum
}

/// Waits until the refusals counted on `ids` exceed `than` (30 s); returns the sum.
async fn refused_above(cluster: &Cluster, ids: &[u64], than: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = refused(cluster, ids).await;
        if now > than {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {ids:?} counted no new refusal within 30 s (still {now})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Places orders `from..to` of writer `writer`, one after the other; all must succeed.
async fn orders(db: &Db, writer: u64, from: u64, to: u64) -> BTreeSet<(u64, u64)> {
    for n in from..to {
        place_order(db, writer, n)
            .await
            .unwrap_or_else(|e| panic!("order {n}: {e}"));
    }
    (from..to).map(|n| (writer, n)).collect()
}

/// `count` writers (ids from `first`) place orders until `stop`; returns the acknowledged
/// `(writer, n)` and how many failed (outcome unknown).
fn spawn_writers(
    db: &Db,
    first: u64,
    count: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<usize>>,
) -> tokio::task::JoinHandle<(BTreeSet<(u64, u64)>, usize)> {
    let db = db.clone();
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for writer in first..first + count {
            let (db, stop, progress) = (db.clone(), stop.clone(), progress.clone());
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut failed, mut n) = (BTreeSet::new(), 0, 0);
                while !stop.load(Ordering::Relaxed) {
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
                    n += 1;
                }
                (acked, failed)
            }));
        }
        let (mut acked, mut failed) = (BTreeSet::new(), 0);
        for task in tasks {
            let (a, f) = task.await.unwrap();
            acked.extend(a);
            failed += f;
        }
        (acked, failed)
    })
}

/// Waits until the node at one of `addrs` that leads lists exactly `voters` (60 s).
async fn wait_voters(addrs: &[String], voters: &[u64]) -> NodeStatus {
    let want: BTreeSet<u64> = voters.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    loop {
        last.clear();
        for addr in addrs {
            if let Some(s) = status_at(addr).await {
                let ids: BTreeSet<u64> = s.voters.iter().map(|(id, _)| *id).collect();
                if s.state == "Leader" && ids == want {
                    return s;
                }
                last.push((s.id, s.state, ids));
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader lists voters {want:?} within 60 s: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 40 KB of text for blob `id` (each blob its own).
fn body(id: u64) -> String {
    let fill = char::from(b'a' + (id % 26) as u8);
    let mut body = format!("blob {id}:");
    body.extend(std::iter::repeat_n(fill, 40_000));
    body
}

/// Inserts blobs `from..from + count` from four concurrent clients; records the
/// acknowledged ones.
async fn write_blobs(db: &Db, from: u64, count: u64, acked: &mut BTreeSet<u64>) {
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for id in (from..from + count).filter(|id| id % 4 == lane) {
                match db.insert(&ClaBlob { id, body: body(id) }).await {
                    Ok(_) => acked.push(id),
                    Err(e) => eprintln!("blob {id}: {e}"),
                }
            }
            acked
        }));
    }
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
}

/// Bytes that are not the runtime's handshake.
fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..8 * 1024)
        .flat_map(|_| next_random(&mut state).to_le_bytes())
        .collect();
    vec![
        ("64 KiB of random bytes", random),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: celldb\r\n\r\n".to_vec(),
        ),
        ("a frame header announcing 4 GiB", vec![0xff; 16]),
        ("a connection closed at once", Vec::new()),
    ]
}

/// The data (digest `digest`) is unchanged on every node of `addrs`.
async fn assert_data_unchanged(addrs: &[String], digest: u64) {
    for a in addrs {
        assert_eq!(
            digest_at(a).await.unwrap().1,
            digest,
            "the data on {a} changed"
        );
    }
}

/// The node at `addr` (`who`) is never a leader over ten looks 200 ms apart.
async fn never_leads(addr: &str, who: &str) {
    for _ in 0..10 {
        let s = status_at(addr).await.unwrap();
        assert_ne!(s.state, "Leader", "{who} won an election: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_raft_port_is_refused_and_the_node_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let mut acked = orders(&db, 0, 0, 10).await;
    let all = addrs_of(&cluster, &[1, 2, 3]);
    let before = converged_at(&all).await;
    let target = cluster.leader().await;
    let addr = cluster.addrs[&target];
    for (what, bytes) in garbage() {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The node may close the connection before it has read everything: a failed write
        // is one way of being refused.
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut reply))
            .await
            .unwrap_or_else(|_| panic!("{what}: node {target} kept the connection open"));
        // Closed (or reset): nothing for a peer that has not authenticated, not even why.
        if read.is_ok() {
            assert!(
                reply.is_empty(),
                "{what}: node {target} answered {} bytes to a peer that never authenticated",
                reply.len()
            );
        }
    }
    let (_, line) = wait_log(&cluster, &[target], "unauthenticated peer closed").await;
    assert!(line.contains("peer failed authentication"), "{line}");
    // Nothing applied: the data is as before on every node.
    assert_data_unchanged(&all, before.1).await;
    // The node still serves, and the group still commits.
    assert!(cluster.status(target).await.is_some(), "node {target} died");
    acked.extend(orders(&db, 0, 10, 30).await);
    check_orders(&db, &acked).await;
    let digests = cluster.converged().await;
    assert!(digests[&target].0 > before.0, "{digests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_and_nothing_is_applied() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let mut acked = orders(&db, 0, 0, 10).await;
    let all = addrs_of(&cluster, &[1, 2, 3]);
    let before = converged_at(&all).await;
    let refused_before = refused(&cluster, &[1, 2, 3]).await;
    // Node 1 of cluster "other", founded (wrongly) with the addresses of nodes 2 and 3 of
    // this cluster: it asks them for votes.
    let other = free_addr().to_string();
    let members = format!("1={other},2={},3={}", cluster.addrs[&2], cluster.addrs[&3]);
    let mut procs = Procs::default();
    let command = serve_command(
        &cluster.base.path().join("other-1"),
        1,
        &other,
        "other",
        Some(&members),
    );
    procs.spawn(&cluster, 91, command);
    let (id, line) = wait_log(&cluster, &[2, 3], "of cluster \"other\" reached node").await;
    assert!(
        line.contains(&format!(
            "a message from node 1 of cluster \"other\" reached node {id} of cluster \"test\": \
             refused"
        )),
        "{line}"
    );
    let (_, line) = wait_log(&cluster, &[91], "refused by the peer").await;
    assert!(line.contains("of cluster \"test\""), "{line}");
    refused_above(&cluster, &[2, 3], refused_before).await;
    // It gets no vote: it never leads, and the group's data and members are as they were.
    never_leads(&other, "the foreign node").await;
    assert_data_unchanged(&all, before.1).await;
    let leader = cluster.leader().await;
    let status = cluster.status(leader).await.unwrap();
    let voters: Vec<u64> = status.voters.iter().map(|(id, _)| *id).collect();
    assert_eq!(voters, [1, 2, 3]);
    assert_eq!(status.cluster, "test");
    acked.extend(orders(&db, 0, 10, 30).await);
    check_orders(&db, &acked).await;
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_under_a_running_nodes_id_is_refused() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let mut acked = orders(&db, 0, 0, 10).await;
    let all = addrs_of(&cluster, &[1, 2, 3]);
    let before = converged_at(&all).await;
    let refused_before = refused(&cluster, &[2, 3]).await;
    // A second "node 1": its own fresh directory (another incarnation), another port, the
    // real nodes 2 and 3 as its peers. It founds a group of its own view and asks 2 and 3
    // for votes.
    let impostor = free_addr().to_string();
    let members = format!(
        "1={impostor},2={},3={}",
        cluster.addrs[&2], cluster.addrs[&3]
    );
    let mut procs = Procs::default();
    let command = serve_command(
        &cluster.base.path().join("impostor-1"),
        1,
        &impostor,
        "test",
        Some(&members),
    );
    procs.spawn(&cluster, 92, command);
    let (_, line) = wait_log(&cluster, &[2, 3], "node 1 presents incarnation").await;
    assert!(
        line.contains("but this cluster knows node 1 as incarnation") && line.contains("Refused"),
        "{line}"
    );
    let (_, line) = wait_log(&cluster, &[92], "refused by the peer").await;
    assert!(line.contains("presents incarnation"), "{line}");
    refused_above(&cluster, &[2, 3], refused_before).await;
    never_leads(&impostor, "the impostor").await;
    assert_data_unchanged(&all, before.1).await;
    // The real node 1 is still a member that replicates: all three converge after writes.
    acked.extend(orders(&db, 0, 10, 30).await);
    check_orders(&db, &acked).await;
    let digests = cluster.converged().await;
    assert!(digests[&1].0 > before.0, "{digests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoining_under_its_old_id_is_refused() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let mut acked = orders(&db, 0, 0, 10).await;
    cluster.converged().await;
    let leader = cluster.leader().await;
    // A follower other than node 1 (node 1 would found a new group on an empty directory).
    let victim = if leader == 3 { 2 } else { 3 };
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != victim).collect();
    let refused_before = refused(&cluster, &others).await;
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.dir(victim)).unwrap();
    cluster.start(victim);
    let (_, line) = wait_log(
        &cluster,
        &others,
        &format!("node {victim} presents incarnation"),
    )
    .await;
    assert!(line.contains("was wiped"), "{line}");
    let counted = refused_above(&cluster, &others, refused_before).await;
    // The two others keep committing; the wiped node never leads.
    for n in 10..40 {
        place_order(&db, 0, n).await.unwrap();
        acked.insert((0, n));
        if let Some(s) = cluster.status(victim).await {
            assert_ne!(s.state, "Leader", "the wiped node leads: {s:?}");
        }
    }
    check_orders(&db, &acked).await;
    let (applied, digest) = converged_at(&addrs_of(&cluster, &others)).await;
    // It is still refused, again and again.
    refused_above(&cluster, &others, counted).await;
    let wiped = digest_at(&cluster.addrs[&victim].to_string())
        .await
        .unwrap();
    assert_ne!(
        wiped,
        (applied, digest),
        "the wiped node holds the group's state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_added_and_another_removed_while_writers_place_orders() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let cluster_id = cluster.status(1).await.unwrap().cluster;
    let db = cluster.client();
    let url = raft_url(&cluster);
    let progress = Arc::new(Mutex::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&db, 0, 4, stop.clone(), progress.clone());
    wait_progress(&progress, 20).await;

    // Add a node: `cluster add` allocates its id and adds it as a learner; the node is
    // started with that id; `cluster add` makes it a voter once it has caught up.
    let new_addr = free_addr().to_string();
    let mut add = CliRun::start(cli(&[
        "cluster",
        "add",
        "--url",
        &url,
        "--addr",
        &new_addr,
        "--timeout",
        "60",
    ]));
    let line = add.line("node id ", 30).await;
    let new_id: u64 = line["node id ".len()..].trim().parse().unwrap();
    assert!(new_id > 3, "node id {new_id} was already in use");
    let at_add = *progress.lock().unwrap();
    let mut procs = Procs::default();
    let command = serve_command(&cluster.dir(new_id), new_id, &new_addr, &cluster_id, None);
    procs.spawn(&cluster, new_id, command);
    let (status, stdout, stderr) = add.finish(120).await;
    assert!(
        status.success(),
        "cluster add: {status}\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("node {new_id} is a voter")),
        "{stdout}"
    );
    let added = *progress.lock().unwrap();
    assert!(
        added > at_add,
        "no order was acknowledged while node {new_id} joined"
    );
    let mut all: Vec<String> = addrs_of(&cluster, &[1, 2, 3]);
    all.push(new_addr.clone());
    wait_voters(&all, &[1, 2, 3, new_id]).await;
    wait_progress(&progress, added + 20).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut failed) = writers.await.unwrap();
    // All four replicas hold the same data.
    converged_at(&all).await;

    // Remove node 2 while other writers place orders.
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&db, 100, 4, stop.clone(), progress.clone());
    let before_remove = *progress.lock().unwrap();
    wait_progress(&progress, before_remove + 20).await;
    let (status, stdout, stderr) =
        run_cli(&["cluster", "remove", "--url", &url, "--node-id", "2"]).await;
    assert!(
        status.success(),
        "cluster remove: {status}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("node 2 removed"), "{stdout}");
    let remaining = vec![
        cluster.addrs[&1].to_string(),
        cluster.addrs[&3].to_string(),
        new_addr.clone(),
    ];
    wait_voters(&remaining, &[1, 3, new_id]).await;
    let removed = *progress.lock().unwrap();
    wait_progress(&progress, removed + 20).await;
    stop.store(true, Ordering::Relaxed);
    let (b, f) = writers.await.unwrap();
    acked.extend(b);
    failed += f;
    eprintln!("{} orders acknowledged, {failed} failed", acked.len());
    check_orders(&db, &acked).await;
    converged_at(&remaining).await;
}

/// Starts founding node `id` with a raft snapshot every 30 entries (30 kept behind it).
fn start_snapshotting(cluster: &Cluster, procs: &mut Procs, id: u64) {
    let mut command = cluster.command(id);
    command.arg("--snapshot-every").arg("30");
    procs.spawn(cluster, id, command);
}

/// Transfer files in node `id`'s staging directory: `incoming.*` (chunks being received),
/// `staged.*` (received and verified; being installed).
fn transfer_files(cluster: &Cluster, id: u64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cluster.dir(id).join("raft-snapshot")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("incoming.") || n.starts_with("staged."))
        .collect()
}

/// Polls node `id`'s staging directory and SIGKILLs the node the moment a transfer file
/// appears. `Some(files)`: the files the dead node left (it died mid-transfer or
/// mid-install); `None`: it caught up to `target` (or installed the snapshot) first.
async fn kill_mid_transfer(
    cluster: &Cluster,
    procs: &mut Procs,
    id: u64,
    target: u64,
) -> Option<Vec<String>> {
    let addr = cluster.addrs[&id].to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut polls = 0u64;
    loop {
        if !transfer_files(cluster, id).is_empty() {
            procs.kill(id);
            let left = transfer_files(cluster, id);
            return (!left.is_empty()).then_some(left);
        }
        polls += 1;
        if polls.is_multiple_of(200)
            && let Some(s) = status_at(&addr).await
            && s.applied.unwrap_or(0) >= target
        {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} neither received a snapshot nor caught up within 30 s:\n{}",
            cluster.log(id)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_while_a_snapshot_installs_converges_after_restart() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(3, false, &[]).await;
    // The same founders again, restarted with a short log.
    for id in 1..=3 {
        cluster.kill(id);
    }
    let mut procs = Procs::default();
    for id in 1..=3 {
        start_snapshotting(&cluster, &mut procs, id);
    }
    let leader = leader_among(&cluster, &[1, 2, 3]).await;
    let follower = if leader == 3 { 2 } else { 3 };
    let live: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != follower).collect();
    let db = cluster.client();
    let mut acked = BTreeSet::new();
    let mut next = 0;
    let mut hit = None;
    let started = Instant::now();
    for attempt in 1..=4 {
        procs.kill(follower);
        // 150 records of 40 KB while it is down: the leader snapshots and purges its log
        // past the follower's, which must then catch up by snapshot (6 MB and more).
        write_blobs(&db, next, 150, &mut acked).await;
        next += 150;
        eprintln!("{:?}: {next} blobs written", started.elapsed());
        let leader = leader_among(&cluster, &live).await;
        let target = cluster.status(leader).await.unwrap().applied.unwrap();
        start_snapshotting(&cluster, &mut procs, follower);
        match kill_mid_transfer(&cluster, &mut procs, follower, target).await {
            Some(files) => {
                eprintln!(
                    "{:?}: attempt {attempt}: node {follower} SIGKILLed holding {files:?}",
                    started.elapsed()
                );
                hit = Some(files);
                break;
            }
            None => eprintln!("attempt {attempt}: node {follower} caught up before the kill"),
        }
    }
    let files = hit.expect("the follower was never caught mid-transfer in 4 attempts");
    // Restarted, it gets (or finishes) the snapshot and converges.
    start_snapshotting(&cluster, &mut procs, follower);
    let (applied, _) = converged_at(&addrs_of(&cluster, &[1, 2, 3])).await;
    eprintln!("{:?}: converged at {applied}", started.elapsed());
    assert!(applied >= next, "applied {applied} < {next} writes");
    let left = transfer_files(&cluster, follower);
    assert!(
        left.is_empty(),
        "transfer files left after catching up: {left:?} (killed holding {files:?})"
    );
    // Every acknowledged record, with its value.
    let blobs = db.scan::<ClaBlob>(..).await.unwrap();
    let stored: BTreeMap<u64, String> = blobs.into_iter().map(|b| (b.id, b.body)).collect();
    for id in &acked {
        assert!(
            stored.get(id).is_some_and(|b| *b == body(*id)),
            "acknowledged blob {id} lost or wrong"
        );
    }
    assert!(
        acked.len() >= 120,
        "only {} blobs acknowledged",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_prints_each_nodes_role_and_one_leader() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(3, false, &[]).await;
    let url = raft_url(&cluster);
    let roles = ["Leader", "Follower", "Candidate", "Learner"];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, stdout, stderr) = run_cli(&["cluster", "status", "--url", &url]).await;
        assert!(status.success(), "{status}\n{stdout}\n{stderr}");
        let mut leaders = Vec::new();
        for (id, addr) in &cluster.addrs {
            let prefix = format!("{addr}: node {id} of cluster test: ");
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no line for node {id}:\n{stdout}"));
            let role = roles
                .iter()
                .find(|r| line[prefix.len()..].starts_with(&format!("{r} (leader ")))
                .unwrap_or_else(|| panic!("no role in {line:?}"));
            assert!(
                line.contains(", term ") && line.contains(", applied "),
                "{line}"
            );
            if *role == "Leader" {
                assert!(line.contains(&format!("Leader (leader {id})")), "{line}");
                leaders.push(*id);
            }
        }
        let voters: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("  voters:"))
            .collect();
        assert_eq!(voters.len(), 3, "{stdout}");
        // A node the leader has not reached yet knows no members; two nodes may both say
        // Leader for a moment (an old leader that has not heard of the new term yet): ask
        // again until every node lists the three voters and exactly one leads.
        let all_voters = voters.iter().all(|line| {
            cluster
                .addrs
                .values()
                .all(|addr| line.contains(&addr.to_string()))
        });
        if all_voters && leaders.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not one leader and three voters on every node within 30 s:\n{stdout}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A node that is down is reported as such; the others still answer.
    cluster.kill(3);
    let (status, stdout, stderr) = run_cli(&["cluster", "status", "--url", &url]).await;
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{}: no answer", cluster.addrs[&3])),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{}: node 1 of cluster test: ", cluster.addrs[&1])));
}

/// Inserts blobs `ids` of `size` bytes one after the other; panics with the nodes' logs
/// when one fails.
async fn insert_large(cluster: &Cluster, db: &Db, ids: std::ops::Range<u64>, size: usize) {
    for id in ids {
        let body: String = std::iter::repeat_n('z', size).collect();
        if let Err(e) = db.insert(&ClaBlob { id, body }).await {
            let logs: Vec<String> = cluster
                .addrs
                .keys()
                .map(|n| format!("--- node {n}:\n{}", cluster.log(*n)))
                .collect();
            panic!("record {id} of {size} bytes: {e}\n{}", logs.join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_megabyte_commit_and_a_follower_behind_by_them_catches_up() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    // 1 MB records (the limit of one entry is 12 MiB) on a healthy group.
    insert_large(&cluster, &db, 0..4, 1 << 20).await;
    // A follower behind by several of them catches up (they are not all sent in one
    // message over the frame limit, nor in one call that cannot finish in time).
    let leader = cluster.leader().await;
    let follower = if leader == 3 { 2 } else { 3 };
    cluster.kill(follower);
    insert_large(&cluster, &db, 4..12, 1 << 20).await;
    cluster.start(follower);
    converged_within(&addrs_of(&cluster, &[1, 2, 3]), 30).await;
    assert_eq!(db.scan::<ClaBlob>(..).await.unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_on_a_healthy_cluster_all_commit() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for writer in 0..4u64 {
        let (db, errors) = (db.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            for n in 0..40 {
                match place_order(&db, writer, n).await {
                    Ok(_) => {
                        acked.insert((writer, n));
                    }
                    Err(e) => errors
                        .lock()
                        .unwrap()
                        .push(format!("writer {writer} order {n}: {e}")),
                }
            }
            acked
        }));
    }
    let mut acked = BTreeSet::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    // No node died and no network failed: every transaction commits, after retries of its
    // conflicts.
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} orders failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    check_orders(&db, &acked).await;
}

/// A client commit that writes the cluster's own bookkeeping (client sessions, the node-id
/// counter) is refused before raft sees it: a forged session record would stop every replica
/// that applied it. The group goes on committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_commit_into_the_clusters_bookkeeping_is_refused() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new(3, false, &[]).await;
    let db = cluster.client();
    let mut acked = orders(&db, 0, 0, 5).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).await.unwrap();
    for keyspace in ["celldb.sessions", "celldb.nodes"] {
        let mut cmd = celldb::raft::CmdBuilder::new(0);
        cmd.put(keyspace, &1u64.to_be_bytes(), b"not a record");
        let bytes = cmd.finish().unwrap().0;
        match node.commit(bytes).await {
            Err(cell_sdk::CallError::App(
                celldb::raft::cluster::wire::ClusterError::BadRequest(why),
            )) => assert!(why.contains("own bookkeeping"), "{why}"),
            other => panic!("a write to {keyspace} was not refused: {other:?}"),
        }
    }
    // A check of a session record is refused too (its bytes depend on the build).
    let mut cmd = celldb::raft::CmdBuilder::new(0);
    cmd.check("celldb.sessions", &1u64.to_be_bytes(), None);
    cmd.put("t.orders", &u64::MAX.to_be_bytes(), b"unused");
    match node.commit(cmd.finish().unwrap().0).await {
        Err(cell_sdk::CallError::App(celldb::raft::cluster::wire::ClusterError::BadRequest(
            why,
        ))) => assert!(why.contains("own bookkeeping"), "{why}"),
        other => panic!("a check of celldb.sessions was not refused: {other:?}"),
    }
    acked.extend(orders(&db, 0, 5, 15).await);
    check_orders(&db, &acked).await;
    cluster.converged().await;
}
