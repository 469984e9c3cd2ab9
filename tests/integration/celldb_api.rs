//! celldb through its macros: CRUD, indexes, transactions, concurrency, schema changes, the
//! directory lock, corrupt bytes and task-local databases. Every test uses its own temporary
//! database directory (on disk).
//!
//! Each test written with `both_modes!` runs twice: `<name>::embedded` opens the directory in
//! this process, `<name>::remote` serves it with a real `celldb serve` process and reaches it
//! through `Db::connect` — the same body, the same assertions. The few tests that are about
//! the local engine itself (the directory lock, migrations) say why they run in one mode.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use crate::celldb_site::{both_modes, unique_wins};
use cell_sdk::protein;
use celldb::{Db, Error};
use std::sync::Arc;

cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(table = "users")]
pub struct User {
    #[DB::key]
    id: u64,
    #[DB::unique]
    email: String,
    #[DB::index]
    city: String,
    name: String,
}

fn user(id: u64, email: &str, city: &str) -> User {
    User {
        id,
        email: email.into(),
        city: city.into(),
        name: format!("user {id}"),
    }
}

both_modes! {
    #[tokio::test]
    async fn records_and_indexes_change_together(site) {
        let db = site.open();
        db.scope(async {
            DB::insert(&user(1, "a@x", "Oslo")).await.unwrap();
            DB::insert(&user(2, "b@x", "Oslo")).await.unwrap();
            DB::insert(&user(3, "c@x", "Rome")).await.unwrap();

            assert_eq!(User::get(2).await.unwrap().unwrap().email, "b@x");
            assert_eq!(User::by_email("c@x").await.unwrap().unwrap().id, 3);
            let oslo: Vec<u64> = User::by_city("Oslo")
                .await
                .unwrap()
                .iter()
                .map(|u| u.id)
                .collect();
            assert_eq!(oslo, vec![1, 2]);
            let scanned: Vec<u64> = User::scan(2..)
                .await
                .unwrap()
                .iter()
                .map(|u| u.id)
                .collect();
            assert_eq!(scanned, vec![2, 3]);
            assert_eq!(User::count().await.unwrap(), 3);

            // Moving a user updates both indexes in the same commit.
            let mut moved = user(1, "a2@x", "Rome");
            moved.name = "moved".into();
            moved.save().await.unwrap();
            assert!(User::by_email("a@x").await.unwrap().is_none());
            assert_eq!(User::by_email("a2@x").await.unwrap().unwrap().name, "moved");
            assert_eq!(User::by_city("Oslo").await.unwrap().len(), 1);
            assert_eq!(User::by_city("Rome").await.unwrap().len(), 2);

            assert!(User::delete(3).await.unwrap());
            assert!(!User::delete(3).await.unwrap());
            assert!(User::by_email("c@x").await.unwrap().is_none());
            assert_eq!(User::by_city("Rome").await.unwrap().len(), 1);
            assert_eq!(User::count().await.unwrap(), 2);
        })
        .await;
    }
}

/// `persist` above `protein` works too: it only needs the fields.
#[DB::persist(table = "reversed")]
#[protein]
pub struct Reversed {
    #[DB::key]
    id: i32,
}

both_modes! {
    #[tokio::test]
    async fn attribute_order_does_not_matter(site) {
        let db = site.open();
        db.scope(async {
            Reversed { id: -3 }.save().await.unwrap();
            Reversed { id: 4 }.save().await.unwrap();
            let ids: Vec<i32> = Reversed::scan(-10..10)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(ids, vec![-3, 4]);
        })
        .await;
    }
}

both_modes! {
    #[tokio::test]
    async fn constraint_errors_are_typed(site) {
        let db = site.open();
        db.insert(&user(1, "a@x", "Oslo")).await.unwrap();
        assert!(matches!(
            db.insert(&user(1, "other@x", "Oslo")).await,
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            db.insert(&user(2, "a@x", "Oslo")).await,
            Err(Error::UniqueViolation { index, .. }) if index == "email"
        ));
        assert!(matches!(
            db.update(&user(9, "z@x", "Oslo")).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(db.count::<User>().await.unwrap(), 1);
    }
}

both_modes! {
    #[tokio::test]
    async fn an_aborted_transaction_writes_nothing(site) {
        let db = site.open();
        let result: Result<(), Error> = db
            .transaction(|tx| async move {
                tx.insert(&user(1, "a@x", "Oslo")).await?;
                tx.insert(&user(2, "b@x", "Oslo")).await?;
                // Reads see the transaction's own writes.
                assert_eq!(tx.count::<User>().await?, 2);
                Err(Error::abort("changed my mind"))
            })
            .await;
        assert!(matches!(result, Err(Error::Aborted(_))));
        assert_eq!(db.count::<User>().await.unwrap(), 0);
        assert!(db.get::<User>(1).await.unwrap().is_none());
    }
}

both_modes! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_unique_value_is_won_by_exactly_one_concurrent_writer(site) {
        let db = site.open();
        let mut tasks = Vec::new();
        for id in 0..16 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(&user(id, "same@x", "Oslo")).await
            }));
        }
        assert_eq!(unique_wins(tasks).await, 1);
        assert_eq!(db.count::<User>().await.unwrap(), 1);
        assert!(
            db.by_index::<User>(0, celldb::key::encode::<String, _>(&"same@x"))
                .await
                .unwrap()
                .len()
                == 1
        );
    }
}

#[protein]
#[DB::persist]
pub struct Counter {
    #[DB::key]
    name: String,
    value: u64,
}

both_modes! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_transactions_lose_no_update(site) {
        let db = site.open();
        db.insert(&Counter {
            name: "hits".into(),
            value: 0,
        })
        .await
        .unwrap();
        let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (db, runs) = (db.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let runs = runs.clone();
                    db.transaction(move |tx| {
                        let runs = runs.clone();
                        async move {
                            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let mut c = tx.get::<Counter>("hits").await?.unwrap();
                            c.value += 1;
                            tx.update(&c).await?;
                            Ok(())
                        }
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let hits = db.get::<Counter>("hits").await.unwrap().unwrap();
        assert_eq!(hits.value, 80);
        // Bodies re-run on conflicts; every run beyond 80 was a detected conflict.
        assert!(runs.load(std::sync::atomic::Ordering::Relaxed) >= 80);
    }
}

#[protein]
#[DB::persist(table = "tickets")]
pub struct Ticket {
    #[DB::key]
    #[DB::auto_inc]
    id: u64,
    title: String,
}

both_modes! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn auto_inc_ids_are_distinct_under_concurrency_and_survive_reopen(site) {
        {
            let db = site.open();
            let mut tasks = Vec::new();
            for t in 0..8 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..5 {
                        let ticket = Ticket {
                            id: 0,
                            title: format!("{t}/{i}"),
                        };
                        ids.push(db.insert(&ticket).await.unwrap());
                    }
                    ids
                }));
            }
            let mut ids = Vec::new();
            for task in tasks {
                ids.extend(task.await.unwrap());
            }
            ids.sort_unstable();
            assert_eq!(ids, (1..=40).collect::<Vec<u64>>());
            // An explicit id moves the counter past it.
            let explicit = Ticket {
                id: 100,
                title: "explicit".into(),
            };
            assert_eq!(db.insert(&explicit).await.unwrap(), 100);
            assert!(db.delete::<Ticket>(100).await.unwrap());
        }
        site.close();
        let db = site.open();
        let next = Ticket {
            id: 0,
            title: "after restart".into(),
        };
        // 100 was deleted, but a committed id is never handed out again.
        assert_eq!(db.insert(&next).await.unwrap(), 101);
        assert_eq!(db.count::<Ticket>().await.unwrap(), 41);
    }
}

mod v1 {
    use super::*;
    #[protein]
    #[DB::persist(table = "people")]
    pub struct Person {
        #[DB::key]
        pub id: u64,
        pub name: String,
    }
}

mod v2 {
    use super::*;
    #[protein]
    #[DB::persist(table = "people", prev = super::v1::Person)]
    pub struct Person {
        #[DB::key]
        pub id: u64,
        pub name: String,
        #[DB::index]
        pub age: u32,
    }

    impl From<super::v1::Person> for Person {
        fn from(old: super::v1::Person) -> Self {
            Person {
                id: old.id,
                name: old.name,
                age: 0,
            }
        }
    }
}

mod v3 {
    use super::*;
    /// Changed without declaring `prev`: must be refused.
    #[protein]
    #[DB::persist(table = "people")]
    pub struct Person {
        #[DB::key]
        pub id: u64,
        pub full_name: String,
    }
}

both_modes! {
    #[tokio::test]
    async fn a_changed_type_is_an_error_naming_table_and_fields(site) {
        {
            let db = site.open();
            db.insert(&v1::Person {
                id: 1,
                name: "Ada".into(),
            })
            .await
            .unwrap();
        }
        site.close();
        let db = site.open();
        let err = db.get::<v3::Person>(1).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::SchemaMismatch { .. }), "{message}");
        assert!(message.contains("`people`"), "{message}");
        assert!(message.contains("`name: String`"), "{message}");
        assert!(message.contains("`full_name: String`"), "{message}");
    }
}

/// Embedded only: a migration decodes records as the previous type, which only the
/// application has; a server refuses it (see `celldb_remote::a_server_refuses_a_migration`).
#[tokio::test]
async fn a_declared_previous_version_is_migrated_with_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        for id in 1..=3 {
            db.insert(&v1::Person {
                id,
                name: format!("p{id}"),
            })
            .await
            .unwrap();
        }
    }
    let db = Db::open(dir.path()).unwrap();
    let p = db.get::<v2::Person>(2).await.unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.age), ("p2", 0));
    let zero = db
        .by_index::<v2::Person>(0, celldb::key::encode::<u32, _>(&0u32))
        .await
        .unwrap();
    assert_eq!(zero.len(), 3);
    drop(db);
    // The migration is durable: the table now holds v2 records.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.count::<v2::Person>().await.unwrap(), 3);
}

/// Embedded only: the lock of a directory (for a server, `celldb_remote` checks that a second
/// server on one directory is refused the same way).
#[tokio::test]
async fn a_held_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Db::open(dir.path()).unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }));
    assert!(err.to_string().contains("in use by another process"));
}

both_modes! {
    #[tokio::test]
    async fn corrupt_record_bytes_are_an_error_not_a_panic(site) {
        {
            let db = site.open();
            db.insert(&user(1, "a@x", "Oslo")).await.unwrap();
        }
        site.close();
        site.tamper(|raw| {
            let records = raw
                .keyspace("t.users", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            let mut key = Vec::new();
            celldb::Key::encode_key(&1u64, &mut key);
            // Too short to hold a `User` archive. (Validation is structural, not a checksum:
            // fjall checksums its blocks on disk; rkyv checks that bytes form a valid value.)
            records.insert(key, vec![0xFFu8; 7]).unwrap();
        });
        let db = site.open();
        let err = db.get::<User>(1).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let err = db.scan::<User>(..).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}

both_modes! {
    #[tokio::test]
    async fn corrupt_metadata_is_an_error_not_a_panic(site) {
        {
            let db = site.open();
            db.insert(&user(1, "a@x", "Oslo")).await.unwrap();
        }
        site.close();
        site.tamper(|raw| {
            let meta = raw
                .keyspace("celldb.meta", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            meta.insert("users", vec![1u8, 2, 3]).unwrap();
        });
        let db = site.open();
        assert!(matches!(
            db.get::<User>(1).await,
            Err(Error::Corrupt { .. })
        ));
        if site.mode == Mode::Embedded {
            // Listing tables reads the directory: a local operation only.
            assert!(db.tables().is_err());
        }
    }
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

both_modes! {
    #[tokio::test]
    async fn damaged_table_files_are_an_error_not_a_panic(site) {
        {
            let db = site.open();
            for id in 0..10 {
                db.insert(&user(id, &format!("{id}@x"), "Oslo"))
                    .await
                    .unwrap();
            }
        }
        site.close();
        // Closing flushed the data into fjall's table files; flip 16 bytes in each of them.
        let mut files = Vec::new();
        files_under(&site.dir().join("data/keyspaces"), &mut files);
        let tables: Vec<_> = files
            .into_iter()
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("tables")))
            .collect();
        assert!(!tables.is_empty(), "expected flushed table files");
        for file in &tables {
            let mut bytes = std::fs::read(file).unwrap();
            let at = bytes.len() * 3 / 10;
            let end = (at + 16).min(bytes.len());
            for b in &mut bytes[at..end] {
                *b ^= 0x5A;
            }
            std::fs::write(file, bytes).unwrap();
        }
        // Embedded: `Db::open` fails; remote: the server refuses to start, saying why.
        let err = site.try_open().unwrap_err();
        assert!(err.contains("Checksum"), "{err}");
        if site.mode == Mode::Embedded {
            assert!(matches!(Db::open(site.dir()), Err(Error::Storage { .. })));
        }
    }
}

/// A database whose `count` records each went to fjall's journal as their own acknowledged
/// batch, closed without a flush; returns its directory and the journal's path and bytes.
async fn journal_of(count: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        for id in 0..count {
            db.insert(&user(id, &format!("{id}@x"), "Oslo"))
                .await
                .unwrap();
        }
    }
    let mut journals: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    journals.sort();
    let journal = journals.pop().expect("a journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    // fjall preallocates its journal files: the entries, then zeros.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end);
    (dir, journal, bytes)
}

/// A copy of database directory `from` (tables, metadata), without its journals.
fn copy_database(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_database(&entry.path(), &target);
        } else if entry.path().extension().is_none_or(|e| e != "jnl") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Reopens `dir` and reads every record: `Err` with the error's text, or how many of the
/// `count` records came back intact (a changed record fails the test).
async fn reopen_and_read(dir: &std::path::Path, count: u64) -> Result<u64, String> {
    let db = Db::open(dir).map_err(|e| e.to_string())?;
    let mut intact = 0;
    for id in 0..count {
        if let Some(found) = db.get::<User>(id).await.map_err(|e| e.to_string())? {
            assert_eq!(
                found,
                user(id, &format!("{id}@x"), "Oslo"),
                "record {id} changed"
            );
            intact += 1;
        }
    }
    Ok(intact)
}

/// fjall truncates its journal at the first entry it cannot read and recovers what precedes
/// it *without an error*, so a damaged byte in the middle of the journal would silently drop
/// every later acknowledged write. celldb checks the journal before fjall recovers it: one
/// damaged byte anywhere is an error naming the journal, or (where fjall's batch checksums
/// or celldb's check make it harmless) every acknowledged record comes back unchanged — never
/// a lost acknowledged record, never a panic. One byte in five is tried (the whole journal in
/// steps, so every kind of entry is hit: markers, lengths, sequence numbers, keys, values,
/// checksums, trailers).
#[tokio::test]
async fn a_damaged_journal_is_an_error_never_a_silent_loss() {
    let count = 6;
    let (dir, journal, original) = journal_of(count).await;
    let name = journal.file_name().unwrap().to_owned();
    let (mut errors, mut intact) = (0, 0);
    for at in (0..original.len()).step_by(5) {
        let copy = tempfile::tempdir().unwrap();
        copy_database(dir.path(), copy.path());
        let mut bytes = original.clone();
        bytes[at] ^= 0x5A;
        // Zeros after the entries, as in fjall's preallocated file (a damaged length must not
        // pass for a torn tail by running into them).
        bytes.resize(original.len() + 8 * 1024, 0);
        std::fs::write(copy.path().join("data").join(&name), &bytes).unwrap();
        match reopen_and_read(copy.path(), count).await {
            Ok(n) => {
                assert_eq!(
                    n,
                    count,
                    "byte {at} damaged: {} acknowledged records lost",
                    count - n
                );
                intact += 1;
            }
            Err(message) => {
                assert!(
                    message.contains("journal") || message.contains("Journal"),
                    "byte {at} damaged: the error does not say where: {message}"
                );
                errors += 1;
            }
        }
    }
    // Both outcomes occur: the check is not simply refusing every journal.
    assert!(errors > 0 && intact > 0, "errors {errors}, intact {intact}");
}

/// A crash in the middle of writing a batch leaves a torn tail: that batch was never
/// acknowledged, and the database opens with everything before it.
#[tokio::test]
async fn a_torn_journal_tail_loses_only_the_unfinished_batch() {
    let count = 4;
    let (dir, journal, original) = journal_of(count).await;
    // The last record's batch loses its last 20 bytes (its end marker and part of an item);
    // zeros follow, as in fjall's preallocated file.
    let mut torn = original[..original.len() - 20].to_vec();
    torn.resize(original.len() + 4096, 0);
    std::fs::write(&journal, &torn).unwrap();
    assert_eq!(reopen_and_read(dir.path(), count).await, Ok(count - 1));
}

both_modes! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_databases_never_mix(site) {
    let other = Site::new(site.mode);
    let (a, b) = (site.open(), other.open());
    let ta = tokio::spawn(a.scope(async {
        DB::insert(&user(1, "a@x", "Oslo")).await.unwrap();
        User::count().await.unwrap()
    }));
    let tb = tokio::spawn(b.scope(async {
        DB::insert(&user(1, "b@x", "Rome")).await.unwrap();
        DB::insert(&user(2, "c@x", "Rome")).await.unwrap();
        User::count().await.unwrap()
    }));
    assert_eq!(ta.await.unwrap(), 1);
    assert_eq!(tb.await.unwrap(), 2);
    assert_eq!(a.get::<User>(1).await.unwrap().unwrap().email, "a@x");
    assert_eq!(b.get::<User>(1).await.unwrap().unwrap().email, "b@x");
}
}

#[test]
fn macro_misuse_is_a_compile_error_at_the_field() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/celldb/*.rs");
}

/// A table declared replicated by raft.
#[protein]
#[DB::persist(table = "ledger", replicate = "raft")]
pub struct Ledger {
    #[DB::key]
    id: u64,
    amount: i64,
}

both_modes! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_table_refuses_a_single_node_database(site) {
    let db = site.open();
    let error = db.insert(&Ledger { id: 1, amount: 5 }).await.unwrap_err();
    assert!(
        matches!(&error, celldb::Error::NotReplicated { table, .. } if table == "ledger"),
        "{error}"
    );
    assert!(error.to_string().contains("docs/replication.md"), "{error}");
    // Reads refuse too, and local tables of the same database still work.
    assert!(matches!(db.get::<Ledger>(1).await, Err(celldb::Error::NotReplicated { .. })));
    db.insert(&user(1, "a@x", "Oslo")).await.unwrap();
    assert_eq!(db.count::<User>().await.unwrap(), 1);
}
}
