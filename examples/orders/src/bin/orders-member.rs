//! `orders-member`: the order book of `orders`, in an application process that is a member of
//! the celldb raft group itself: the group replicates into this process's own directory, and
//! its reads come from that copy — no round trip to a server for each read.
//!
//! A new member gets its node id from the group, then starts:
//!
//! ```text
//! export CELL_SECRET=…            # the cluster's secret, as for every node
//! celldb cluster add --learner --url raft://127.0.0.1:7001 --addr 127.0.0.1:7010
//! # prints `node id 4`
//! cargo run -p orders --bin orders-member -- --node-id 4 --listen 127.0.0.1:7010 --dir ./m4
//! ```
//!
//! It joins as a learner (it replicates and reads; it does not vote), so the group's quorum is
//! not affected by the application's restarts. Its reads are **bounded-stale**: each one sees
//! every write acknowledged more than `--max-staleness-ms` (500 ms by default) before it,
//! from this process's replica; `--max-staleness-ms 0` makes them linearizable (a read index
//! from the leader first). Its writes are forwarded to the leader with request ids, so a
//! retried commit is never applied twice.
//!
//! Each run places one order and prints the counts (the same records and transactions as
//! `orders`, declared `replicate = "raft"`), with the time its reads took. `--load N` runs
//! `orders`' load mode: N orders, then the exactly-once check. `--stay` keeps the member
//! running (serving raft traffic) until Ctrl-C. Remove a member for good with
//! `celldb cluster remove --node-id 4`.

use anyhow::Context as _;
use cell_sdk::cell_remote;
use celldb::raft::cluster::wire::CellDbClusterServer;
use celldb::raft::cluster::{ClusterConfig, ClusterNode};
use clap::Parser;
use std::time::{Duration, Instant};

cell_remote!(DB = "celldb");

// The same records and transactions as `orders` (src/lib.rs), replicated by the group.
orders::order_book!(replicate = "raft");

/// The order book in a process that is a learner of a celldb raft group.
#[derive(Parser, Debug)]
#[command(
    about,
    long_about = "The order book of `orders` in a process that is a learner of a celldb raft \
        group: the group replicates into --dir, reads come from that copy (bounded-stale by \
        default), writes are forwarded to the leader with request ids.\n\n\
        Get a node id first (needs $CELL_SECRET, the cluster's secret):\n  \
        celldb cluster add --learner --url raft://127.0.0.1:7001 --addr 127.0.0.1:7010\n  \
        orders-member --node-id 4 --listen 127.0.0.1:7010 --dir ./m4"
)]
struct Args {
    /// This member's node id, as printed by `celldb cluster add --learner --addr <LISTEN>`.
    #[arg(long)]
    node_id: u64,
    /// The address this member listens on for raft traffic: the one given to `cluster add`.
    #[arg(long)]
    listen: String,
    /// The group's cluster id (`celldb serve --cluster-id`).
    #[arg(long, default_value = "celldb")]
    cluster_id: String,
    /// This member's directory: its replica of the group's tables, and its raft log.
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Each read sees every write acknowledged more than this many milliseconds before it,
    /// from the local replica. 0: linearizable reads (a read index from the leader first).
    #[arg(long, default_value_t = 500)]
    max_staleness_ms: u64,
    /// Place N tagged orders, then check each acknowledged one is there exactly once.
    #[arg(long, value_name = "N")]
    load: Option<u64>,
    /// Keep serving as a member after the run, until Ctrl-C or SIGTERM.
    #[arg(long)]
    stay: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut config = ClusterConfig::new(&args.cluster_id, args.node_id, &args.listen);
    config.max_staleness =
        (args.max_staleness_ms > 0).then(|| Duration::from_millis(args.max_staleness_ms));
    let node = ClusterNode::start(&args.dir, config)
        .await
        .with_context(|| format!("starting node {} on {}", args.node_id, args.dir.display()))?;
    let membrane = cell_sdk::Membrane::bind(
        cell_sdk::Endpoint::tcp(args.listen.clone()),
        CellDbClusterServer(node.handler()),
        cell_sdk::MembraneConfig::default(),
    )
    .with_context(|| format!("binding {}", args.listen))?;
    let shutdown = membrane.shutdown_handle();
    let serving = tokio::spawn(membrane.serve());
    println!(
        "member: node {} of cluster {} at {}, replica in {}",
        args.node_id,
        args.cluster_id,
        args.listen,
        args.dir.display()
    );

    let worked = node.db().clone().scope(run(&args)).await;
    if worked.is_ok() && args.stay {
        println!("member: serving until Ctrl-C");
        cell_sdk::shutdown_signal().await;
    }
    shutdown.shutdown();
    let _ = serving.await;
    node.shutdown().await.context("stopping raft")?;
    worked
}

/// The app's work on this member's database.
async fn run(args: &Args) -> anyhow::Result<()> {
    // The first read waits until this member has caught up with the group (a read index).
    let started = Instant::now();
    if open_shop().await? {
        println!("first run: created customer Ada and stocked 1000 notebooks");
    }
    println!("caught up with the group in {:?}", started.elapsed());
    if let Some(count) = args.load {
        return load(count).await;
    }
    let order_id = place_order().await?;
    println!("placed order #{order_id} (committed by the leader)");
    let read = Instant::now();
    let summary = summary().await?;
    println!("{summary}");
    println!("read from this member's replica in {:?}", read.elapsed());
    Ok(())
}
