//! `celldb-bench`: celldb against raw fjall doing the same writes, in one run.
//!
//! Run (release, on a real disk, not tmpfs):
//! `cargo run --release -p celldb --bin celldb-bench`
//!
//! Rows:
//! - batched writes: 1000 records per commit, each record with a unique and a non-unique index
//!   entry; raw fjall writes the same three keys with the same rkyv/key encodings in one
//!   `WriteBatch` per 1000 records, `PersistMode::Buffer` on both sides;
//! - durable writes at 1/16/64 concurrent writers: celldb `insert` (group commit, acknowledged =
//!   fsynced) against raw fjall with one batch + `persist(SyncAll)` per write, both on the same
//!   tokio multi-thread runtime (raw writers in `spawn_blocking`, since they block); the lone
//!   writer's row adds per-write latency (p50/p99);
//! - durable writes at 32 writers all on one `current_thread` runtime (the raw side again in
//!   `spawn_blocking`): whether writers sharing one thread still share fsyncs;
//! - point reads by key and unique-index lookups.
//!
//! Each row prints both throughputs and the ratio celldb / raw (higher is better for celldb).
//! `CELLDB_BENCH_ONLY=batched|durable` runs only those rows, `CELLDB_BENCH_WRITERS=64` only one
//! durable level (`=32`: the `current_thread` row), `CELLDB_BENCH_SKIP_RAW=1` skips the raw durable side (for profiling).

use cell_sdk::codec;
use celldb::{Db, Durability, Key, Options};
use fjall::{KeyspaceCreateOptions, PersistMode};
use std::sync::Arc;
use std::time::Instant;

cell_sdk::cell_remote!(DB = "celldb");

#[path = "common/row.rs"]
mod row;
use row::{Row, row};

/// Raw fjall with celldb's layout, so both sides write the same bytes.
struct Raw {
    db: fjall::Database,
    records: fjall::Keyspace,
    unique: fjall::Keyspace,
    index: fjall::Keyspace,
    _dir: tempfile::TempDir,
}

impl Raw {
    fn open() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("raw-fjall-").tempdir()?;
        let db = fjall::Database::builder(dir.path())
            .manual_journal_persist(true)
            .cache_size(32 * 1024 * 1024)
            .open()?;
        let records = db.keyspace("records", KeyspaceCreateOptions::default)?;
        let unique = db.keyspace("unique", KeyspaceCreateOptions::default)?;
        let index = db.keyspace("index", KeyspaceCreateOptions::default)?;
        Ok(Self {
            db,
            records,
            unique,
            index,
            _dir: dir,
        })
    }

    fn add(&self, batch: &mut fjall::OwnedWriteBatch, r: &Row) -> anyhow::Result<()> {
        let mut pk = Vec::new();
        r.id.encode_key(&mut pk);
        let mut email = Vec::new();
        r.email.encode_key(&mut email);
        let mut group = Vec::new();
        r.group.encode_key(&mut group);
        group.extend_from_slice(&pk);
        let bytes = codec::to_bytes(r)?;
        batch.insert(&self.unique, email, pk.clone());
        batch.insert(&self.index, group, Vec::<u8>::new());
        batch.insert(&self.records, pk, &bytes[..]);
        Ok(())
    }
}

/// Inserts `rows` into `db`, `per_batch` records per transaction: the batched-write workload,
/// used both for the timed round and to fill the database the read rows measure.
fn fill_batched(
    current: &tokio::runtime::Runtime,
    db: &Db,
    rows: &[Row],
    per_batch: u64,
) -> anyhow::Result<()> {
    current.block_on(async {
        for chunk in rows.chunks(per_batch as usize) {
            db.transaction(|tx| async move {
                for r in chunk {
                    tx.insert(r).await?;
                }
                Ok(())
            })
            .await?;
        }
        anyhow::Ok(())
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs
}

fn print_row(name: &str, celldb: f64, raw: f64, extra: &str) {
    println!(
        "| {name:<34} | {celldb:>12.0} | {raw:>12.0} | {:>6.2}x | {extra}",
        celldb / raw
    );
}

fn main() -> anyhow::Result<()> {
    println!("| benchmark                          |  celldb op/s |     raw op/s |  ratio | notes");
    println!("|------------------------------------|--------------|--------------|--------|------");
    let current = tokio::runtime::Builder::new_current_thread().build()?;

    // Batched writes.
    let n: u64 = 30_000;
    let per_batch: u64 = 1_000;
    let rows: Vec<Row> = (0..n).map(row).collect();
    let rows = Arc::new(rows);
    let buffered = Options {
        durability: Durability::Buffered,
        ..Options::default()
    };
    // Rounds alternate celldb and raw, each into a fresh directory, so load from other
    // processes on this shared machine hits both sides alike; the medians are reported, and
    // CPU time (process user+system) as a second, load-independent ratio.
    let only = std::env::var("CELLDB_BENCH_ONLY").unwrap_or_default();
    let rounds = if only == "durable" { 0 } else { 5 };
    let (mut celldb_rates, mut raw_rates) = (Vec::new(), Vec::new());
    let (mut celldb_cpu, mut raw_cpu) = (0.0, 0.0);
    for _ in 0..rounds {
        let dir = tempfile::tempdir()?;
        let db = Db::open_with(dir.path(), buffered.clone())?;
        // Open the table (keyspaces, metadata) before timing, as `Raw::open` does.
        current.block_on(db.count::<Row>())?;
        let (start, cpu) = (Instant::now(), cpu_seconds());
        fill_batched(&current, &db, &rows, per_batch)?;
        celldb_rates.push(rate(n, start.elapsed().as_secs_f64()));
        celldb_cpu += cpu_seconds() - cpu;
        drop(db);

        let raw = Raw::open()?;
        let (start, cpu) = (Instant::now(), cpu_seconds());
        for chunk in rows.chunks(per_batch as usize) {
            let mut batch = raw.db.batch().durability(Some(PersistMode::Buffer));
            for r in chunk {
                raw.add(&mut batch, r)?;
            }
            batch.commit()?;
        }
        raw_rates.push(rate(n, start.elapsed().as_secs_f64()));
        raw_cpu += cpu_seconds() - cpu;
    }
    if rounds > 0 {
        print_row(
            "batched writes (1000/commit)",
            median(&mut celldb_rates),
            median(&mut raw_rates),
            &format!(
                "records/s, 3 keys per record, median of {rounds}; CPU-time ratio {:.2}x; target >= 0.7x",
                raw_cpu / celldb_cpu
            ),
        );
    }

    if only == "batched" {
        return Ok(());
    }

    // Durable writes at 1/16/64 concurrent writers.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stat = |db: &Db| {
        let s = db.stats();
        (
            s.syncs.load(std::sync::atomic::Ordering::Relaxed),
            s.committed.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    // Each concurrency level runs 3 alternating rounds (celldb, raw, celldb, raw, …) so a
    // burst of disk load from other processes hits both sides; medians are reported.
    // `CELLDB_BENCH_WRITERS=64` runs one level only (for profiling).
    // The last level runs every writer on a `current_thread` runtime (one thread for all of
    // them, as under `#[tokio::main(flavor = "current_thread")]`): a commit that blocked that
    // thread would keep every other writer from even submitting.
    let levels: Vec<(u64, u64, bool)> = [
        (1u64, 100u64, false),
        (16, 50, false),
        (64, 30, false),
        (32, 30, true),
    ]
    .into_iter()
    .filter(|(w, _, _)| {
        std::env::var("CELLDB_BENCH_WRITERS").map_or(true, |only| only == w.to_string())
    })
    .collect();
    for (writers, per_writer, single_thread) in levels {
        let runtime = if single_thread { &current } else { &multi };
        let total = writers * per_writer;
        let (mut celldb_rates, mut raw_rates) = (Vec::new(), Vec::new());
        let (mut syncs, mut acked) = (0, 0);
        let (mut celldb_cpu, mut raw_cpu) = (0.0, 0.0);
        // Per-insert latencies (µs) of every round, reported for the lone writer.
        let (mut celldb_lat, mut raw_lat) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let db = Db::open(dir.path())?;
            runtime.block_on(db.count::<Row>())?;
            let (syncs_before, acked_before) = stat(&db);
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let lat = runtime.block_on(async {
                let mut tasks = Vec::new();
                for w in 0..writers {
                    let db = db.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(per_writer as usize);
                        for i in 0..per_writer {
                            let t = Instant::now();
                            db.insert(&row(w * 1_000_000 + i)).await?;
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        anyhow::Ok(lat)
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await??);
                }
                anyhow::Ok(all)
            })?;
            celldb_lat.extend(lat);
            celldb_rates.push(rate(total, start.elapsed().as_secs_f64()));
            celldb_cpu += cpu_seconds() - cpu;
            let (s, a) = stat(&db);
            syncs += s - syncs_before;
            acked += a - acked_before;
            drop(db);

            if std::env::var("CELLDB_BENCH_SKIP_RAW").is_ok() {
                raw_rates.push(1.0);
                continue;
            }
            let raw = Arc::new(Raw::open()?);
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let lat = runtime.block_on(async {
                let mut tasks = Vec::new();
                for w in 0..writers {
                    let raw = raw.clone();
                    tasks.push(tokio::task::spawn_blocking(move || {
                        let mut lat = Vec::with_capacity(per_writer as usize);
                        for i in 0..per_writer {
                            let t = Instant::now();
                            let mut batch = raw.db.batch().durability(Some(PersistMode::SyncAll));
                            raw.add(&mut batch, &row(w * 1_000_000 + i))?;
                            batch.commit()?;
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        anyhow::Ok(lat)
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await??);
                }
                anyhow::Ok(all)
            })?;
            raw_lat.extend(lat);
            raw_rates.push(rate(total, start.elapsed().as_secs_f64()));
            raw_cpu += cpu_seconds() - cpu;
        }
        let per_write = |cpu: f64| cpu / (3 * total) as f64 * 1e6;
        let target = match writers {
            16 => ", target >= 5x",
            64 => ", target >= 20x",
            _ => "",
        };
        let latency = if writers == 1 {
            let pct = |v: &mut Vec<f64>, p: f64| {
                v.sort_by(f64::total_cmp);
                v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0.0)
            };
            format!(
                "; latency p50/p99: celldb {:.0}/{:.0} us, raw {:.0}/{:.0} us",
                pct(&mut celldb_lat, 0.5),
                pct(&mut celldb_lat, 0.99),
                pct(&mut raw_lat, 0.5),
                pct(&mut raw_lat, 0.99)
            )
        } else {
            String::new()
        };
        let flavor = if single_thread {
            " (current_thread)"
        } else {
            ""
        };
        print_row(
            &format!("durable writes, {writers} writers{flavor}"),
            median(&mut celldb_rates),
            median(&mut raw_rates),
            &format!(
                "median of 3; fsyncs per acked write: celldb {:.3}, raw 1.000; CPU per write: \
                 celldb {:.0} us, raw {:.0} us{latency}{target}",
                syncs as f64 / acked.max(1) as f64,
                per_write(celldb_cpu),
                per_write(raw_cpu)
            ),
        );
    }

    if only == "durable" {
        return Ok(());
    }

    // Reads: the batched databases again, freshly filled.
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path(), buffered)?;
    let raw = Raw::open()?;
    fill_batched(&current, &db, &rows, per_batch)?;
    for chunk in rows.chunks(per_batch as usize) {
        let mut batch = raw.db.batch().durability(Some(PersistMode::Buffer));
        for r in chunk {
            raw.add(&mut batch, r)?;
        }
        batch.commit()?;
    }
    let lookups: Vec<u64> = (0..n).map(|i| (i * 7_919) % n).collect();
    let start = Instant::now();
    current.block_on(async {
        for &id in &lookups {
            let r = db.get::<Row>(id).await?;
            anyhow::ensure!(r.is_some_and(|r| r.id == id));
        }
        anyhow::Ok(())
    })?;
    let celldb_get = rate(n, start.elapsed().as_secs_f64());
    let start = Instant::now();
    for &id in &lookups {
        let mut pk = Vec::new();
        id.encode_key(&mut pk);
        let bytes = raw
            .records
            .get(&pk)?
            .ok_or_else(|| anyhow::anyhow!("missing"))?;
        let r: Row = codec::from_bytes(&bytes)?;
        anyhow::ensure!(r.id == id);
    }
    let raw_get = rate(n, start.elapsed().as_secs_f64());
    print_row(
        "point reads by key",
        celldb_get,
        raw_get,
        "decoded records/s",
    );

    let start = Instant::now();
    current.block_on(async {
        db.scope(async {
            for &id in &lookups {
                let r = Row::by_email(format!("user{id}@example.com")).await?;
                anyhow::ensure!(r.is_some_and(|r| r.id == id));
            }
            anyhow::Ok(())
        })
        .await
    })?;
    let celldb_idx = rate(n, start.elapsed().as_secs_f64());
    let start = Instant::now();
    for &id in &lookups {
        let mut email = Vec::new();
        format!("user{id}@example.com").encode_key(&mut email);
        let pk = raw
            .unique
            .get(&email)?
            .ok_or_else(|| anyhow::anyhow!("missing"))?;
        let bytes = raw
            .records
            .get(&pk)?
            .ok_or_else(|| anyhow::anyhow!("missing"))?;
        let r: Row = codec::from_bytes(&bytes)?;
        anyhow::ensure!(r.id == id);
    }
    let raw_idx = rate(n, start.elapsed().as_secs_f64());
    print_row(
        "unique index lookups",
        celldb_idx,
        raw_idx,
        "decoded records/s",
    );
    Ok(())
}
