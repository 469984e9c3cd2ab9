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
    let config = ClusterConfig {
        cluster: "embedded".into(),
        node: id,
        listen: listen.to_string(),
        founders: founders.clone(),
        dial: BTreeMap::new(),
        raft: celldb::raft::config(),
        secret: Some(Secret::new(SECRET)),
    };
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
