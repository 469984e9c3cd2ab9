//! `orders-member` for real: three voters of a celldb raft group (in this test process, over
//! TCP), an `orders` client process (`CELLDB_URL=raft://…`), and `orders-member` processes that
//! join the group as a learner with a node id from `cluster add`. The member reads the client's
//! orders from its own replica, its writes reach the group, and its load run keeps every
//! acknowledged order exactly once while the leader is stopped in the middle.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::{Endpoint, Membrane, MembraneConfig, Secret, SynapseConfig};
use celldb::Db;
use celldb::raft::cluster::wire::CellDbClusterServer;
use celldb::raft::cluster::{ClusterConfig, ClusterNode};
use openraft::rt::WatchReceiver as _;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "orders-member-test";
const CLUSTER: &str = "orders-test";

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn start_voter(
    id: u64,
    dir: &std::path::Path,
    founders: &BTreeMap<u64, String>,
) -> ClusterNode {
    let listen = founders[&id].clone();
    let mut config = ClusterConfig::new(CLUSTER, id, &listen);
    config.founders = founders.clone();
    config.secret = Some(Secret::new(SECRET));
    let node = ClusterNode::start(dir, config).await.unwrap();
    let membrane = Membrane::bind(
        Endpoint::tcp(listen),
        CellDbClusterServer(node.handler()),
        MembraneConfig {
            secret: Some(Secret::new(SECRET)),
            ..Default::default()
        },
    )
    .unwrap();
    tokio::spawn(membrane.serve());
    node
}

async fn leader(nodes: &BTreeMap<u64, ClusterNode>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (id, node) in nodes {
            if node.raft().metrics().borrow_watched().state == openraft::ServerState::Leader {
                return *id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn member_command(id: u64, listen: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders-member"));
    command
        .args(["--node-id", &id.to_string(), "--listen", listen])
        .args(["--cluster-id", CLUSTER, "--max-staleness-ms", "300"])
        .arg("--dir")
        .arg(dir)
        .env("CELL_SECRET", SECRET);
    command
}

fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One run of `orders` as a client of the group at `url`; its output (it must succeed).
async fn client_run(url: &str) -> String {
    let url = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_orders"))
            .env("CELLDB_URL", url)
            .env("CELL_SECRET", SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    succeeded(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_book_runs_in_a_learner_of_the_group_and_survives_a_leader_stop() {
    let base = tempfile::tempdir().unwrap();
    let founders: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = BTreeMap::new();
    for id in founders.keys() {
        let dir = base.path().join(format!("n{id}"));
        nodes.insert(*id, start_voter(*id, &dir, &founders).await);
    }
    leader(&nodes).await;
    let url = format!(
        "raft://{}",
        founders.values().cloned().collect::<Vec<_>>().join(",")
    );

    // A client places the first order.
    let out = client_run(&url).await;
    assert!(out.contains("placed order #1"), "{out}");

    // The member's id comes from the group; then the member runs as its own process.
    let admin = Db::connect_cluster(
        founders.values().cloned().collect(),
        false,
        SynapseConfig {
            secret: Some(Secret::new(SECRET)),
            ..Default::default()
        },
    );
    let listen = free_addr();
    let id = admin.cluster_add_learner(&listen).await.unwrap();
    let member_dir = base.path().join("member");
    let mut first = member_command(id, &listen, &member_dir);
    let out = tokio::task::spawn_blocking(move || first.output().unwrap())
        .await
        .unwrap();
    let out = succeeded(&out);
    // It saw the client's order (no "first run"), and its own order went through the leader.
    assert!(!out.contains("first run"), "{out}");
    assert!(out.contains("placed order #2"), "{out}");
    assert!(
        out.contains("Ada has 2 order(s), 900 cents in total; 998 notebooks left; 2 orders"),
        "{out}"
    );
    assert!(out.contains("read from this member's replica"), "{out}");

    // A load run on the member; the leader stops after its tenth acknowledgement (in a debug
    // build the other 190 take seconds, far longer than stopping a node).
    let mut load = member_command(id, &listen, &member_dir);
    let mut child = load
        .args(["--load", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tenth_tx, tenth_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut tenth = Some(tenth_tx);
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("order 9 ")
                && let Some(tx) = tenth.take()
            {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    tenth_rx
        .await
        .expect("the load run ended before its tenth order");
    let stopped = leader(&nodes).await;
    nodes.remove(&stopped).unwrap().shutdown().await.unwrap();
    if child.try_wait().unwrap().is_some() {
        eprintln!("the load run ended before the leader stopped: the failover step is moot");
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let out = reader.join().unwrap();
    eprintln!("the load run, leader {stopped} stopped after order 9:\n{out}");
    assert!(
        status.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        out.contains("every acknowledged order is there exactly once"),
        "{out}"
    );
    assert!(out.contains("load: 200 acknowledged, 0 unknown"), "{out}");

    // The client sees the member's orders (2 + 200) and places one more, through the two
    // remaining voters.
    let out = client_run(&url).await;
    assert!(out.contains("203 orders in the table"), "{out}");
}
