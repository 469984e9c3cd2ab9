//! The celldb subjects, driven through the same `DB::` API an application uses (a `#[DB::persist]`
//! table of key and value, `Db::upsert` and `Db::get`).
//!
//! - `celldb-single`: one `celldb serve --tcp` process (acknowledged = fsynced on its one node:
//!   the cost of replication is the difference to `celldb-raft`).
//! - `celldb-raft`: three `celldb serve --node-id` nodes forming a raft group, reached with
//!   `raft://host:port,…` (`Db::connect_cluster`): acknowledged = in the fsynced raft journal
//!   of a majority; reads linearizable (a read barrier on the leader).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;
use cell_sdk::{Endpoint, Secret, SynapseConfig, protein};
use celldb::Db;
use futures::future::BoxFuture;

use crate::{
    DB, Subject,
    process::{Processes, free_port, wait_until},
};

/// The benchmark's table: one value per key, like an etcd key.
#[protein]
#[DB::persist(table = "kv")]
pub(crate) struct Entry {
    #[DB::key]
    key: u64,
    value: Vec<u8>,
}

/// celldb server processes and a client handle on them.
#[derive(Debug)]
pub(crate) struct Celldb {
    db: Db,
    description: String,
    /// A raft group (fsyncs from every node's status) or one server (from its stats).
    cluster: bool,
    // Dropped in this order: the servers, then their data directories.
    processes: Processes,
    _dir: tempfile::TempDir,
}

/// `celldb-single`: starts `celldb serve --dir … --tcp 127.0.0.1:PORT` with a data directory
/// under `base` and connects to it over authenticated TCP (as etcd's clients reach it: loopback
/// TCP, a process of its own).
pub(crate) async fn start_single(binary: &Path, base: &Path) -> anyhow::Result<Celldb> {
    let dir = tempfile::Builder::new()
        .prefix("cluster-celldb-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    // Not a secret worth keeping: a loopback server that lives for one benchmark.
    let secret = format!("cell-bench-{}-{}", std::process::id(), free_port()?);
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .arg("--dir")
        .arg(dir.path().join("db"))
        .args(["--tcp", &addr])
        .env("CELL_SECRET", &secret);
    let mut processes = Processes::default();
    processes
        .spawn("celldb serve", cmd, &dir.path().join("celldb.log"))
        .context(
            "build it with `cargo build --release -p celldb --features cli --bin celldb`, or \
             name it with --celldb",
        )?;
    let config = SynapseConfig {
        secret: Some(Secret::new(secret.into_bytes())),
        ..SynapseConfig::default()
    };
    let db = Db::connect_with(Endpoint::tcp(&addr), config);
    wait_until(
        &mut processes,
        &format!("celldb serve at {addr}"),
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move { db.server_stats().await.is_ok() }
        },
    )
    .await?;
    Ok(Celldb {
        db,
        description: "celldb (1 node)".to_string(),
        cluster: false,
        processes,
        _dir: dir,
    })
}

/// `celldb-raft`: starts `nodes` `celldb serve --node-id N --listen 127.0.0.1:PORT --cluster
/// 1=…,2=…,3=…` processes with `CELLDB_THREADS=T` (`--threads`) and the variant's variables
/// `env` (data directories under `base`, one shared secret), waits until a majority agrees on
/// a leader, and connects with their `raft://` addresses (linearizable reads: the default).
pub(crate) async fn start_raft(
    binary: &Path,
    base: &Path,
    nodes: usize,
    threads: u16,
    env: &[(String, String)],
) -> anyhow::Result<Celldb> {
    let dir = tempfile::Builder::new()
        .prefix("cluster-celldb-raft-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let secret = format!("cell-bench-{}-{}", std::process::id(), free_port()?);
    let mut addrs = Vec::new();
    for _ in 0..nodes {
        addrs.push(format!("127.0.0.1:{}", free_port()?));
    }
    let founders = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut processes = Processes::default();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg("--dir")
            .arg(dir.path().join(format!("n{id}")))
            .args(["--node-id", &id.to_string()])
            .args(["--listen", addr])
            .args(["--cluster", &founders])
            // `--threads` by its variable, so that a variant's `@CELLDB_THREADS=N` wins.
            .env("CELLDB_THREADS", threads.to_string())
            .env("CELL_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(name, value)| (name, value)));
        processes
            .spawn(
                &format!("celldb node {id}"),
                cmd,
                &dir.path().join(format!("n{id}.log")),
            )
            .context(
                "build it with `cargo build --release -p celldb --features cli --bin celldb`, \
                 or name it with --celldb",
            )?;
    }
    let config = SynapseConfig {
        secret: Some(Secret::new(secret.into_bytes())),
        ..SynapseConfig::default()
    };
    let db = Db::connect_cluster(addrs.clone(), false, config);
    wait_until(
        &mut processes,
        &format!("a leader among the celldb nodes at {}", addrs.join(",")),
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move { has_leader(&db, nodes).await }
        },
    )
    .await?;
    let leader = db
        .cluster_status()
        .await?
        .into_iter()
        .filter_map(|(_, status)| status)
        .find(|status| status.state == "Leader")
        .map_or_else(|| "?".to_string(), |status| status.id.to_string());
    eprintln!("celldb-raft: node {leader} leads (nodes are numbered in the table's node order)");
    // A variant's `@CELLDB_THREADS=N` is set after `threads`, so it is the one the nodes use.
    let shown_threads = env
        .iter()
        .rev()
        .find(|(name, _)| name == "CELLDB_THREADS")
        .map_or_else(|| threads.to_string(), |(_, value)| value.clone());
    let shown_env: String = env
        .iter()
        .filter(|(name, _)| name != "CELLDB_THREADS")
        .map(|(name, value)| format!(", {name}={value}"))
        .collect();
    Ok(Celldb {
        db,
        description: format!(
            "celldb raft ({nodes} nodes, {shown_threads} thread(s) each{shown_env})"
        ),
        cluster: true,
        processes,
        _dir: dir,
    })
}

/// Whether a majority of the nodes name the same leader, and that node says it leads.
async fn has_leader(db: &Db, nodes: usize) -> bool {
    let Ok(statuses) = db.cluster_status().await else {
        return false;
    };
    let statuses: Vec<_> = statuses.into_iter().filter_map(|(_, s)| s).collect();
    let majority = nodes / 2 + 1;
    statuses.iter().any(|leader| {
        leader.state == "Leader"
            && statuses
                .iter()
                .filter(|s| s.leader == Some(leader.id))
                .count()
                >= majority
    })
}

impl Subject for Celldb {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn put<'a>(&'a self, key: u64, value: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let entry = Entry {
                key,
                value: value.to_vec(),
            };
            self.db.upsert(&entry).await?;
            Ok(())
        })
    }

    fn get(&self, key: u64) -> BoxFuture<'_, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move { Ok(self.db.get::<Entry>(key).await?.map(|e| e.value)) })
    }

    fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.processes.cpu_seconds()
    }

    fn fsyncs(&self) -> BoxFuture<'_, anyhow::Result<Vec<u64>>> {
        Box::pin(async move {
            if !self.cluster {
                return Ok(vec![self.db.server_stats().await?.syncs]);
            }
            // Each node's raft-journal fsyncs, in node order (the order of the addresses).
            let mut counts = Vec::new();
            for (addr, status) in self.db.cluster_status().await? {
                let status =
                    status.with_context(|| format!("the node at {addr} did not answer"))?;
                counts.push(status.fsyncs);
            }
            Ok(counts)
        })
    }
}

/// The `celldb` command line: `--celldb`, else the one built beside this benchmark
/// (`cargo build --release -p celldb --features cli --bin celldb`), else `celldb` on `$PATH`.
pub(crate) fn binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("celldb")))
        .filter(|sibling| sibling.is_file())
        .unwrap_or_else(|| PathBuf::from("celldb"))
}
