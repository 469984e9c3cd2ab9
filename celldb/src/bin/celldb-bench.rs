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
//!   tokio multi-thread runtime (raw writers in `spawn_blocking`, since they block);
//! - point reads by key and unique-index lookups.
//!
//! Each row prints both throughputs and the ratio celldb / raw (higher is better for celldb).

use cell_sdk::{codec, protein};
use celldb::{Db, Durability, Key, Options};
use fjall::{KeyspaceCreateOptions, PersistMode};
use std::sync::Arc;
use std::time::Instant;

#[allow(non_snake_case)]
mod DB {
    pub(crate) use celldb::__cell_exports::*;
}

/// The benchmark record.
#[protein]
#[DB::persist(table = "bench")]
pub struct Row {
    #[DB::key]
    id: u64,
    #[DB::unique]
    email: String,
    #[DB::index]
    group: u64,
    payload: Vec<u8>,
}

fn row(id: u64) -> Row {
    Row {
        id,
        email: format!("user{id}@example.com"),
        group: id % 100,
        payload: vec![(id % 251) as u8; 100],
    }
}

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
    let n: u64 = 50_000;
    let per_batch: u64 = 1_000;
    let rows: Vec<Row> = (0..n).map(row).collect();
    let rows = Arc::new(rows);
    let buffered = Options {
        durability: Durability::Buffered,
        ..Options::default()
    };
    let celldb_batched = {
        let dir = tempfile::tempdir()?;
        let db = Db::open_with(dir.path(), buffered.clone())?;
        let start = Instant::now();
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
        })?;
        rate(n, start.elapsed().as_secs_f64())
    };
    if std::env::var("CELLDB_BENCH_SKIP_RAW").is_ok() {
        return Ok(());
    }
    let raw_batched = {
        let raw = Raw::open()?;
        let start = Instant::now();
        for chunk in rows.chunks(per_batch as usize) {
            let mut batch = raw.db.batch().durability(Some(PersistMode::Buffer));
            for r in chunk {
                raw.add(&mut batch, r)?;
            }
            batch.commit()?;
        }
        rate(n, start.elapsed().as_secs_f64())
    };
    print_row(
        "batched writes (1000/commit)",
        celldb_batched,
        raw_batched,
        "records/s, 3 keys per record, target >= 0.7x",
    );

    if std::env::var("CELLDB_BENCH_ONLY").as_deref() == Ok("batched") {
        return Ok(());
    }

    // Durable writes at 1/16/64 concurrent writers.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for (writers, per_writer) in [(1u64, 300u64), (16, 60), (64, 30)] {
        let total = writers * per_writer;
        let dir = tempfile::tempdir()?;
        let db = Db::open(dir.path())?;
        let start = Instant::now();
        multi.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..writers {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_writer {
                        db.insert(&row(w * 1_000_000 + i)).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            anyhow::Ok(())
        })?;
        let celldb_rate = rate(total, start.elapsed().as_secs_f64());
        let syncs = db.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
        let acked = db
            .stats()
            .committed
            .load(std::sync::atomic::Ordering::Relaxed);
        let raw = Arc::new(Raw::open()?);
        let start = Instant::now();
        multi.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..writers {
                let raw = raw.clone();
                tasks.push(tokio::task::spawn_blocking(move || {
                    for i in 0..per_writer {
                        let mut batch = raw.db.batch().durability(Some(PersistMode::SyncAll));
                        raw.add(&mut batch, &row(w * 1_000_000 + i))?;
                        batch.commit()?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            anyhow::Ok(())
        })?;
        let raw_rate = rate(total, start.elapsed().as_secs_f64());
        let target = match writers {
            16 => ", target >= 5x",
            64 => ", target >= 20x",
            _ => "",
        };
        print_row(
            &format!("durable writes, {writers} writers"),
            celldb_rate,
            raw_rate,
            &format!(
                "fsyncs per acked write: celldb {:.3} (incl. table setup), raw 1.000{target}",
                syncs as f64 / acked.max(1) as f64
            ),
        );
    }

    // Reads: the batched databases again, freshly filled.
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path(), buffered)?;
    let raw = Raw::open()?;
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
    })?;
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
