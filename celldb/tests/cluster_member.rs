//! Embedded members of a process cluster: an application process runs a `ClusterNode` itself
//! (its own directory, its own port) and uses the `DB::` API on the node's database. Raft
//! tables are read from this node's replica after the leader gives a read index (a follower
//! read: linearizable, no round trip for the data), and writes made on a follower or learner
//! are forwarded to the leader with a request id. Three voters and a learner added while the
//! group runs, all in this test process, over real TCP.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::{Endpoint, Membrane, MembraneConfig, Secret, SynapseConfig, protein};
use celldb::Db;
use celldb::raft::cluster::wire::CellDbClusterServer;
use celldb::raft::cluster::{ClusterConfig, ClusterNode};
use openraft::rt::WatchReceiver as _;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

cell_sdk::cell_remote!(DB = "celldb");

const SECRET: &str = "embedded-members";

/// Replicated through the group.
#[protein]
#[DB::persist(table = "orders", replicate = "raft")]
pub struct Order {
    #[DB::key]
    id: u64,
    total: u64,
}

/// Local to each member.
#[protein]
#[DB::persist(table = "visits")]
pub struct Visit {
    #[DB::key]
    id: u64,
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Starts node `id` on `dir`, serving its port in a task.
async fn start(
    id: u64,
    dir: &std::path::Path,
    listen: &str,
    founders: &BTreeMap<u64, String>,
) -> ClusterNode {
    start_with(id, dir, listen, founders, None).await
}

/// [`start`], with a staleness bound for the node's own reads.
async fn start_with(
    id: u64,
    dir: &std::path::Path,
    listen: &str,
    founders: &BTreeMap<u64, String>,
    max_staleness: Option<Duration>,
) -> ClusterNode {
    let mut config = ClusterConfig::new("embedded", id, listen);
    config.founders = founders.clone();
    config.secret = Some(Secret::new(SECRET));
    config.max_staleness = max_staleness;
    let node = ClusterNode::start(dir, config).await.unwrap();
    let membrane = Membrane::bind(
        Endpoint::tcp(listen.to_string()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_and_a_learner_use_the_db_api_with_follower_reads_and_forwarded_writes() {
    let base = tempfile::tempdir().unwrap();
    let founders: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = BTreeMap::new();
    for (id, addr) in &founders {
        let dir = base.path().join(format!("n{id}"));
        nodes.insert(*id, start(*id, &dir, addr, &founders).await);
    }
    let leader = leader(&nodes).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // A write on a follower is forwarded to the leader; the follower then reads it from its
    // own replica (after a read index), and so does the leader.
    let on_follower = nodes[&follower].db().clone();
    on_follower
        .scope(async {
            DB::insert(&Order { id: 1, total: 10 }).await.unwrap();
            DB::insert(&Visit { id: 1 }).await.unwrap();
            let o = Order::get(1u64).await.unwrap().unwrap();
            assert_eq!(o.total, 10);
            // A read-modify-write transaction on the follower: checks and writes forwarded.
            DB::transaction(|tx| async move {
                let mut o = tx.get::<Order>(1u64).await?.unwrap();
                o.total += 5;
                tx.update(&o).await?;
                Ok(())
            })
            .await
            .unwrap();
        })
        .await;
    nodes[&leader]
        .db()
        .scope(async {
            assert_eq!(Order::get(1u64).await.unwrap().unwrap().total, 15);
            // The follower's local table stayed on the follower.
            assert_eq!(Visit::get(1u64).await.unwrap(), None);
        })
        .await;

    // A learner joins while the group runs: an id from the group, then the node starts.
    let client = Db::connect_cluster(
        founders.values().cloned().collect(),
        false,
        SynapseConfig {
            secret: Some(Secret::new(SECRET)),
            ..Default::default()
        },
    );
    let learner_addr = free_addr();
    let learner_id = client.cluster_add_learner(&learner_addr).await.unwrap();
    assert_eq!(learner_id, 4, "ids are allocated after the founders");
    let learner = start(
        learner_id,
        &base.path().join("learner"),
        &learner_addr,
        &BTreeMap::new(),
    )
    .await;
    learner
        .db()
        .scope(async {
            // A linearizable read on the learner: the leader's read index, then the local copy.
            assert_eq!(Order::get(1u64).await.unwrap().unwrap().total, 15);
            DB::insert(&Order { id: 2, total: 7 }).await.unwrap();
        })
        .await;
    on_follower
        .scope(async {
            assert_eq!(Order::get(2u64).await.unwrap().unwrap().total, 7);
        })
        .await;
    let voters: Vec<u64> = nodes[&leader]
        .raft()
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1, 2, 3], "a learner does not vote");
}

/// A learner started with a staleness bound `B`: a read sees every write acknowledged more than
/// `B` before it; within `B` of its last read index it reads its own copy even with every voter
/// gone; past `B` with no leader it refuses (`Error::TooStale`) rather than serve older data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_staleness_learner_reads_locally_within_the_bound_and_refuses_past_it() {
    const BOUND: Duration = Duration::from_secs(3);
    let base = tempfile::tempdir().unwrap();
    let founders: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = BTreeMap::new();
    for (id, addr) in &founders {
        let dir = base.path().join(format!("n{id}"));
        nodes.insert(*id, start(*id, &dir, addr, &founders).await);
    }
    leader(&nodes).await;
    let client = Db::connect_cluster(
        founders.values().cloned().collect(),
        false,
        SynapseConfig {
            secret: Some(Secret::new(SECRET)),
            ..Default::default()
        },
    );
    client
        .scope(async { DB::insert(&Order { id: 1, total: 1 }).await.unwrap() })
        .await;
    let learner_addr = free_addr();
    let learner_id = client.cluster_add_learner(&learner_addr).await.unwrap();
    let learner = start_with(
        learner_id,
        &base.path().join("learner"),
        &learner_addr,
        &BTreeMap::new(),
        Some(BOUND),
    )
    .await;
    let on_learner = learner.db().clone();
    on_learner
        .scope(async { assert_eq!(Order::get(1u64).await.unwrap().unwrap().total, 1) })
        .await;

    // The bound: a write acknowledged B ago is visible on the learner, whatever the learner
    // read in between (a read index younger than B may predate the write).
    client
        .scope(async {
            let mut o = Order::get(1u64).await.unwrap().unwrap();
            o.total = 2;
            DB::update(&o).await.unwrap();
        })
        .await;
    tokio::time::sleep(BOUND).await;
    let fresh_at = Instant::now();
    on_learner
        .scope(async { assert_eq!(Order::get(1u64).await.unwrap().unwrap().total, 2) })
        .await;

    // Every voter stops. Within B of that read's index, the learner still reads its copy.
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await.unwrap();
    }
    if fresh_at.elapsed() < BOUND {
        on_learner
            .scope(async { assert_eq!(Order::get(1u64).await.unwrap().unwrap().total, 2) })
            .await;
    } else {
        eprintln!("the voters took longer than the bound to stop: the local-read step is moot");
    }

    // Past B, with no leader to give a read index, the read is refused.
    tokio::time::sleep(BOUND).await;
    let err = on_learner
        .scope(async { Order::get(1u64).await.unwrap_err() })
        .await;
    assert!(
        matches!(err, celldb::Error::TooStale { bound, .. } if bound == BOUND),
        "expected TooStale, got {err:?}"
    );
}
