//! Benchmark: `Postgres::insert`/`get` against hand-written `tokio-postgres` prepared
//! statements doing the same work on the same server, and the same workload on embedded celldb.
//!
//! ```text
//! cargo run --release -p cell-postgres --example pg-bench [-- ops rounds]
//! ```
//!
//! A private server (`cell_postgres::testing`) that fsyncs its commits, as a production server
//! does. One operation in flight; each round runs every subject, interleaved, `ops` inserts
//! then `ops` gets by key; the table prints the median of the rounds' per-operation times and
//! ratios to the hand-written anchor measured in the same run (> 1 = faster than it).

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

/// Per-operation time of (insert, get) for each subject.
type Times = [(Duration, Duration); 3];

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

    let mut all: Vec<Times> = Vec::new();
    for round in 0..rounds {
        let base = round as i64 * ops;
        let mut times: Times = Default::default();

        // The anchor: hand-written prepared statements on one connection.
        let t = Instant::now();
        for id in base..base + ops {
            let u = sample(id);
            let row = raw
                .query_one(&insert, &[&u.id, &u.email, &u.name, &u.age])
                .await
                .unwrap();
            let _: i64 = row.get(0);
        }
        let ins = t.elapsed();
        let t = Instant::now();
        for id in base..base + ops {
            let row = raw.query_opt(&get, &[&id]).await.unwrap().unwrap();
            let _ = std::hint::black_box(RawUser {
                id: row.try_get(0).unwrap(),
                email: row.try_get(1).unwrap(),
                name: row.try_get(2).unwrap(),
                age: row.try_get(3).unwrap(),
            });
        }
        times[0] = (ins / ops as u32, t.elapsed() / ops as u32);

        // The provider, through its pool.
        let t = Instant::now();
        for id in base..base + ops {
            pg.insert(&sample(id)).await.unwrap();
        }
        let ins = t.elapsed();
        let t = Instant::now();
        for id in base..base + ops {
            std::hint::black_box(pg.get::<User>(id).await.unwrap().unwrap());
        }
        times[1] = (ins / ops as u32, t.elapsed() / ops as u32);

        // Embedded celldb (durable: acknowledged = fsynced).
        let t = Instant::now();
        for id in base..base + ops {
            let u = sample(id);
            let local = LocalUser {
                id: u.id as u64,
                email: u.email,
                name: u.name,
                age: u.age,
            };
            db.insert(&local).await.unwrap();
        }
        let ins = t.elapsed();
        let t = Instant::now();
        for id in base..base + ops {
            std::hint::black_box(db.get::<LocalUser>(id as u64).await.unwrap().unwrap());
        }
        times[2] = (ins / ops as u32, t.elapsed() / ops as u32);
        all.push(times);
    }

    let median = |f: &dyn Fn(&Times) -> Duration| {
        let mut v: Vec<Duration> = all.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{ops} inserts then {ops} gets per round, {rounds} rounds, one in flight; median per op"
    );
    println!("| subject | insert | get | insert ratio | get ratio |");
    println!("|---|---|---|---|---|");
    let anchor = (median(&|t| t[0].0), median(&|t| t[0].1));
    for (i, name) in [
        "tokio-postgres prepared statements (anchor)",
        "cell-postgres (Pg::insert / Pg::get)",
        "celldb embedded (Db::insert / Db::get)",
    ]
    .iter()
    .enumerate()
    {
        let (ins, get) = (median(&|t| t[i].0), median(&|t| t[i].1));
        println!(
            "| {name} | {ins:.1?} | {get:.1?} | {:.2}x | {:.2}x |",
            anchor.0.as_secs_f64() / ins.as_secs_f64(),
            anchor.1.as_secs_f64() / get.as_secs_f64()
        );
    }
}
