//! cell-postgres against a real PostgreSQL server (one private server per test binary, a fresh
//! database per test; see `cell_postgres::testing`). Skipped with a message when PostgreSQL is
//! not installed, unless `CI=true`.
//!
//! Contents:
//! - CRUD: `crud_round_trip`, `serial_keys_are_generated`, `update_of_a_missing_record_*`;
//! - typed errors: `unique_violations_are_typed`, `varchar_overflow_is_a_server_error`;
//! - type mapping: `every_supported_type_round_trips`, `u64_*`, `nul_*`;
//! - hostile input: `quotes_and_sql_in_values_are_data`, `a_one_mebibyte_string_round_trips`,
//!   `wrong_types_from_an_older_schema_are_decode_errors`;
//! - transactions: `a_transaction_commits_all_or_nothing`, `concurrent_serializable_*`;
//! - migrations: `migrate_*`;
//! - the query builder: `query_builder_matches_hand_written_sql`;
//! - crashes: `a_server_killed_mid_transaction_*`;
//! - TLS (`sslmode`, certificate checks): `tls_require_encrypts_and_checks_the_servers_certificate`.
//!
//! Compile errors are snapshot-tested in the macro crate (`macros/tests/ui`).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use cell_postgres::testing;
use cell_postgres::{Error, Pg, Timestamp};
use cell_sdk::{cell_remote, protein};

cell_remote!(Postgres = "cell-postgres");

/// A table with every helper.
#[protein]
#[Postgres::table(name = "users")]
pub struct User {
    #[Postgres::primary_key]
    #[Postgres::serial]
    id: u64,
    #[Postgres::unique]
    #[Postgres::varchar(64)]
    email: String,
    #[Postgres::index]
    city: String,
    #[Postgres::column(name = "full_name")]
    name: String,
}

fn user(email: &str, city: &str, name: &str) -> User {
    User {
        id: 0,
        email: email.into(),
        city: city.into(),
        name: name.into(),
    }
}

/// One field of every supported type.
#[protein]
#[Postgres::table]
pub struct Everything {
    id: i64,
    small: i16,
    tiny: u8,
    signed_tiny: i8,
    medium: u16,
    int: i32,
    wide: u32,
    big: u64,
    yes: bool,
    single: f32,
    double: f64,
    text: String,
    bytes: Vec<u8>,
    at: Timestamp,
    maybe_text: Option<String>,
    maybe_int: Option<i64>,
    maybe_at: Option<Timestamp>,
}

/// A string key.
#[protein]
#[Postgres::table(name = "counters")]
pub struct Counter {
    #[Postgres::primary_key]
    name: String,
    value: i64,
}

/// A fresh database on the shared server, or `None` (skip) without PostgreSQL.
async fn pg() -> Option<Pg> {
    Some(testing::shared()?.pg().await)
}

macro_rules! pg_or_skip {
    () => {
        match pg().await {
            Some(pg) => pg,
            None => return,
        }
    };
}

/// A plain connection for hand-written SQL.
async fn raw(pg_url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn fresh() -> Option<(Pg, String)> {
    let server = testing::shared()?;
    let url = server.database().await;
    Some((Pg::connect(&url).unwrap(), url))
}

#[tokio::test]
async fn crud_round_trip() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    pg.scope(async {
        let id = Postgres::insert(&user("ada@x", "Oslo", "Ada"))
            .await
            .unwrap();
        let mut ada = Postgres::get::<User>(id).await.unwrap().unwrap();
        assert_eq!(
            (ada.id, ada.email.as_str(), ada.name.as_str()),
            (id, "ada@x", "Ada")
        );
        ada.name = "Ada Lovelace".into();
        Postgres::update(&ada).await.unwrap();
        assert_eq!(Postgres::get::<User>(id).await.unwrap(), Some(ada.clone()));
        assert!(Postgres::delete::<User>(id).await.unwrap());
        assert!(!Postgres::delete::<User>(id).await.unwrap());
        assert_eq!(Postgres::get::<User>(id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn serial_keys_are_generated() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    let a = pg.insert(&user("a@x", "Oslo", "A")).await.unwrap();
    let b = pg.insert(&user("b@x", "Oslo", "B")).await.unwrap();
    assert!(b > a, "{a} {b}");
}

#[tokio::test]
async fn update_of_a_missing_record_is_not_found() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    let mut ghost = user("g@x", "Oslo", "G");
    ghost.id = 999;
    assert!(matches!(
        pg.update(&ghost).await,
        Err(Error::NotFound { table: "users" })
    ));
}

#[tokio::test]
async fn unique_violations_are_typed() {
    let pg = pg_or_skip!();
    pg.migrate::<(User, Counter)>().await.unwrap();
    pg.insert(&user("ada@x", "Oslo", "Ada")).await.unwrap();
    match pg.insert(&user("ada@x", "Rome", "Other")).await {
        Err(Error::UniqueViolation { constraint, detail }) => {
            assert_eq!(constraint, "users_email_key");
            assert!(detail.contains("ada@x"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let c = Counter {
        name: "a".into(),
        value: 1,
    };
    pg.insert(&c).await.unwrap();
    match pg.insert(&c).await {
        Err(Error::UniqueViolation { constraint, .. }) => assert_eq!(constraint, "counters_pkey"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn varchar_overflow_is_a_server_error() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    let long = format!("{}@x", "a".repeat(100));
    match pg.insert(&user(&long, "Oslo", "A")).await {
        Err(Error::Db { code, .. }) => assert_eq!(code, "22001"),
        other => panic!("{other:?}"),
    }
}

fn everything(id: i64) -> Everything {
    Everything {
        id,
        small: i16::MIN,
        tiny: u8::MAX,
        signed_tiny: i8::MIN,
        medium: u16::MAX,
        int: i32::MIN,
        wide: u32::MAX,
        big: i64::MAX as u64,
        yes: true,
        single: 1.5,
        double: -2.25e300,
        text: "héllo ✓".into(),
        bytes: vec![0, 1, 2, 255, 0],
        at: Timestamp::from_micros(1_700_000_000_123_456),
        maybe_text: None,
        maybe_int: Some(-7),
        maybe_at: None,
    }
}

#[tokio::test]
async fn every_supported_type_round_trips() {
    let pg = pg_or_skip!();
    pg.migrate::<Everything>().await.unwrap();
    let e = everything(1);
    pg.insert(&e).await.unwrap();
    assert_eq!(pg.get::<Everything>(1).await.unwrap(), Some(e));
    let ddl = cell_postgres::schema_sql::<Everything>();
    for column in [
        "\"big\" BIGINT NOT NULL",
        "\"tiny\" SMALLINT NOT NULL",
        "\"wide\" BIGINT NOT NULL",
        "\"bytes\" BYTEA NOT NULL",
        "\"at\" TIMESTAMPTZ NOT NULL",
        "\"maybe_text\" TEXT,",
    ] {
        assert!(ddl.contains(column), "{column} in\n{ddl}");
    }
}

#[tokio::test]
async fn u64_above_i64_max_is_refused_not_wrapped() {
    let pg = pg_or_skip!();
    pg.migrate::<Everything>().await.unwrap();
    let mut e = everything(1);
    e.big = i64::MAX as u64 + 1;
    match pg.insert(&e).await {
        Err(Error::Encode {
            table,
            column,
            reason,
        }) => {
            assert_eq!((table, column), ("everything", "big"));
            assert!(reason.contains("9223372036854775808"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pg.get::<Everything>(1).await.unwrap(), None);
}

#[tokio::test]
async fn u64_columns_holding_negative_numbers_are_decode_errors() {
    let Some((pg, url)) = fresh().await else {
        return;
    };
    pg.migrate::<Everything>().await.unwrap();
    pg.insert(&everything(1)).await.unwrap();
    raw(&url)
        .await
        .batch_execute("UPDATE everything SET big = -1")
        .await
        .unwrap();
    match pg.get::<Everything>(1).await {
        Err(Error::Decode {
            column: "big",
            reason,
            ..
        }) => {
            assert!(reason.contains("negative"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nul_in_a_string_is_a_typed_error() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    match pg.insert(&user("a\0b@x", "Oslo", "A")).await {
        Err(Error::Encode {
            column: "email",
            reason,
            ..
        }) => {
            assert!(reason.contains("NUL"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // In a query value too, before anything is sent.
    let found = pg.query::<User>().where_eq(User::email, "a\0b").all().await;
    assert!(matches!(found, Err(Error::Encode { .. })), "{found:?}");
}

#[tokio::test]
async fn quotes_and_sql_in_values_are_data() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    let hostile = "'); DROP TABLE users; --\"\\";
    let id = pg.insert(&user("q@x", hostile, hostile)).await.unwrap();
    let back = pg.get::<User>(id).await.unwrap().unwrap();
    assert_eq!(back.name, hostile);
    let by_city = pg
        .query::<User>()
        .where_eq(User::city, hostile)
        .all()
        .await
        .unwrap();
    assert_eq!(by_city, vec![back]);
}

#[tokio::test]
async fn a_one_mebibyte_string_round_trips() {
    let pg = pg_or_skip!();
    pg.migrate::<Everything>().await.unwrap();
    let mut e = everything(1);
    e.text = "é".repeat(512 * 1024);
    e.maybe_text = Some("'".repeat(1024 * 1024));
    e.bytes = vec![0; 1024 * 1024];
    pg.insert(&e).await.unwrap();
    let back = pg.get::<Everything>(1).await.unwrap().unwrap();
    assert_eq!(back.text.len(), 1024 * 1024);
    assert_eq!(back, e);
}

#[tokio::test]
async fn wrong_types_from_an_older_schema_are_decode_errors() {
    let Some((pg, url)) = fresh().await else {
        return;
    };
    // An older program stored `value` as text.
    raw(&url)
        .await
        .batch_execute(
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO counters VALUES ('a', 'not a number');",
        )
        .await
        .unwrap();
    match pg.get::<Counter>("a").await {
        Err(Error::Decode {
            table: "counters",
            column: "value",
            reason,
        }) => {
            assert!(reason.contains("text"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Writing the wrong type is refused by the driver's type check, before the server.
    let w = pg
        .insert(&Counter {
            name: "b".into(),
            value: 2,
        })
        .await;
    assert!(w.is_err(), "{w:?}");
}

#[tokio::test]
async fn a_transaction_commits_all_or_nothing() {
    let pg = pg_or_skip!();
    pg.migrate::<Counter>().await.unwrap();
    let made = pg
        .transaction(|tx| async move {
            tx.insert(&Counter {
                name: "a".into(),
                value: 1,
            })
            .await?;
            tx.insert(&Counter {
                name: "b".into(),
                value: 2,
            })
            .await?;
            Ok(())
        })
        .await;
    made.unwrap();
    let failed: cell_postgres::Result<()> = pg
        .transaction(|tx| async move {
            tx.insert(&Counter {
                name: "c".into(),
                value: 3,
            })
            .await?;
            tx.update(&Counter {
                name: "a".into(),
                value: 100,
            })
            .await?;
            Err(Error::abort("changed my mind"))
        })
        .await;
    assert!(matches!(failed, Err(Error::Aborted(_))), "{failed:?}");
    assert_eq!(pg.get::<Counter>("c").await.unwrap(), None);
    assert_eq!(pg.get::<Counter>("a").await.unwrap().unwrap().value, 1);

    // A statement error swallowed by the body still rolls back, and is reported.
    let swallowed: cell_postgres::Result<()> = pg
        .transaction(|tx| async move {
            tx.insert(&Counter {
                name: "d".into(),
                value: 4,
            })
            .await?;
            let _ = tx
                .insert(&Counter {
                    name: "a".into(),
                    value: 5,
                })
                .await;
            Ok(())
        })
        .await;
    assert!(
        matches!(swallowed, Err(Error::UniqueViolation { .. })),
        "{swallowed:?}"
    );
    assert_eq!(pg.get::<Counter>("d").await.unwrap(), None);

    // A client-side error the body handles (a value no column can hold) does not abort it.
    pg.migrate::<Everything>().await.unwrap();
    pg.transaction(|tx| async move {
        let mut e = everything(7);
        e.big = u64::MAX;
        assert!(matches!(tx.insert(&e).await, Err(Error::Encode { .. })));
        e.big = 7;
        tx.insert(&e).await?;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(pg.get::<Everything>(7).await.unwrap().unwrap().big, 7);
}

/// Two transactions read the same row, then both write it: PostgreSQL fails one with a
/// serialization failure, and `transaction` re-runs it, so no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_serializable_transactions_conflict_and_retry() {
    let pg = pg_or_skip!();
    pg.migrate::<Counter>().await.unwrap();
    pg.insert(&Counter {
        name: "n".into(),
        value: 0,
    })
    .await
    .unwrap();
    let both_read = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (pg, both_read, attempts) = (pg.clone(), both_read.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            pg.transaction(|tx| {
                mine += 1;
                let first = mine == 1;
                let (both_read, attempts) = (both_read.clone(), attempts.clone());
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let mut c = tx.get::<Counter>("n").await?.unwrap();
                    if first {
                        // Both first attempts have read the old value before either writes.
                        both_read.wait().await;
                    }
                    c.value += 1;
                    tx.update(&c).await?;
                    Ok(())
                }
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(pg.get::<Counter>("n").await.unwrap().unwrap().value, 2);
    // One of the two lost the conflict and ran again.
    assert!(attempts.load(Ordering::SeqCst) >= 3, "{attempts:?}");
}

/// Many writers on one row: every increment lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_serializable_increments_are_never_lost() {
    let pg = pg_or_skip!();
    pg.migrate::<Counter>().await.unwrap();
    pg.insert(&Counter {
        name: "n".into(),
        value: 0,
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pg = pg.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                pg.transaction(|tx| async move {
                    let mut c = tx.get::<Counter>("n").await?.unwrap();
                    c.value += 1;
                    tx.update(&c).await
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(pg.get::<Counter>("n").await.unwrap().unwrap().value, 40);
}

mod v2 {
    use super::*;

    /// `users` as a later version of the program declares it: one more column.
    #[protein]
    #[Postgres::table(name = "users")]
    pub struct User {
        #[Postgres::primary_key]
        #[Postgres::serial]
        id: u64,
        #[Postgres::unique]
        #[Postgres::varchar(64)]
        email: String,
        #[Postgres::index]
        city: String,
        #[Postgres::column(name = "full_name")]
        name: String,
        age: Option<i32>,
    }
}

#[tokio::test]
async fn migrate_creates_once_and_records_the_schema() {
    let pg = pg_or_skip!();
    assert_eq!(pg.recorded_schema().await.unwrap(), []);
    pg.migrate::<(User, Counter)>().await.unwrap();
    pg.insert(&user("a@x", "Oslo", "A")).await.unwrap();
    // Idempotent: nothing is recreated, the data stays.
    pg.migrate::<(User, Counter)>().await.unwrap();
    assert_eq!(pg.query::<User>().all().await.unwrap().len(), 1);
    let recorded = pg.recorded_schema().await.unwrap();
    let names: Vec<&str> = recorded.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["counters", "users"]);
    assert_eq!(recorded[1].1, 1);
    assert_eq!(recorded[1].2, cell_postgres::schema_sql::<User>());
    assert!(recorded[1].2.contains("CREATE INDEX \"users_city_idx\""));
}

#[tokio::test]
async fn migrate_reports_a_changed_struct_and_changes_nothing() {
    let pg = pg_or_skip!();
    pg.migrate::<User>().await.unwrap();
    match pg.migrate::<(Counter, v2::User)>().await {
        Err(e @ Error::SchemaChanged { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("table `users`"), "{msg}");
            assert!(msg.contains("\"age\" INTEGER"), "{msg}");
            assert!(msg.contains("schema version 1"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // One transaction: `counters`, migrated before the failure, was not created either.
    let err = pg.get::<Counter>("x").await.unwrap_err();
    assert!(
        matches!(err, Error::Db { ref code, .. } if code == "42P01"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_create_each_table_once() {
    let pg = pg_or_skip!();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pg = pg.clone();
            tokio::spawn(async move { pg.migrate::<(User, Counter, Everything)>().await })
        })
        .collect();
    for r in runs {
        r.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn query_builder_matches_hand_written_sql() {
    let Some((pg, url)) = fresh().await else {
        return;
    };
    pg.migrate::<User>().await.unwrap();
    for (email, city, name) in [
        ("a@x", "Oslo", "Ada"),
        ("b@x", "Rome", "Bo"),
        ("c@x", "Oslo", "Cy"),
        ("d@x", "Oslo", "Di"),
        ("e@x", "Lima", "Ed"),
    ] {
        pg.insert(&user(email, city, name)).await.unwrap();
    }
    let client = raw(&url).await;
    let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<u64> {
        rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect()
    };
    let of = |users: Vec<User>| -> Vec<u64> { users.iter().map(|u| u.id).collect() };

    let q = pg
        .query::<User>()
        .where_eq(User::city, "Oslo")
        .order_by_desc(User::name)
        .limit(2);
    assert_eq!(
        q.sql(),
        "SELECT \"id\", \"email\", \"city\", \"full_name\" FROM \"users\" WHERE \"city\" = $1 \
         ORDER BY \"full_name\" DESC LIMIT 2"
    );
    let expected = client
        .query(
            "SELECT id FROM users WHERE city = 'Oslo' ORDER BY full_name DESC LIMIT 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(of(q.all().await.unwrap()), ids(expected));

    let expected = client
        .query(
            "SELECT id FROM users WHERE city = 'Oslo' AND full_name = 'Cy'",
            &[],
        )
        .await
        .unwrap();
    let got = pg
        .query::<User>()
        .where_eq(User::city, "Oslo")
        .where_eq(User::name, "Cy")
        .all()
        .await
        .unwrap();
    assert_eq!(of(got), ids(expected));

    let expected = client
        .query("SELECT id FROM users ORDER BY email LIMIT 1", &[])
        .await
        .unwrap();
    let first = pg
        .query::<User>()
        .order_by(User::email)
        .first()
        .await
        .unwrap();
    assert_eq!(
        first.map(|u| u.id).into_iter().collect::<Vec<_>>(),
        ids(expected)
    );

    assert!(
        pg.query::<User>()
            .where_eq(User::email, "nobody@x")
            .first()
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn query_on_an_option_column_with_none_is_is_null() {
    let pg = pg_or_skip!();
    pg.migrate::<Everything>().await.unwrap();
    pg.insert(&everything(1)).await.unwrap();
    let mut two = everything(2);
    two.maybe_text = Some("x".into());
    pg.insert(&two).await.unwrap();
    let q = pg
        .query::<Everything>()
        .where_eq(Everything::maybe_text, None);
    assert!(
        q.sql().ends_with("WHERE \"maybe_text\" IS NULL"),
        "{}",
        q.sql()
    );
    let got: Vec<i64> = q.all().await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(got, [1]);
}

/// The postmaster is SIGKILLed while a transaction is open: the caller gets a clear error,
/// and after a restart (crash recovery) nothing of the transaction is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_transaction_leaves_nothing_half_applied() {
    if testing::shared().is_none() {
        return;
    }
    // Its own server: this test kills it.
    let server = Arc::new(testing::Server::start().unwrap());
    let pg = server.pg().await;
    pg.migrate::<Counter>().await.unwrap();
    pg.insert(&Counter {
        name: "kept".into(),
        value: 1,
    })
    .await
    .unwrap();

    let (wrote, killed) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let killer = {
        let (server, wrote, killed) = (server.clone(), wrote.clone(), killed.clone());
        tokio::spawn(async move {
            wrote.notified().await;
            tokio::task::spawn_blocking(move || server.kill())
                .await
                .unwrap();
            killed.notify_one();
        })
    };
    let result: cell_postgres::Result<()> = pg
        .transaction(|tx| {
            let (wrote, killed) = (wrote.clone(), killed.clone());
            async move {
                tx.insert(&Counter {
                    name: "half".into(),
                    value: 2,
                })
                .await?;
                tx.update(&Counter {
                    name: "kept".into(),
                    value: 99,
                })
                .await?;
                wrote.notify_one();
                killed.notified().await;
                tx.insert(&Counter {
                    name: "after".into(),
                    value: 3,
                })
                .await?;
                Ok(())
            }
        })
        .await;
    killer.await.unwrap();
    match &result {
        Err(e @ Error::ConnectionLost { .. }) => {
            assert!(e.to_string().contains("nothing was committed"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.launch())
        .await
        .unwrap()
        .unwrap();
    // The same pool: broken connections are replaced.
    assert_eq!(pg.get::<Counter>("kept").await.unwrap().unwrap().value, 1);
    assert_eq!(pg.get::<Counter>("half").await.unwrap(), None);
    assert_eq!(pg.get::<Counter>("after").await.unwrap(), None);
}

/// A transaction whose caller stops waiting (its future dropped mid-way) must not hand its
/// open transaction to the next user of the pooled connection.
#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_before_its_connection_is_reused() {
    let Some((pg, url)) = fresh().await else {
        return;
    };
    pg.migrate::<Counter>().await.unwrap();
    let body = pg.transaction(|tx| async move {
        tx.insert(&Counter {
            name: "dropped".into(),
            value: 1,
        })
        .await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let timed_out = tokio::time::timeout(std::time::Duration::from_millis(300), body).await;
    assert!(timed_out.is_err());
    // Later writes on the pool are committed and visible to another connection.
    for i in 0..4 {
        pg.insert(&Counter {
            name: format!("after{i}"),
            value: i,
        })
        .await
        .unwrap();
    }
    let other = raw(&url).await;
    let rows = other
        .query("SELECT name FROM counters ORDER BY name", &[])
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["after0", "after1", "after2", "after3"]);
}

#[tokio::test]
async fn configuration_errors_are_clear() {
    let e = Pg::connect("postgres://a@b:notaport/x").unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("bad database URL"), "{e}");
    // Nothing listens on port 1: the first statement reports it.
    let pg = Pg::connect("postgres://cell@127.0.0.1:1/x").unwrap();
    let e = pg.get::<Counter>("a").await.unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
}

/// A transaction that loses its conflict on every attempt gives up after `MAX_ATTEMPTS` with
/// the typed error, and nothing of it is committed.
#[tokio::test]
async fn a_transaction_that_always_conflicts_stops_after_max_attempts() {
    let pg = pg_or_skip!();
    pg.migrate::<Counter>().await.unwrap();
    pg.insert(&Counter {
        name: "n".into(),
        value: 0,
    })
    .await
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let result: cell_postgres::Result<()> = pg
        .transaction(|tx| {
            let (pg, attempts) = (pg.clone(), attempts.clone());
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                // Read in the transaction (through the query builder, in the transaction)…
                let mut c = tx
                    .query::<Counter>()
                    .where_eq(Counter::name, "n")
                    .first()
                    .await?
                    .unwrap();
                // …then a concurrent writer commits a change to the same row…
                let mut other = pg.get::<Counter>("n").await?.unwrap();
                other.value += 1000;
                pg.update(&other).await?;
                // …so this write cannot be serialized.
                c.value += 1;
                tx.update(&c).await
            }
        })
        .await;
    assert!(
        matches!(result, Err(Error::SerializationFailure(_))),
        "{result:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), cell_postgres::MAX_ATTEMPTS);
    let n = pg.get::<Counter>("n").await.unwrap().unwrap().value;
    assert_eq!(n, 1000 * i64::from(cell_postgres::MAX_ATTEMPTS));
}

/// How many connections to `url`'s database are (or are not) encrypted, seen by the server.
async fn connections_with_tls(url: &str, database: &str, tls: bool) -> i64 {
    let client = raw(url).await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = $1 AND ssl = $2",
            &[&database, &tls],
        )
        .await
        .unwrap();
    row.get(0)
}

/// `sslmode=require`: the pool's connections are encrypted, the server's certificate is
/// checked (refused without its root, accepted with it), and `sslmode=disable` still works
/// in plain text against the same server.
#[tokio::test]
async fn tls_require_encrypts_and_checks_the_servers_certificate() {
    if testing::shared().is_none() {
        return;
    }
    // Its own server: TLS on would change what every other test connects with.
    let server = testing::Server::start().unwrap();
    let root = server.enable_tls().await.unwrap();
    let url = server.database().await;
    let database = url.rsplit('/').next().unwrap().to_owned();
    let counter = |value| Counter {
        name: "tls".into(),
        value,
    };

    // Not trusted (only the system's roots): refused, and said so.
    let untrusted = Pg::connect(&format!("{url}?sslmode=require")).unwrap();
    let err = untrusted.migrate::<Counter>().await.unwrap_err();
    assert!(
        format!("{err} {err:?}").contains("certificate"),
        "not a certificate error: {err} / {err:?}"
    );

    let pg = Pg::connect_with_root_certificate(&format!("{url}?sslmode=require"), &root).unwrap();
    pg.migrate::<Counter>().await.unwrap();
    pg.insert(&counter(7)).await.unwrap();
    assert_eq!(pg.get::<Counter>("tls").await.unwrap().unwrap().value, 7);
    // The pool keeps its connection open: the server sees it encrypted.
    assert!(connections_with_tls(&url, &database, true).await >= 1);

    let plain = Pg::connect(&format!("{url}?sslmode=disable")).unwrap();
    assert_eq!(plain.get::<Counter>("tls").await.unwrap().unwrap().value, 7);
    assert!(connections_with_tls(&url, &database, false).await >= 1);
}
