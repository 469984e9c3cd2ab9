//! The `DB::` API on a raft member: the node's own database serves `replicate = "raft"`
//! tables through the group (linearizable reads, writes as raft entries re-checked on every
//! replica) and its local tables as before, in a three-node in-process group.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::protein;
use celldb::raft::testing::Group;
use celldb::{Db, Error};

cell_sdk::cell_remote!(DB = "celldb");

/// Replicated: survives the loss of a node.
#[protein]
#[DB::persist(table = "orders", replicate = "raft")]
pub struct Order {
    #[DB::key]
    id: u64,
    #[DB::unique]
    reference: String,
    total: u64,
}

/// Local to each node.
#[protein]
#[DB::persist(table = "visits")]
pub struct Visit {
    #[DB::key]
    id: u64,
}

fn order(id: u64, reference: &str, total: u64) -> Order {
    Order {
        id,
        reference: reference.into(),
        total,
    }
}

fn test_config() -> openraft::Config {
    openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..celldb::raft::config()
    }
}

async fn leader_db(group: &Group) -> (u64, Db) {
    let leader = group.leader().await;
    (leader, group.nodes[&leader].db().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_db_api_on_the_leader_replicates_raft_tables() {
    let group = Group::new(3, test_config()).await;
    let (leader, db) = leader_db(&group).await;
    db.scope(async {
        DB::insert(&order(1, "A-1", 100)).await.unwrap();
        DB::insert(&order(2, "A-2", 250)).await.unwrap();
        assert_eq!(Order::get(1).await.unwrap().unwrap().total, 100);
        assert_eq!(Order::by_reference("A-2").await.unwrap().unwrap().id, 2);
        assert_eq!(Order::count().await.unwrap(), 2);
        // The unique index holds through raft: the read check is re-made on every replica.
        let duplicate = DB::insert(&order(3, "A-1", 1)).await.unwrap_err();
        assert!(
            matches!(duplicate, Error::UniqueViolation { .. }),
            "{duplicate}"
        );
        // A local table on the same database stays local.
        DB::insert(&Visit { id: 7 }).await.unwrap();
        assert_eq!(Visit::count().await.unwrap(), 1);
    })
    .await;
    // Every replica has the orders (state machines converge), none has the visit.
    let digests = group.converged_digests().await;
    let first = *digests.values().next().unwrap();
    assert!(digests.values().all(|d| d.1 == first.1), "{digests:?}");
    for (id, node) in &group.nodes {
        let key = {
            let mut out = Vec::new();
            celldb::Key::encode_key(&1u64, &mut out);
            out
        };
        assert!(
            node.state_machine()
                .read("t.orders", &key)
                .unwrap()
                .is_some(),
            "node {id} lacks order 1"
        );
        if *id != leader {
            assert_eq!(node.db().count::<Visit>().await.unwrap(), 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_on_a_raft_table_lose_no_update() {
    let group = Group::new(3, test_config()).await;
    let (_, db) = leader_db(&group).await;
    db.insert(&order(1, "counter", 0)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                db.transaction(|tx| async move {
                    let mut o = tx.get::<Order>(1).await?.unwrap();
                    o.total += 1;
                    tx.update(&o).await
                })
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(db.get::<Order>(1).await.unwrap().unwrap().total, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_refuse_raft_writes_and_mixed_transactions_are_refused() {
    let group = Group::new(3, test_config()).await;
    let (leader, db) = leader_db(&group).await;
    db.insert(&order(1, "A-1", 100)).await.unwrap();
    let follower = group
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    let fdb = group.nodes[&follower].db().clone();
    let error = fdb.insert(&order(2, "A-2", 1)).await.unwrap_err();
    assert!(
        matches!(error, Error::NotLeader { leader: Some(l) } if l == leader),
        "{error}"
    );
    // A follower's local tables still work.
    fdb.insert(&Visit { id: 1 }).await.unwrap();
    // One commit cannot span the raft log and the local log.
    let mixed = db
        .transaction(|tx| async move {
            tx.insert(&order(5, "A-5", 5)).await?;
            tx.insert(&Visit { id: 5 }).await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(mixed, Error::MixedReplication { .. }), "{mixed}");
    // A raft write that read a local table cannot be checked by raft.
    db.insert(&Visit { id: 9 }).await.unwrap();
    let read_local = db
        .transaction(|tx| async move {
            let _ = tx.get::<Visit>(9).await?;
            tx.insert(&order(6, "A-6", 6)).await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(read_local, Error::MixedReplication { .. }),
        "{read_local}"
    );
    assert!(db.get::<Order>(5).await.unwrap().is_none());
    assert!(db.get::<Order>(6).await.unwrap().is_none());
}
