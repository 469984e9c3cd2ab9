//! `celldb-remote-bench`: celldb over the runtime (remote mode) against embedded celldb and
//! against the raw RPC round trip of the same runtime, in one run.
//!
//! Run (release, on a real disk, not tmpfs):
//! `cargo run --release -p celldb --bin celldb-remote-bench`
//!
//! Subjects, each measured in this process, interleaved round by round (3 rounds, median):
//! - `rpc echo`: a trivial service (`echo(Vec<u8>) -> Vec<u8>`, 150-byte payload) on the same
//!   runtime and the same kind of server runtime as the celldb server: the floor of any remote
//!   operation (one round trip);
//! - `get`: a point read by key (`Db::get`), embedded and remote (one round trip);
//! - `insert`: a durable insert of a record with a unique and a non-unique index (acknowledged
//!   = fsynced), embedded and remote (remote: the snapshot read of the key and its unique
//!   value, then the commit — two round trips plus the server's group commit).
//!
//! Latency: one operation in flight, p50 and p99. Throughput: 32 in flight (32 tasks on the
//! client runtime). The server (celldb or echo) runs on its own 2-worker runtime in this
//! process, behind a real Unix socket; the client runtime is a 2-worker multi-thread runtime
//! (both modes behave the same on a `current_thread` runtime since the log stopped committing
//! on runtime threads; see docs/celldb.md, "Where the commit runs").
//!
//! `CELLDB_REMOTE_BENCH_SCALE` (default 1) multiplies the operation counts.

use cell_sdk::{Endpoint, Membrane, MembraneConfig, service};
use celldb::Db;
use std::sync::Arc;
use std::time::{Duration, Instant};

cell_sdk::cell_remote!(DB = "celldb");

#[path = "common/row.rs"]
mod row;
use row::{Row, row};

/// The anchor: a service that returns its argument.
#[service(name = "echo")]
pub trait Echo {
    /// Returns `payload`.
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8>;
}

struct EchoCell;

impl Echo for EchoCell {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// One measured subject: p50/p99 latency (µs) and throughput (ops/s).
#[derive(Default, Clone)]
struct Figures {
    p50: Vec<f64>,
    p99: Vec<f64>,
    ops: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Latency of `n` sequential operations (after 10% warm-up): (p50, p99) in µs.
async fn latency<F, Fut>(n: u64, mut op: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for i in 0..n / 10 {
        op(i).await?;
    }
    let mut samples = Vec::with_capacity(n as usize);
    for i in n / 10..n + n / 10 {
        let start = Instant::now();
        op(i).await?;
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    Ok((at(0.50), at(0.99)))
}

/// Throughput of `n` operations with 32 in flight (32 tasks), ops/s.
async fn throughput<F, Fut>(n: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    const IN_FLIGHT: u64 = 32;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..IN_FLIGHT {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < n {
                op(i).await?;
                i += IN_FLIGHT;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A server runtime of its own (2 workers, like `celldb serve`), serving until dropped.
struct ServerThread {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerThread {
    fn start<S: cell_sdk::Service>(socket: &std::path::Path, service: S) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let membrane = runtime.block_on(async {
            Membrane::bind(Endpoint::unix(socket), service, MembraneConfig::default())
        })?;
        runtime.spawn(membrane.serve());
        Ok(Self {
            runtime: Some(runtime),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn main() -> anyhow::Result<()> {
    let scale: u64 = std::env::var("CELLDB_REMOTE_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let reads = 20_000 * scale;
    let writes = 2_000 * scale;
    let sockets = tempfile::Builder::new().prefix("crb-").tempdir_in("/tmp")?;
    let remote_dir = tempfile::Builder::new()
        .prefix("celldb-remote-bench-")
        .tempdir()?;
    let local = Db::temp()?;
    let db_socket = sockets.path().join("celldb.sock");
    let echo_socket = sockets.path().join("echo.sock");
    let _db_server = ServerThread::start(
        &db_socket,
        // What `celldb serve` binds: the generated server behind the exact-payload check.
        celldb::server::Server::new(Db::open(remote_dir.path())?)?.service(),
    )?;
    let _echo_server = ServerThread::start(&echo_socket, EchoServer(EchoCell))?;

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let remote = Db::connect(&format!("unix:{}", db_socket.display()))?;
    let echo = client.block_on(EchoClient::connect_to(Endpoint::unix(&echo_socket)))?;

    let names = [
        "rpc echo (anchor)",
        "get, embedded",
        "get, remote",
        "insert, embedded",
        "insert, remote",
    ];
    let mut figures = vec![Figures::default(); names.len()];
    client.block_on(async {
        // Fill both databases for the reads.
        for db in [&local, &remote] {
            throughput(reads.min(20_000), {
                let db = db.clone();
                move |i| {
                    let db = db.clone();
                    async move {
                        db.insert(&row(i)).await?;
                        Ok(())
                    }
                }
            })
            .await?;
        }
        let payload = Arc::new(vec![7u8; 150]);
        let mut next_id = 1_000_000u64;
        for round in 0..3 {
            eprintln!("round {}/3", round + 1);
            // Echo.
            let (p50, p99) = latency(reads, |_| {
                let (echo, payload) = (echo.clone(), payload.clone());
                async move {
                    echo.echo(payload.to_vec()).await?;
                    Ok(())
                }
            })
            .await?;
            let ops = throughput(reads, {
                let (echo, payload) = (echo.clone(), payload.clone());
                move |_| {
                    let (echo, payload) = (echo.clone(), payload.clone());
                    async move {
                        echo.echo(payload.to_vec()).await?;
                        Ok(())
                    }
                }
            })
            .await?;
            record(&mut figures[0], p50, p99, ops);
            // Gets.
            for (slot, db) in [(1, &local), (2, &remote)] {
                let n_rows = reads.min(20_000);
                let get = {
                    let db = db.clone();
                    move |i: u64| {
                        let db = db.clone();
                        async move {
                            let found = db.get::<Row>(i % n_rows).await?;
                            anyhow::ensure!(found.is_some(), "row {} missing", i % n_rows);
                            Ok(())
                        }
                    }
                };
                let (p50, p99) = latency(reads, get.clone()).await?;
                let ops = throughput(reads, get).await?;
                record(&mut figures[slot], p50, p99, ops);
            }
            // Inserts (fresh ids every time).
            for (slot, db) in [(3, &local), (4, &remote)] {
                let base = next_id;
                next_id += 10 * writes;
                let insert = {
                    let db = db.clone();
                    move |i: u64| {
                        let db = db.clone();
                        async move {
                            db.insert(&row(base + i)).await?;
                            Ok(())
                        }
                    }
                };
                // Each timed insert runs in a task of its own, as a handler or request would:
                // on the `block_on` thread itself, an embedded durable insert's p50 rises to
                // ~4 ms on this machine (its inline commit; see docs/celldb.md).
                let spawned = insert.clone();
                let (p50, p99) = latency(writes, move |i| {
                    let f = spawned(i);
                    async move { tokio::spawn(f).await? }
                })
                .await?;
                let offset = 2 * writes;
                let ops = throughput(writes * 2, move |i| insert(offset + i)).await?;
                record(&mut figures[slot], p50, p99, ops);
            }
        }
        anyhow::Ok(())
    })?;

    println!(
        "celldb remote mode vs embedded and vs the raw RPC round trip (median of 3 rounds; \
         latency with 1 in flight, throughput with 32)"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>11}   {:>18}   {:>18}",
        "subject", "p50 µs", "p99 µs", "ops/s", "p50 / echo p50", "p50 / embedded p50"
    );
    let echo_p50 = median(&figures[0].p50);
    for (i, name) in names.iter().enumerate() {
        let f = &figures[i];
        let p50 = median(&f.p50);
        let vs_embedded = match i {
            2 | 4 => format!("{:.2}×", p50 / median(&figures[i - 1].p50)),
            _ => "-".into(),
        };
        println!(
            "{:<20} {:>9.1} {:>9.1} {:>11.0}   {:>17.2}×   {:>18}",
            name,
            p50,
            median(&f.p99),
            median(&f.ops),
            p50 / echo_p50,
            vs_embedded
        );
    }
    let ops = |i: usize| median(&figures[i].ops);
    println!(
        "throughput remote / embedded: get {:.2}×, insert {:.2}×; remote get / echo: {:.2}×",
        ops(2) / ops(1),
        ops(4) / ops(3),
        ops(2) / ops(0)
    );
    let stats = client.block_on(remote.server_stats())?;
    println!(
        "server: {} write-sets committed, {} fsyncs ({:.2} per write-set), {} conflicts",
        stats.committed,
        stats.syncs,
        stats.syncs as f64 / stats.committed.max(1) as f64,
        stats.conflicts
    );
    Ok(())
}

fn record(f: &mut Figures, p50: f64, p99: f64, ops: f64) {
    f.p50.push(p50);
    f.p99.push(p99);
    f.ops.push(ops);
}
