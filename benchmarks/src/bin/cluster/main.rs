//! Replicated writes and linearizable reads: a 3-node celldb raft group against three etcd 3.4
//! members on loopback (the anchor, measured in the same run) and against single-node celldb
//! (the cost of replication). Issue 18, "Benchmark"; method and figures in
//! `docs/benchmarks.md`.
//!
//! Every subject is a [`Subject`]: `put` returns once the write is durable on a majority of
//! its nodes, `get` is a linearizable read, and `fsyncs` reads each node's fsync counter. The
//! same harness drives all of them at the same concurrency. All subjects are started first
//! (fresh, in temporary directories under `--dir`) and run side by side, taking turns phase
//! by phase, so that load from elsewhere on a shared machine falls on all of them alike (an
//! idle subject costs little: etcd's heartbeats, celldb's nothing):
//!
//! 1. each subject: preload `--read-keys` keys (16 clients);
//! 2. for each round and each N of `--clients`, each subject in turn: a write phase, N clients
//!    (tasks) each doing sequential puts of `--value-bytes`-byte values to keys of its own for
//!    `--seconds` (after a warm-up of a tenth of that, not counted), every node's fsync counter
//!    read at the start and the end of the measured window; then each subject in turn: a read
//!    phase, N clients each doing sequential gets of random preloaded keys (checked) for as
//!    long, the latency of every get completed in the window recorded.
//!
//! It prints a markdown table (writes/s, fsyncs per acknowledged write on each node, read
//! p50/p99 and reads/s per subject and N; medians over `--rounds`) and each celldb subject's
//! ratios to etcd at the same N. A subject `celldb-raft@NAME=VALUE` is a second raft group
//! whose nodes run with that environment variable: an A/B of a server setting in one run,
//! reported against the plain group. `@CELLDB_BIN=PATH` runs the group on another celldb
//! binary: an A/B of two builds. Progress goes to stderr. The client runs in this process, on
//! a tokio runtime with one worker per CPU; servers and client share the machine's CPUs and
//! disk.
//!
//! ```sh
//! benchmarks/scripts/setup-etcd.sh   # etcd 3.4, etcdctl and protoc, from Debian's packages
//! cargo build --release -p celldb --features cli --bin celldb
//! cargo run --release -p cell-bench --features etcd --bin cluster -- --seconds 5 --rounds 3
//! cargo run --release -p cell-bench --features etcd --bin cluster -- --subjects etcd --clients 64
//! ```

mod celldb;
#[cfg(feature = "etcd")]
mod etcd;
mod process;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use cell_bench::{histogram, nanos};
use clap::Parser;
use futures::future::BoxFuture;

cell_sdk::cell_remote!(DB = "celldb");

#[derive(Parser, Debug)]
#[command(
    about = "Replicated writes and linearizable reads: celldb (single node, raft group) against \
             three etcd 3.4 members on loopback"
)]
struct Args {
    /// Subjects, comma-separated, run in this order: etcd (the anchor of the ratios; needs
    /// the `etcd` feature), celldb-single, celldb-raft. For an A/B of a server setting, add
    /// `celldb-raft@NAME=VALUE` (repeatable): another raft group whose nodes run with these
    /// environment variables, measured in turns with the plain one and compared with it.
    /// `@CELLDB_BIN=PATH` runs that group on another `celldb` binary (an A/B of two builds:
    /// copy the other build's `target/release/celldb` aside first).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "etcd,celldb-single,celldb-raft"
    )]
    subjects: Vec<String>,
    /// Concurrent clients of the write and read phases, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Measured seconds of each phase (a tenth more runs first as a warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Bytes of each written value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Keys written before the read phases, which read them at random.
    #[arg(long, default_value_t = 10_000)]
    read_keys: u64,
    /// Rounds: every phase runs this many times per subject, and the report gives each
    /// figure's median.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Members of the etcd cluster and nodes of the celldb raft group.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Worker threads of each celldb raft node (`celldb serve --threads`). Default: the
    /// node's share of this machine's CPUs, rounded up (1 for three nodes on two cores).
    /// etcd keeps Go's default (GOMAXPROCS = every CPU): GOMAXPROCS=1 measured slower for it
    /// (docs/benchmarks.md).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    node_threads: Option<u16>,
    /// The etcd server (3.4; `benchmarks/scripts/setup-etcd.sh` installs it).
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// The `celldb` command line (default: the one beside this executable, built with `cargo
    /// build --release -p celldb --features cli --bin celldb`, else `celldb` on $PATH).
    #[arg(long)]
    celldb: Option<PathBuf>,
    /// Where the servers' data directories go (temporary, deleted at the end). Use a real
    /// disk, not tmpfs: fsync is what is measured. Default: the system's temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A system under test, running, with a client of it. Dropping it stops its servers.
///
/// Futures are boxed so that subjects can be trait objects; the box costs the same for all
/// of them and far less than a round trip.
pub(crate) trait Subject: Send + Sync {
    /// What the report calls it (with a version or node count).
    fn describe(&self) -> String;

    /// Stores `value` under `key` (insert or replace); returns once it is durable on a
    /// majority of the subject's nodes.
    fn put<'a>(&'a self, key: u64, value: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>>;

    /// The value under `key`, read linearizably (it reflects every put acknowledged before
    /// the get began).
    fn get(&self, key: u64) -> BoxFuture<'_, anyhow::Result<Option<Vec<u8>>>>;

    /// Each node's fsync count so far (counters since the node started, in node order).
    fn fsyncs(&self) -> BoxFuture<'_, anyhow::Result<Vec<u64>>>;

    /// Each node's CPU seconds so far (its process's user + system time, in node order).
    fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>>;
}

/// `--node-threads`, or each node's share of the CPUs (rounded up).
fn node_threads(args: &Args) -> u16 {
    args.node_threads.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        u16::try_from(cpus.div_ceil(args.nodes.max(1))).unwrap_or(u16::MAX)
    })
}

/// Starts the subject `name`: a subject's name, then for `celldb-raft` any number of
/// `@NAME=VALUE` environment variables for its nodes (`celldb-raft@RUST_LOG=info`).
async fn start(name: &str, args: &Args, base: &Path) -> anyhow::Result<Arc<dyn Subject>> {
    let celldb = || celldb::binary(args.celldb.as_deref());
    let (subject, env) = parse_subject(name)?;
    Ok(match subject {
        "etcd" => start_etcd(args, base).await?,
        "celldb-single" => Arc::new(celldb::start_single(&celldb(), base).await?),
        "celldb-raft" => Arc::new(
            celldb::start_raft(
                &raft_binary(&env, celldb),
                base,
                args.nodes,
                node_threads(args),
                &env,
            )
            .await?,
        ),
        other => bail!("unknown subject {other:?} (etcd, celldb-single, celldb-raft)"),
    })
}

/// A subject's name and the `@NAME=VALUE` variables after it (only `celldb-raft` takes any).
fn parse_subject(name: &str) -> anyhow::Result<(&str, Vec<(String, String)>)> {
    let mut parts = name.split('@');
    let subject = parts.next().unwrap_or_default();
    let env = parts
        .map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .with_context(|| format!("{name:?}: `@{pair}` is not `@NAME=VALUE`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        env.is_empty() || subject == "celldb-raft",
        "{name:?}: only celldb-raft takes `@NAME=VALUE` variables for its nodes"
    );
    Ok((subject, env))
}

/// The binary a raft group runs: the variant's `@CELLDB_BIN=PATH` (an A/B of two builds in
/// one run), else `--celldb`'s or the default.
fn raft_binary(env: &[(String, String)], default: impl FnOnce() -> PathBuf) -> PathBuf {
    env.iter()
        .rev()
        .find(|(name, _)| name == "CELLDB_BIN")
        .map_or_else(default, |(_, path)| PathBuf::from(path))
}

#[cfg(feature = "etcd")]
async fn start_etcd(args: &Args, base: &Path) -> anyhow::Result<Arc<dyn Subject>> {
    Ok(Arc::new(
        etcd::Etcd::start(&args.etcd, base, args.nodes).await?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn start_etcd(_args: &Args, _base: &Path) -> anyhow::Result<Arc<dyn Subject>> {
    bail!(
        "the etcd subject needs the `etcd` feature: run benchmarks/scripts/setup-etcd.sh, then \
         cargo run --release -p cell-bench --features etcd --bin cluster"
    )
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Row {
    subject: String,
    /// The name given in `--subjects`.
    key: String,
    clients: usize,
    writes_per_s: f64,
    /// fsyncs of each node per acknowledged write in the measured window.
    fsyncs_per_ack: Vec<f64>,
    /// CPU µs of each node's process per acknowledged write in the measured window.
    cpu_us_per_ack: Vec<f64>,
    /// CPU µs of the benchmark's own process (the clients) per acknowledged write.
    client_us_per_ack: f64,
    read_p50_us: f64,
    read_p99_us: f64,
    reads_per_s: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(args.read_keys > 0, "--read-keys must be positive");
    anyhow::ensure!(args.rounds > 0, "--rounds must be positive");
    anyhow::ensure!(
        args.clients.iter().all(|&n| (1..=65_536).contains(&n)),
        "--clients takes counts from 1 to 65536"
    );
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let mut subjects = Vec::new();
        for name in &args.subjects {
            let subject = start(name, &args, &base)
                .await
                .with_context(|| format!("starting {name}"))?;
            eprintln!("{name}: {} started", subject.describe());
            subjects.push((name.clone(), subject));
        }
        let rows = measure(&subjects, &args).await;
        // Stops every subject's servers (also when measuring failed).
        drop(subjects);
        rows
    })?;
    report(&rows, &args);
    Ok(())
}

/// Keys of the write phases start here (the preloaded keys are `0..--read-keys`); each phase
/// and client has a range of its own.
const WRITE_KEYS: u64 = 1 << 48;

/// What one round measured of one subject at one concurrency.
#[derive(Debug, Clone)]
struct Sample {
    writes_per_s: f64,
    fsyncs_per_ack: Vec<f64>,
    cpu_us_per_ack: Vec<f64>,
    client_us_per_ack: f64,
    read_p50_us: f64,
    read_p99_us: f64,
    reads_per_s: f64,
}

/// Preloads every subject, then runs the phases: for each round and each concurrency, the
/// write phase of every subject, then the read phase of every subject (subjects take turns,
/// in reverse order every other round, so that load from elsewhere on the machine falls on
/// all of them alike). A row is the median of each figure over the rounds.
async fn measure(subjects: &[(String, Arc<dyn Subject>)], args: &Args) -> anyhow::Result<Vec<Row>> {
    let measured = Duration::from_secs_f64(args.seconds);
    let warmup = measured / 10;
    for (name, subject) in subjects {
        eprintln!("{name}: preloading {} keys", args.read_keys);
        preload(subject, args.read_keys, args.value_bytes)
            .await
            .with_context(|| format!("preloading {name}"))?;
    }
    // samples[subject][concurrency]
    let mut samples: Vec<Vec<Vec<Sample>>> =
        vec![vec![Vec::new(); args.clients.len()]; subjects.len()];
    let mut phase = 0u64;
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (c, &clients) in args.clients.iter().enumerate() {
            let mut written = Vec::new();
            for &i in &order {
                let (name, subject) = &subjects[i];
                eprintln!(
                    "round {}/{}: {name}: writes, {clients} clients, {measured:?}",
                    round + 1,
                    args.rounds
                );
                let key_base = WRITE_KEYS + (phase << 40);
                phase += 1;
                let figures = writes(
                    subject,
                    clients,
                    warmup,
                    measured,
                    key_base,
                    args.value_bytes,
                )
                .await
                .with_context(|| format!("{name}: writes with {clients} clients"))?;
                written.push((i, figures));
            }
            for (i, written) in written {
                let (name, subject) = &subjects[i];
                eprintln!(
                    "round {}/{}: {name}: reads, {clients} clients, {measured:?}",
                    round + 1,
                    args.rounds
                );
                let (hist, reads) = reads(
                    subject,
                    clients,
                    warmup,
                    measured,
                    args.read_keys,
                    args.value_bytes,
                )
                .await
                .with_context(|| format!("{name}: reads with {clients} clients"))?;
                let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
                let sample = Sample {
                    writes_per_s: written.per_s,
                    fsyncs_per_ack: written.fsyncs_per_ack,
                    cpu_us_per_ack: written.cpu_us_per_ack,
                    client_us_per_ack: written.client_us_per_ack,
                    read_p50_us: us(0.5),
                    read_p99_us: us(0.99),
                    reads_per_s: reads as f64 / measured.as_secs_f64(),
                };
                eprintln!(
                    "round {}/{}: {name}: {clients} clients: {:.0} writes/s, fsyncs/ack {}, \
                     CPU µs/ack {} (clients {:.1}), reads p50 {:.0} µs p99 {:.0} µs, \
                     {:.0} reads/s",
                    round + 1,
                    args.rounds,
                    sample.writes_per_s,
                    per_node(&sample.fsyncs_per_ack, 2),
                    per_node(&sample.cpu_us_per_ack, 1),
                    sample.client_us_per_ack,
                    sample.read_p50_us,
                    sample.read_p99_us,
                    sample.reads_per_s
                );
                samples[i][c].push(sample);
            }
        }
    }
    let mut rows = Vec::new();
    for (i, (name, subject)) in subjects.iter().enumerate() {
        for (c, &clients) in args.clients.iter().enumerate() {
            let runs = &samples[i][c];
            let median_of = |f: &dyn Fn(&Sample) -> f64| median(runs.iter().map(f).collect());
            let nodes = runs.first().map_or(0, |s| s.fsyncs_per_ack.len());
            let per_node_median = |f: &dyn Fn(&Sample) -> &Vec<f64>| -> Vec<f64> {
                (0..nodes)
                    .map(|n| median_of(&|s| f(s).get(n).copied().unwrap_or(f64::NAN)))
                    .collect()
            };
            rows.push(Row {
                subject: subject.describe(),
                key: name.clone(),
                clients,
                writes_per_s: median_of(&|s| s.writes_per_s),
                fsyncs_per_ack: per_node_median(&|s| &s.fsyncs_per_ack),
                cpu_us_per_ack: per_node_median(&|s| &s.cpu_us_per_ack),
                client_us_per_ack: median_of(&|s| s.client_us_per_ack),
                read_p50_us: median_of(&|s| s.read_p50_us),
                read_p99_us: median_of(&|s| s.read_p99_us),
                reads_per_s: median_of(&|s| s.reads_per_s),
            });
        }
    }
    Ok(rows)
}

fn median(values: Vec<f64>) -> f64 {
    cell_bench::median_range(values).0
}

/// Writes keys `0..keys` with 16 clients.
async fn preload(subject: &Arc<dyn Subject>, keys: u64, value_bytes: usize) -> anyhow::Result<()> {
    const CLIENTS: u64 = 16;
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let subject = subject.clone();
        tasks.push(tokio::spawn(async move {
            let mut key = client;
            while key < keys {
                subject.put(key, &value(key, value_bytes)).await?;
                key += CLIENTS;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The measured window of a phase: operations that complete inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn after(warmup: Duration, measured: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + measured,
        }
    }

    fn contains(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }
}

/// What a write phase measured, over its window.
struct Written {
    /// Acknowledged writes per second.
    per_s: f64,
    /// Each node's fsyncs per acknowledged write.
    fsyncs_per_ack: Vec<f64>,
    /// Each node's CPU µs per acknowledged write.
    cpu_us_per_ack: Vec<f64>,
    /// The benchmark process's own CPU µs per acknowledged write (the clients).
    client_us_per_ack: f64,
}

/// `clients` tasks of sequential puts to keys of their own, measured over a window.
///
/// The window is bounded by the two readings of the fsync counters, and the writes counted are
/// those acknowledged between them (the acknowledgement counter is read on both sides of each
/// reading, and the midpoints taken): on a loaded machine a reading can take a while, and
/// counting writes by a clock instead would skew the ratio.
async fn writes(
    subject: &Arc<dyn Subject>,
    clients: usize,
    warmup: Duration,
    measured: Duration,
    key_base: u64,
    value_bytes: usize,
) -> anyhow::Result<Written> {
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..clients as u64 {
        let (subject, acked, stop) = (subject.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut key = key_base + (client << 24);
            while !stop.load(Ordering::Relaxed) {
                subject.put(key, &value(key, value_bytes)).await?;
                acked.fetch_add(1, Ordering::Relaxed);
                key += 1;
            }
            anyhow::Ok(())
        }));
    }
    let reading = || async {
        let (acks_before, start) = (acked.load(Ordering::Relaxed), Instant::now());
        let cpu = subject
            .cpu_seconds()
            .and_then(|nodes| Ok((nodes, process::own_cpu_seconds()?)));
        let fsyncs = subject.fsyncs().await;
        let (acks_after, end) = (acked.load(Ordering::Relaxed), Instant::now());
        let at = start + (end - start) / 2;
        fsyncs.and_then(|f| Ok((f, cpu?, (acks_before + acks_after) as f64 / 2.0, at)))
    };
    tokio::time::sleep(warmup).await;
    let first = reading().await;
    tokio::time::sleep(measured).await;
    let last = reading().await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let ((before, cpu_0, acks_0, t0), (after, cpu_1, acks_1, t1)) = (first?, last?);
    let acks = acks_1 - acks_0;
    anyhow::ensure!(acks > 0.0, "no write was acknowledged in {measured:?}");
    anyhow::ensure!(before.len() == after.len(), "the number of nodes changed");
    let fsyncs_per_ack = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / acks)
        .collect();
    let cpu_us_per_ack = cpu_0
        .0
        .iter()
        .zip(&cpu_1.0)
        .map(|(b, a)| (a - b) * 1e6 / acks)
        .collect();
    Ok(Written {
        per_s: acks / (t1 - t0).as_secs_f64(),
        fsyncs_per_ack,
        cpu_us_per_ack,
        client_us_per_ack: (cpu_1.1 - cpu_0.1) * 1e6 / acks,
    })
}

/// `clients` tasks of sequential gets of random keys of `0..keys`, each checked: the latency
/// histogram (ns) of the gets completed in the measured window, and their number.
async fn reads(
    subject: &Arc<dyn Subject>,
    clients: usize,
    warmup: Duration,
    measured: Duration,
    keys: u64,
    value_bytes: usize,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    let window = Window::after(warmup, measured);
    let mut tasks = Vec::new();
    for client in 0..clients as u64 {
        let subject = subject.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut rng = SplitMix(client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC3E1);
            loop {
                let key = rng.next() % keys;
                let start = Instant::now();
                let found = subject.get(key).await?;
                let done = Instant::now();
                if found.as_deref() != Some(&value(key, value_bytes)[..]) {
                    bail!(
                        "get({key}) returned {:?} bytes, not the preloaded value",
                        found.map(|v| v.len())
                    );
                }
                if done >= window.end {
                    return anyhow::Ok(hist);
                }
                if window.contains(done) {
                    hist.record(nanos(done - start).max(1))?;
                }
            }
        }));
    }
    let mut total = histogram();
    for task in tasks {
        total.add(task.await??)?;
    }
    let count = total.len();
    anyhow::ensure!(count > 0, "no read completed in {measured:?}");
    Ok((total, count))
}

/// The value written under `key`: `bytes` pseudo-random bytes (incompressible, like most
/// values; a constant pattern would flatter a store that compresses).
fn value(key: u64, bytes: usize) -> Vec<u8> {
    let mut rng = SplitMix(key);
    let mut out = Vec::with_capacity(bytes + 8);
    while out.len() < bytes {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(bytes);
    out
}

/// splitmix64: a tiny deterministic generator (keys and values, not security).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One figure per node, `a / b / c`, with `decimals` digits after the point.
fn per_node(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn report(rows: &[Row], args: &Args) {
    println!(
        "Cluster benchmark: {} s per phase (+10% warm-up), median of {} round(s), {}-byte values, \
         {} preloaded keys, {} CPUs",
        args.seconds,
        args.rounds,
        args.value_bytes,
        args.read_keys,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| subject | clients | writes/s | fsyncs/ack per node | server CPU µs/ack per node | \
         client CPU µs/ack | read p50 µs | read p99 µs | reads/s |"
    );
    println!("|---|---:|---:|---|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} |",
            r.subject,
            r.clients,
            r.writes_per_s,
            per_node(&r.fsyncs_per_ack, 2),
            per_node(&r.cpu_us_per_ack, 1),
            r.client_us_per_ack,
            r.read_p50_us,
            r.read_p99_us,
            r.reads_per_s
        );
    }
    ratios(
        rows,
        "etcd",
        "Against etcd at the same concurrency (writes: higher is better, aim \
        ≥ 3× at 64 clients; read p50: lower is better, aim ≤ 0.5×):",
    );
    ratios(
        rows.iter().filter(|r| r.key.starts_with("celldb-raft")),
        "celldb-raft",
        "Variants of the raft group (`celldb-raft@NAME=VALUE`) against the plain one:",
    );
    ratios(
        rows.iter()
            .filter(|r| r.key == "celldb-raft" || r.key == "celldb-single"),
        "celldb-single",
        "The cost of replication: \
        the raft group against single-node celldb at the same concurrency:",
    );
}

/// A table of each row's ratios to the row of subject `anchor` at the same concurrency (none
/// when no row has an anchor).
fn ratios<'a>(rows: impl IntoIterator<Item = &'a Row> + Clone, anchor: &str, title: &str) {
    let find = |clients: usize| {
        rows.clone()
            .into_iter()
            .find(|r| r.key == anchor && r.clients == clients)
    };
    let compared: Vec<(&Row, &Row)> = rows
        .clone()
        .into_iter()
        .filter(|r| r.key != anchor)
        .filter_map(|r| Some((r, find(r.clients)?)))
        .collect();
    if compared.is_empty() {
        return;
    }
    println!();
    println!("{title}");
    println!();
    println!(
        "| subject | clients | writes/s vs {anchor} | server CPU/ack vs {anchor} | \
         read p50 vs {anchor} | read p99 vs {anchor} |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let total = |r: &Row| r.cpu_us_per_ack.iter().sum::<f64>();
    for (r, e) in compared {
        println!(
            "| {} | {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            r.subject,
            r.clients,
            r.writes_per_s / e.writes_per_s,
            total(r) / total(e),
            r.read_p50_us / e.read_p50_us,
            r.read_p99_us / e.read_p99_us
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_per_key_and_sized() {
        assert_eq!(value(7, 100), value(7, 100));
        assert_ne!(value(7, 100), value(8, 100));
        assert_eq!(value(7, 100).len(), 100);
        assert_eq!(value(7, 3).len(), 3);
    }

    #[test]
    fn a_variant_subject_carries_its_variables_and_bad_ones_are_refused() {
        let (subject, env) = parse_subject("celldb-raft").unwrap();
        assert_eq!((subject, env.len()), ("celldb-raft", 0));
        let (subject, env) = parse_subject("celldb-raft@CELLDB_THREADS=2@X=a=b").unwrap();
        assert_eq!(subject, "celldb-raft");
        assert_eq!(
            env,
            [
                ("CELLDB_THREADS".to_string(), "2".to_string()),
                ("X".to_string(), "a=b".to_string())
            ]
        );
        for bad in ["celldb-raft@NOVALUE", "celldb-raft@=1", "etcd@GOMAXPROCS=1"] {
            let err = parse_subject(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_variant_may_name_its_own_binary() {
        let default = || PathBuf::from("target/release/celldb");
        let (_, env) = parse_subject("celldb-raft@CELLDB_THREADS=2").unwrap();
        assert_eq!(raft_binary(&env, default), default());
        let (_, env) = parse_subject("celldb-raft@CELLDB_BIN=/a@CELLDB_BIN=/tmp/base").unwrap();
        assert_eq!(raft_binary(&env, default), PathBuf::from("/tmp/base"));
    }

    #[test]
    fn a_window_holds_its_start_and_not_its_end() {
        let w = Window::after(Duration::ZERO, Duration::from_secs(1));
        assert!(w.contains(w.start));
        assert!(!w.contains(w.end));
        assert!(!w.contains(w.start - Duration::from_nanos(1)));
    }
}
