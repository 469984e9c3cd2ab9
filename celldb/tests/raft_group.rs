//! Three (and four) celldb raft nodes in one process, each on its own real fjall directory,
//! over a test network that can partition nodes and delay messages. After each scenario no
//! acknowledged write is lost and every replica has the same digest.
//!
//! Scenarios: a leader isolated while writes continue (a new leader takes over); a follower
//! and then the leader stopped and restarted from their directories; a node that fell behind
//! the compacted log caught up by a snapshot, also when the first install is interrupted; a
//! membership change (learner, then voter; a voter removed) under load.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use celldb::raft::testing::{Group, Router, load};
use celldb::raft::{Node, Raft};
use openraft::ServerState;
use openraft::rt::WatchReceiver;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    // The interrupted install's file (and possibly a retried transfer's, staged before raft
    // on that node refused it).
    assert!(
        staged() >= 1,
        "the interrupted install left its staged file"
    );
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
