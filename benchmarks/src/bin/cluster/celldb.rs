//! The celldb subjects, driven through the same `DB::` API an application uses (a `#[DB::persist]`
//! table of key and value, `Db::upsert` and `Db::get`).
//!
//! - `celldb-single`: one `celldb serve --tcp` process (acknowledged = fsynced on its one node:
//!   the cost of replication is the difference to `celldb-raft`).
//! - `celldb-raft`: three `celldb serve` nodes forming a raft group, reached with
//!   `raft://host:port,…` — not available yet: [`start_raft`] is where it plugs in.

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
    // Dropped in this order: the servers, then their data directories.
    _processes: Processes,
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
        _processes: processes,
        _dir: dir,
    })
}

/// `celldb-raft`: TODO(lead) — start three `celldb serve` nodes forming a group, as
/// [`start_single`] starts one (data directories under `base`, each node with
/// [`Processes::spawn`], e.g. `celldb serve --dir D/n1 --node-id 1 --listen 127.0.0.1:P1
/// --cluster 1=127.0.0.1:P1,2=…,3=…`, ports from [`free_port`], ready when [`wait_until`] says
/// so), then connect with their `raft://host:port,…` addresses ([`connect_raft`]) and return a
/// [`Celldb`] whose `fsyncs` reads every node's counter, in node order.
pub(crate) async fn start_raft(_binary: &Path, _base: &Path) -> anyhow::Result<Option<Celldb>> {
    eprintln!("celldb-raft: not available yet (the celldb cluster server is being built); skipped");
    Ok(None)
}

/// TODO(lead): the client of a raft group, from its nodes' `raft://host:port` addresses.
#[expect(
    dead_code,
    reason = "the plug for the celldb cluster client, which does not exist yet"
)]
pub(crate) fn connect_raft(addresses: &[String]) -> anyhow::Result<Db> {
    anyhow::bail!(
        "celldb-raft: no cluster client yet (addresses {})",
        addresses.join(",")
    )
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

    fn fsyncs(&self) -> BoxFuture<'_, anyhow::Result<Vec<u64>>> {
        // One node. (A group reads each node's counter: a handle per node, or a cluster
        // status call.)
        Box::pin(async move { Ok(vec![self.db.server_stats().await?.syncs]) })
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
