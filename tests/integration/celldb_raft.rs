//! The fsync-ordering proof of celldb's raft log, on every node of a three-node group.
//!
//! SIGKILL cannot show an append acknowledged before its fsync (the page cache survives the
//! process), so this test watches the system calls instead. The child process
//! ([`child_group`]) runs a three-node group in one process under `strace -f -y`, with
//! `CELLDB_RAFT_MARKERS=1`: each node's journal thread writes `APPEND n=<node> i=<index>` to
//! `/dev/null` after writing entries, `FLUSHED n=<node> i=<index>` just before it reports them
//! flushed to raft, and `VOTEW`/`VOTED` around a vote. The checker requires, per node, an
//! fsync of a file in *that node's* directory between every append and its `FLUSHED`, and
//! between every vote write and its `VOTED`.
//!
//! The negative control runs the same child with the deliberately broken store
//! (`raft-ack-before-fsync` feature, `CELLDB_RAFT_ACK_BEFORE_FSYNC=1`), which reports before
//! the fsync: the checker must find violations on every node.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// The child: a three-node group that takes 60 writes, then stops. Does nothing unless the
/// parent set `CELLDB_RAFT_CHILD`.
#[test]
fn child_group() {
    if std::env::var_os("CELLDB_RAFT_CHILD").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let group = celldb::raft::testing::Group::new(3, celldb::raft::config()).await;
        let acked = celldb::raft::testing::load(group.router.clone(), 0, 60, 4, 0, async {}).await;
        group.check(&acked).await;
    });
}

#[derive(Debug, Default)]
struct NodeTrace {
    appends: usize,
    flushed: usize,
    votes: usize,
    /// `FLUSHED`/`VOTED` lines with no fsync of this node's files since the write.
    violations: Vec<String>,
}

/// Runs the child under strace and checks the trace, per node.
fn traced_group(ack_before_fsync: bool) -> BTreeMap<u64, NodeTrace> {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.out");
    let mut command = Command::new("strace");
    command
        .args([
            "-f",
            "-qq",
            "-y",
            "-s",
            "64",
            "-e",
            "trace=fsync,fdatasync,write",
            "-o",
        ])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "celldb_raft::child_group",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CELLDB_RAFT_CHILD", "1")
        .env("CELLDB_RAFT_MARKERS", "1")
        .env("TMPDIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if ack_before_fsync {
        command.env("CELLDB_RAFT_ACK_BEFORE_FSYNC", "1");
    }
    let status = command
        .status()
        .expect("strace must be installed (apt-get install strace)");
    assert!(status.success(), "the traced group failed: {status}");
    let text = std::fs::read_to_string(&trace).unwrap();
    check_trace(&text)
}

/// Per node: the highest appended index covered by an fsync of its directory, the highest
/// appended so far, and whether a vote write is waiting for its fsync.
fn check_trace(text: &str) -> BTreeMap<u64, NodeTrace> {
    let mut nodes: BTreeMap<u64, NodeTrace> = BTreeMap::new();
    let mut appended: BTreeMap<u64, u64> = BTreeMap::new();
    let mut synced: BTreeMap<u64, u64> = BTreeMap::new();
    let mut vote_unsynced: BTreeMap<u64, bool> = BTreeMap::new();
    for line in text.lines() {
        if line.contains("fsync(") || line.contains("fdatasync(") {
            // `-y` shows the file: `fsync(7</tmp/…/node-2/data/…/3.jnl>)`. Only a journal
            // fsync makes raft's writes durable (a table file's fsync does not).
            if !line.contains(".jnl>") {
                continue;
            }
            let Some(node) = line
                .split("/node-")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(&last) = appended.get(&node) {
                synced.insert(node, last);
            }
            vote_unsynced.insert(node, false);
            continue;
        }
        let Some(start) = line.find("\"") else {
            continue;
        };
        let marker = &line[start + 1..];
        let field = |name: &str| -> Option<u64> {
            marker
                .split([' ', '\\'])
                .find_map(|part| part.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        let Some(node) = field("n=") else { continue };
        let entry = nodes.entry(node).or_default();
        if marker.starts_with("APPEND ") {
            let index = field("i=").unwrap();
            entry.appends += 1;
            appended.insert(node, index);
        } else if marker.starts_with("FLUSHED ") {
            let index = field("i=").unwrap();
            entry.flushed += 1;
            if synced.get(&node).is_none_or(|&s| s < index) {
                entry
                    .violations
                    .push(format!("FLUSHED n={node} i={index} before its fsync"));
            }
        } else if marker.starts_with("VOTEW ") {
            entry.votes += 1;
            vote_unsynced.insert(node, true);
        } else if marker.starts_with("VOTED ") && vote_unsynced.get(&node) == Some(&true) {
            entry
                .violations
                .push(format!("VOTED n={node} before its fsync"));
        }
    }
    nodes
}

#[test]
fn every_raft_append_and_vote_is_fsynced_before_it_is_reported() {
    let nodes = traced_group(false);
    assert_eq!(nodes.len(), 3, "markers from every node: {nodes:?}");
    for (id, node) in &nodes {
        assert!(
            node.flushed >= 1 && node.votes >= 1,
            "node {id} did little: {node:?}"
        );
        assert!(
            node.violations.is_empty(),
            "node {id}: {:?}",
            node.violations
        );
    }
}

#[test]
fn the_proof_catches_a_store_that_acknowledges_before_fsync() {
    let nodes = traced_group(true);
    assert_eq!(nodes.len(), 3, "markers from every node: {nodes:?}");
    for (id, node) in &nodes {
        assert!(
            !node.violations.is_empty(),
            "node {id}: the broken store went unnoticed: {node:?}"
        );
    }
}
