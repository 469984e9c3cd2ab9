//! Benchmark: `Postgres::insert`/`get` against hand-written `tokio-postgres` prepared
//! statements doing the same work on the same server, and the same workload on embedded celldb.
//!
//! ```text
//! cargo run --release -p cell-postgres --example pg-bench [-- ops rounds]
//! ```
//!
//! A private server (`cell_postgres::testing`) that fsyncs its commits, as a production server
//! does. One operation in flight. After a warm-up round, each round runs `ops` inserts then
//! `ops` gets by key per subject, the subjects taking turns every 25 operations (order
//! alternating), so load from elsewhere on the machine falls on all of them alike. Printed:
//! medians over the rounds of the per-operation time, of each round's ratio to the
//! hand-written anchor (> 1 = faster than it) with its range, and of the client-side CPU time
//! per get (the main thread's, which runs every task).

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark: a failure should stop it loudly"
)]

use std::time::{Duration, Instant};

use cell_sdk::{cell_remote, protein};

cell_remote!(Postgres = "cell-postgres");
cell_remote!(DB = "celldb");

/// The provider's row.
#[protein]
#[Postgres::table(name = "bench_users")]
pub struct User {
    #[Postgres::primary_key]
    id: i64,
    email: String,
    name: String,
    age: i32,
}

/// The same record on celldb.
#[protein]
#[DB::persist(table = "bench_users")]
pub struct LocalUser {
    #[DB::key]
    id: u64,
    email: String,
    name: String,
    age: i32,
}

/// What the hand-written code decodes a row into.
#[derive(Debug)]
#[allow(dead_code, reason = "decoded like the provider does, never read")]
struct RawUser {
    id: i64,
    email: String,
    name: String,
    age: i32,
}

fn sample(id: i64) -> User {
    User {
        id,
        email: format!("user{id}@example.com"),
        name: format!("User number {id}"),
        age: 30 + (id % 50) as i32,
    }
}

/// The subjects, in table order.
const SUBJECTS: [&str; 3] = [
    "tokio-postgres prepared statements (anchor)",
    "cell-postgres (Pg::insert / Pg::get)",
    "celldb embedded (Db::insert / Db::get)",
];

/// Operations per block: subjects take turns block by block, so a burst of load from the rest
/// of the machine (or the server's background writer) hits every subject alike.
const BLOCK: i64 = 25;

/// Wall and CPU time of one subject's operations of one kind in one round.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

/// What one round measured: per subject, (inserts, gets).
type Round = [(Spent, Spent); 3];

/// The CPU time this thread has used (`/proc/thread-self/schedstat`, nanoseconds on the CPU):
/// the main thread runs every task of the `current_thread` runtime, so this is the client-side
/// cost of each subject (driver, pool, encoding, decoding), apart from the server's.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Everything the subjects run against.
struct Bench {
    pg: cell_postgres::Pg,
    raw: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    get: tokio_postgres::Statement,
    db: celldb::Db,
}

impl Bench {
    /// Runs `subject`'s inserts (or gets) of the keys `ids`.
    async fn run(&self, subject: usize, gets: bool, ids: std::ops::Range<i64>) {
        for id in ids {
            match (subject, gets) {
                (0, false) => {
                    let u = sample(id);
                    let row = self
                        .raw
                        .query_one(&self.insert, &[&u.id, &u.email, &u.name, &u.age])
                        .await
                        .unwrap();
                    let _: i64 = row.get(0);
                }
                (0, true) => {
                    let row = self
                        .raw
                        .query_opt(&self.get, &[&id])
                        .await
                        .unwrap()
                        .unwrap();
                    let _ = std::hint::black_box(RawUser {
                        id: row.try_get(0).unwrap(),
                        email: row.try_get(1).unwrap(),
                        name: row.try_get(2).unwrap(),
                        age: row.try_get(3).unwrap(),
                    });
                }
                (1, false) => {
                    self.pg.insert(&sample(id)).await.unwrap();
                }
                (1, true) => {
                    std::hint::black_box(self.pg.get::<User>(id).await.unwrap().unwrap());
                }
                (_, false) => {
                    // Embedded celldb (durable: acknowledged = fsynced).
                    let u = sample(id);
                    let local = LocalUser {
                        id: u.id as u64,
                        email: u.email,
                        name: u.name,
                        age: u.age,
                    };
                    self.db.insert(&local).await.unwrap();
                }
                (_, true) => {
                    std::hint::black_box(
                        self.db.get::<LocalUser>(id as u64).await.unwrap().unwrap(),
                    );
                }
            }
        }
    }

    /// One round: `ops` inserts then `ops` gets per subject, block by block, the subjects'
    /// order alternating between blocks (0 1 2, 2 1 0, …).
    async fn round(&self, base: i64, ops: i64) -> Round {
        let mut round: Round = Default::default();
        for gets in [false, true] {
            let mut start = base;
            let mut block = 0;
            while start < base + ops {
                let end = (start + BLOCK).min(base + ops);
                let order = if block % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
                for subject in order {
                    let cpu = thread_cpu();
                    let t = Instant::now();
                    self.run(subject, gets, start..end).await;
                    let wall = t.elapsed();
                    let cpu = thread_cpu().saturating_sub(cpu);
                    let spent = if gets {
                        &mut round[subject].1
                    } else {
                        &mut round[subject].0
                    };
                    spent.wall += wall;
                    spent.cpu += cpu;
                }
                start = end;
                block += 1;
            }
        }
        round
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let ops: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let server = match cell_postgres::testing::Server::start_durable() {
        Ok(s) => s,
        Err(e) => panic!("cannot start PostgreSQL: {e:?}"),
    };
    let url = server.database().await;
    let pg = cell_postgres::Pg::connect(&url).unwrap();
    pg.migrate::<User>().await.unwrap();
    let (raw, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    raw.batch_execute(
        "CREATE TABLE raw_users (id BIGINT PRIMARY KEY, email TEXT NOT NULL, \
         name TEXT NOT NULL, age INTEGER NOT NULL)",
    )
    .await
    .unwrap();
    let insert = raw
        .prepare(
            "INSERT INTO raw_users (id, email, name, age) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .await
        .unwrap();
    let get = raw
        .prepare("SELECT id, email, name, age FROM raw_users WHERE id = $1")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = celldb::Db::open(dir.path()).unwrap();
    let bench = Bench {
        pg,
        raw,
        insert,
        get,
        db,
    };

    // Warm-up, not measured: connections opened, statements prepared and cached, pages read.
    // Keys past the measured rounds' keys.
    bench.round(rounds as i64 * ops, ops.min(100)).await;
    let mut all: Vec<Round> = Vec::new();
    for round in 0..rounds {
        all.push(bench.round(round as i64 * ops, ops).await);
    }

    let per_op = |d: Duration| d / ops as u32;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!(
        "{ops} inserts then {ops} gets per subject per round (blocks of {BLOCK}, subjects \
         interleaved), {rounds} rounds, one in flight"
    );
    println!(
        "| subject | insert | get | insert ratio (range) | get ratio (range) | CPU/get | \
         CPU/get − anchor's |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, name) in SUBJECTS.iter().enumerate() {
        let us = |f: &dyn Fn(&Round) -> Duration| {
            median(
                all.iter()
                    .map(|r| per_op(f(r)).as_secs_f64() * 1e6)
                    .collect(),
            )
        };
        // Each round's ratio to the anchor of the same round (> 1 = faster than it).
        let ratio = |f: &dyn Fn(&Round, usize) -> Duration| {
            median(
                all.iter()
                    .map(|r| f(r, 0).as_secs_f64() / f(r, i).as_secs_f64())
                    .collect(),
            )
        };
        let ins = us(&|r| r[i].0.wall);
        let get = us(&|r| r[i].1.wall);
        let ins_ratio = ratio(&|r, s| r[s].0.wall);
        let get_ratio = ratio(&|r, s| r[s].1.wall);
        let cpu = us(&|r| r[i].1.cpu);
        let extra = median(
            all.iter()
                .map(|r| {
                    (per_op(r[i].1.cpu).as_secs_f64() - per_op(r[0].1.cpu).as_secs_f64()) * 1e6
                })
                .collect(),
        );
        // schedstat only advances when the thread leaves the CPU: right for a subject that
        // waits on a socket every call, meaningless for celldb's in-process gets.
        let cpu = if i == 2 {
            "–".to_owned()
        } else {
            format!("{:.2} µs | {:+.2} µs", cpu.0, extra.0)
        };
        let cpu = if i == 2 { format!("{cpu} | –") } else { cpu };
        println!(
            "| {name} | {:.1} µs | {:.2} µs | {:.2}× ({:.2}–{:.2}) | {:.2}× ({:.2}–{:.2}) | {cpu} |",
            ins.0,
            get.0,
            ins_ratio.0,
            ins_ratio.1,
            ins_ratio.2,
            get_ratio.0,
            get_ratio.1,
            get_ratio.2
        );
    }
}
