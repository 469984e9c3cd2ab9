//! celldb remote mode only (the shared suite runs in both modes in `celldb_api`): isolation
//! between two clients of one real `celldb serve` process (write skew, lost updates, unique
//! inserts), range reads larger than a page (order, conflicts on a page already read), bounded
//! sessions and transactions per session, a client disconnect aborts its transactions on the
//! server, a session never held is ended, malformed requests
//! leave the server serving, a second server on one directory is refused, migrations are
//! refused, the default database follows `$CELLDB_URL` (in a child process), and SIGKILL of the
//! *server* loses no acknowledged write.
//!
//! `CELLDB_REMOTE_CRASH_KILLS` sets the number of server kills (default 12; the long run in
//! `docs/celldb.md` uses 300).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use crate::celldb_crash::{Item, item, next_random, verify};
use crate::celldb_site::{Mode, ServerProcess, Site, unique_wins};
use cell_sdk::{TypedClient, protein};
use celldb::wire::{At, CellDbClient, Commit, OpenTable, WireBound, WireError, WireWrite};
use celldb::{Db, Error};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(table = "doctors")]
pub struct Doctor {
    #[DB::key]
    name: String,
    on_call: bool,
}

#[protein]
#[DB::persist(table = "accounts")]
pub struct Account {
    #[DB::key]
    id: u64,
    #[DB::unique]
    email: String,
    balance: u64,
}

/// Two clients (two connections, two sessions) of one server.
fn two_clients(site: &Site) -> (Db, Db) {
    (site.open(), site.open())
}

/// Write skew: each doctor may go off call only if another stays on call. Under snapshot
/// isolation both transactions see two doctors on call and both leave; celldb validates what
/// each transaction *read* (here a range scan, by its digest), so one of them re-runs, sees
/// one doctor left, and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_between_two_clients_is_prevented() {
    let site = Site::new(Mode::Remote);
    let (a, b) = two_clients(&site);
    for name in ["alice", "bob"] {
        a.insert(&Doctor {
            name: name.into(),
            on_call: true,
        })
        .await
        .unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let runs = Arc::new(AtomicU64::new(0));
    let leave = |db: Db, me: &'static str| {
        let (barrier, runs) = (barrier.clone(), runs.clone());
        tokio::spawn(async move {
            let attempt = Arc::new(AtomicU64::new(0));
            db.transaction(|tx| {
                let (barrier, runs, attempt) = (barrier.clone(), runs.clone(), attempt.clone());
                async move {
                    runs.fetch_add(1, Ordering::Relaxed);
                    let on_call = tx
                        .scan::<Doctor>(..)
                        .await?
                        .iter()
                        .filter(|d| d.on_call)
                        .count();
                    // Both first attempts read before either commits.
                    if attempt.fetch_add(1, Ordering::Relaxed) == 0 {
                        barrier.wait().await;
                    }
                    if on_call >= 2 {
                        tx.update(&Doctor {
                            name: me.into(),
                            on_call: false,
                        })
                        .await?;
                    }
                    Ok(())
                }
            })
            .await
        })
    };
    let (ta, tb) = (leave(a.clone(), "alice"), leave(b.clone(), "bob"));
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    let on_call = a
        .scan::<Doctor>(..)
        .await
        .unwrap()
        .iter()
        .filter(|d| d.on_call)
        .count();
    assert_eq!(on_call, 1, "write skew: both doctors left");
    assert!(runs.load(Ordering::Relaxed) >= 3, "one transaction re-ran");
    assert!(a.server_stats().await.unwrap().conflicts >= 1);
}

/// Lost update: read-modify-write from two clients, four tasks each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_clients_lose_no_update() {
    let site = Site::new(Mode::Remote);
    let (a, b) = two_clients(&site);
    a.insert(&Account {
        id: 1,
        email: "shared@x".into(),
        balance: 0,
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for db in [a.clone(), b.clone()] {
        for _ in 0..4 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    db.transaction(|tx| async move {
                        let mut account = tx.get::<Account>(1).await?.unwrap();
                        account.balance += 1;
                        tx.update(&account).await
                    })
                    .await
                    .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(b.get::<Account>(1).await.unwrap().unwrap().balance, 80);
}

/// A unique value inserted concurrently from two clients: exactly one insert wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_from_two_clients_is_won_once() {
    let site = Site::new(Mode::Remote);
    let (a, b) = two_clients(&site);
    let mut tasks = Vec::new();
    for id in 0..16u64 {
        let db = if id % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            db.insert(&Account {
                id,
                email: "taken@x".into(),
                balance: id,
            })
            .await
        }));
    }
    assert_eq!(unique_wins(tasks).await, 1);
    assert_eq!(a.count::<Account>().await.unwrap(), 1);
    assert_eq!(Account::by_email_in(&b, "taken@x").await.len(), 1);
}

impl Account {
    async fn by_email_in(db: &Db, email: &str) -> Vec<Account> {
        db.scope(Account::by_email(email.to_string()))
            .await
            .unwrap()
            .into_iter()
            .collect()
    }
}

/// Polls `stats` until `done` holds (bounded: 20 s), returning the last stats.
async fn wait_for_stats(
    db: &Db,
    done: impl Fn(&celldb::wire::ServerStats) -> bool,
) -> celldb::wire::ServerStats {
    for _ in 0..400 {
        let stats = db.server_stats().await.unwrap();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.server_stats().await.unwrap()
}

/// A client disconnect mid-transaction aborts it: a client process killed with SIGKILL while
/// its transaction holds a snapshot on the server (the test binary re-run as a child that
/// begins a transaction, reports it, and waits to be killed). Its connection closes without
/// any release; the server drops the session's `hold` call and with it the transaction, and
/// the write it buffered never lands.
#[test]
fn a_killed_client_process_leaves_no_transaction_behind() {
    if let Some(url) = std::env::var_os("CELLDB_REMOTE_CHILD_URL") {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let db = Db::connect(&url.to_string_lossy()).unwrap();
            let _ = db
                .transaction(|tx| async move {
                    let mut account = tx.get::<Account>(1).await?.unwrap();
                    account.balance = 0;
                    tx.update(&account).await?;
                    println!("BEGAN");
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .await;
        });
        return;
    }
    let site = Site::new(Mode::Remote);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let observer = site.open();
    runtime.block_on(async {
        observer
            .insert(&Account {
                id: 1,
                email: "a@x".into(),
                balance: 10,
            })
            .await
            .unwrap();
    });
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "celldb_remote::a_killed_client_process_leaves_no_transaction_behind",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "CELLDB_REMOTE_CHILD_URL",
            format!("unix:{}", site.socket().display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(n > 0, "the child ended before beginning its transaction");
        if line.trim_end().ends_with("BEGAN") {
            break;
        }
    }
    runtime.block_on(async {
        let before = observer.server_stats().await.unwrap();
        assert_eq!(before.open_transactions, 1, "{before:?}");
        assert_eq!(before.sessions, 2, "{before:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let after =
            wait_for_stats(&observer, |s| s.open_transactions == 0 && s.sessions == 1).await;
        assert_eq!(after.open_transactions, 0, "{after:?}");
        assert_eq!(after.sessions, 1, "{after:?}");
        let account = observer.get::<Account>(1).await.unwrap().unwrap();
        assert_eq!(
            account.balance, 10,
            "the aborted transaction's write landed"
        );
    });
}

/// Garbage bytes, valid frames with bad ids, keys and names: each is refused on its own, and
/// the server keeps serving everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_leave_the_server_serving() {
    let site = Site::new(Mode::Remote);
    let db = site.open();
    db.insert(&Account {
        id: 1,
        email: "a@x".into(),
        balance: 1,
    })
    .await
    .unwrap();

    // Not even a handshake: the server drops this connection.
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::UnixStream::connect(site.socket())
            .await
            .unwrap();
        let _ = raw.write_all(&[0xFF; 4096]).await;
        let _ = raw.shutdown().await;
    }

    // A real client of the protocol, saying wrong things.
    let rpc = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    let session = rpc.open_session().await.unwrap();
    let bad = |r: Result<_, cell_sdk::CallError<WireError>>| match r {
        Err(cell_sdk::CallError::App(WireError::BadRequest(_))) => {}
        Err(cell_sdk::CallError::App(WireError::UnknownTransaction)) => {}
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    };
    let at = |keyspace| At {
        session,
        tx: 0,
        keyspace,
    };
    bad(rpc.point(at(987_654), vec![1]).await.map(drop));
    bad(rpc.latest(987_654, vec![1]).await.map(drop));
    bad(rpc.count(987_654).await.map(drop));
    let ids = rpc
        .open_table(OpenTable {
            table: "accounts".into(),
            meta: celldb::__private::table_meta::<Account>(),
        })
        .await;
    // The table's real ids, to send bad keys to a real keyspace.
    let records = ids.unwrap().records;
    bad(rpc.point(at(records), Vec::new()).await.map(drop));
    bad(rpc.point(at(records), vec![7; 70_000]).await.map(drop));
    bad(rpc
        .range(
            at(records),
            WireBound::Included(vec![9]),
            WireBound::Included(vec![1]),
        )
        .await
        .map(drop));
    bad(rpc
        .commit(Commit {
            session,
            tx: 424_242,
            writes: Vec::new(),
            sync: true,
        })
        .await
        .map(drop));
    bad(rpc
        .commit(Commit {
            session,
            tx: 0,
            writes: vec![WireWrite {
                keyspace: 987_654,
                key: vec![1],
                value: None,
            }],
            sync: true,
        })
        .await
        .map(drop));
    for name in ["", "../escape", &"x".repeat(300), "a.b"] {
        let mut meta = celldb::__private::table_meta::<Account>();
        meta.type_name = "Whatever".into();
        bad(rpc
            .open_table(OpenTable {
                table: name.to_string(),
                meta,
            })
            .await
            .map(drop));
    }
    assert!(!rpc.release(session, 424_242).await.unwrap());
    // Another session's transaction is not ours to use or release.
    let other = rpc.open_session().await.unwrap();
    let theirs = rpc
        .point(
            At {
                session: other,
                tx: 0,
                keyspace: records,
            },
            vec![1],
        )
        .await
        .unwrap()
        .tx;
    bad(rpc
        .point(
            At {
                session,
                tx: theirs,
                keyspace: records,
            },
            vec![1],
        )
        .await
        .map(drop));
    assert!(!rpc.release(session, theirs).await.unwrap());
    assert!(rpc.release(other, theirs).await.unwrap());

    // A request whose payload is not the method's argument type: the connection is closed.
    let wrong = rpc
        .synapse()
        .call::<String, u64, WireError>(3, &"not an At".to_string())
        .await;
    assert!(wrong.is_err());

    let stats = db.server_stats().await.unwrap();
    assert!(stats.bad_requests >= 10, "{stats:?}");
    // Everyone is still served.
    assert_eq!(db.get::<Account>(1).await.unwrap().unwrap().balance, 1);
    db.insert(&Account {
        id: 2,
        email: "b@x".into(),
        balance: 2,
    })
    .await
    .unwrap();
    assert_eq!(db.count::<Account>().await.unwrap(), 2);
}

/// `celldb serve --tcp`: a client with the shared secret is served; a client with another
/// secret is refused at the handshake (`Error::Connection`), and the server keeps serving.
#[tokio::test]
async fn authenticated_tcp_serves_only_clients_with_the_secret() {
    let site = Site::new(Mode::Remote);
    // A free port: bind one, release it, serve on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .args(["serve", "--tcp", &addr.to_string(), "--dir"])
        .arg(site.dir())
        .env("CELL_SECRET", "the-shared-secret");
    let _server = ServerProcess::spawn(command, format!("tcp://{addr}")).unwrap();
    let config = |secret: &str| cell_sdk::SynapseConfig {
        secret: Some(cell_sdk::Secret::new(secret.as_bytes().to_vec())),
        ..cell_sdk::SynapseConfig::default()
    };
    let good = Db::connect_with(
        cell_sdk::Endpoint::tcp(addr.to_string()),
        config("the-shared-secret"),
    );
    let account = Account {
        id: 1,
        email: "tcp@x".into(),
        balance: 5,
    };
    good.insert(&account).await.unwrap();
    let wrong = Db::connect_with(cell_sdk::Endpoint::tcp(addr.to_string()), config("guess"));
    let err = wrong.get::<Account>(1).await.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
    assert_eq!(good.get::<Account>(1).await.unwrap(), Some(account));
}

/// A client that is connected but never finishes its transaction: `--tx-timeout` aborts it,
/// and the transaction's next request is told it is unknown (a conflict: the body re-runs).
#[tokio::test]
async fn an_idle_transaction_is_aborted_after_the_timeout() {
    let site = Site::new(Mode::Remote);
    let (_server, db) = serve_with(&site, &["--tx-timeout", "1"]);
    insert_accounts(&db, 1).await;
    let (rpc, session, records) = raw_accounts(&site).await;
    let at = at_in(session, records);
    let tx = rpc.point(at(0), vec![1]).await.unwrap().tx;
    let stats = wait_for_stats(&db, |s| s.open_transactions == 0).await;
    assert_eq!(stats.open_transactions, 0, "{stats:?}");
    assert!(matches!(
        rpc.point(at(tx), vec![1]).await,
        Err(cell_sdk::CallError::App(WireError::UnknownTransaction))
    ));
}

#[protein]
#[DB::persist(table = "scratch", durability = "buffered")]
pub struct Scratch {
    #[DB::key]
    id: u64,
}

/// Durability is the server's and follows the table: a lone writer's durable inserts are each
/// acknowledged after a group with a `persist(SyncAll)` on the server (its fsync counter grows
/// with every acknowledged write-set); a `buffered` table's writes add none (negative control).
/// The strace proof that an fsync precedes each acknowledgement is `celldb_crash`'s, on the
/// same `LocalLog` the server commits through.
#[tokio::test]
async fn the_server_fsyncs_every_durable_write_set_and_no_buffered_one() {
    let site = Site::new(Mode::Remote);
    let db = site.open();
    db.count::<Scratch>().await.unwrap();
    db.count::<Account>().await.unwrap();
    let before = db.server_stats().await.unwrap();
    for id in 0..20 {
        db.insert(&Account {
            id,
            email: format!("{id}@x"),
            balance: id,
        })
        .await
        .unwrap();
    }
    let durable = db.server_stats().await.unwrap();
    assert_eq!(durable.committed - before.committed, 20, "{durable:?}");
    assert_eq!(
        durable.syncs - before.syncs,
        20,
        "one fsync per sequential durable write-set: {durable:?}"
    );
    for id in 0..20 {
        db.insert(&Scratch { id }).await.unwrap();
    }
    let buffered = db.server_stats().await.unwrap();
    assert_eq!(buffered.committed - durable.committed, 20, "{buffered:?}");
    assert_eq!(
        buffered.syncs, durable.syncs,
        "buffered writes fsynced: {buffered:?}"
    );
}

#[test]
fn a_second_server_on_one_directory_is_refused() {
    let site = Site::new(Mode::Remote);
    let _first = site.open();
    let other_socket = site.dir().join("other.sock");
    let err = ServerProcess::start(site.dir(), &other_socket)
        .err()
        .unwrap();
    assert!(err.contains("in use by another process"), "{err}");
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

/// A server holds no application types, so it cannot migrate: a changed type is refused with
/// the embedded-mode error plus what to do, and the data is left as it was.
#[tokio::test]
async fn a_server_refuses_a_migration() {
    let site = Site::new(Mode::Remote);
    let db = site.open();
    db.insert(&v1::Person {
        id: 1,
        name: "Ada".into(),
    })
    .await
    .unwrap();
    let err = db.get::<v2::Person>(1).await.unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch { .. }), "{err}");
    assert!(err.to_string().contains("embedded mode"), "{err}");
    assert_eq!(db.count::<v1::Person>().await.unwrap(), 1);
}

/// `$CELLDB_URL` makes the *default* database remote: the same program, unchanged, writes to
/// the server (in a child process, since the default database is process-wide).
#[test]
fn the_default_database_follows_celldb_url() {
    if std::env::var_os(celldb::remote::URL_ENV).is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Plain user code: no handle, no scope.
            DB::insert(&item(7)).await.unwrap();
            assert_eq!(Item::get(7).await.unwrap(), Some(item(7)));
            assert!(celldb::current().unwrap().is_remote());
        });
        return;
    }
    let site = Site::new(Mode::Remote);
    let db = site.open();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "celldb_remote::the_default_database_follows_celldb_url",
            "--test-threads=1",
        ])
        .env(
            celldb::remote::URL_ENV,
            format!("unix:{}", site.socket().display()),
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(db.get::<Item>(7).await.unwrap(), Some(item(7)));
    });
}

/// SIGKILL of the **server** at random moments while clients write: every write acknowledged
/// to a client is present after the server restarts, and the indexes agree with the records.
/// Writers retry through the outage (an unacknowledged write has an unknown outcome; it is
/// written again, with `upsert`, until acknowledged).
#[test]
fn killing_the_server_loses_no_acknowledged_write() {
    let kills: u64 = std::env::var("CELLDB_REMOTE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let site = Site::new(Mode::Remote);
    let mut server = Some(ServerProcess::start(site.dir(), &site.socket()).unwrap());
    let url = format!("unix:{}", site.socket().display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            let db = Db::connect(&url).unwrap();
            runtime.spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = w + i * 4;
                    // Until acknowledged; the server may be down for a while.
                    while !stop.load(Ordering::Relaxed) {
                        match db.upsert(&item(id)).await {
                            Ok(()) => {
                                acked.lock().unwrap().push(id);
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let mut seed = 0x2545_F491_4F6C_DD1D
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    for _ in 0..kills {
        // Let some writes through, then kill after a random 0–60 ms.
        let before = acked.lock().unwrap().len();
        for _ in 0..3000 {
            if acked.lock().unwrap().len() > before + 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            acked.lock().unwrap().len() > before,
            "no write was acknowledged after a restart"
        );
        std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 60));
        server.take().unwrap().kill();
        server = Some(ServerProcess::start(site.dir(), &site.socket()).unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    server.take().unwrap().kill();
    let _server = ServerProcess::start(site.dir(), &site.socket()).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 > kills,
        "too few writes to mean anything"
    );
    runtime.block_on(async {
        let db = Db::connect(&url).unwrap();
        verify(&db, &acked).await;
    });
}

/// A table with a non-unique index, for paged index lookups.
#[protein]
#[DB::persist(table = "patients")]
pub struct Patient {
    #[DB::key]
    id: u64,
    #[DB::index]
    ward: String,
    note: String,
}

/// `celldb serve` on the site's directory and socket with extra flags; a client of it.
fn serve_with(site: &Site, flags: &[&str]) -> (ServerProcess, Db) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .arg("serve")
        .args(flags)
        .arg("--dir")
        .arg(site.dir())
        .arg("--socket")
        .arg(site.socket());
    let url = format!("unix:{}", site.socket().display());
    let server = ServerProcess::spawn(command, url.clone()).unwrap();
    (server, Db::connect(&url).unwrap())
}

/// A raw protocol client with a session and the records keyspace of `accounts`.
async fn raw_accounts(site: &Site) -> (CellDbClient, u64, u64) {
    let rpc = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    let session = rpc.open_session().await.unwrap();
    let records = rpc
        .open_table(OpenTable {
            table: "accounts".into(),
            meta: celldb::__private::table_meta::<Account>(),
        })
        .await
        .unwrap()
        .records;
    (rpc, session, records)
}

/// Addresses `keyspace` in `session`, by transaction (`0` begins one).
fn at_in(session: u64, keyspace: u64) -> impl Fn(u64) -> At + Copy {
    move |tx| At {
        session,
        tx,
        keyspace,
    }
}

async fn insert_accounts(db: &Db, n: u64) {
    for id in 1..=n {
        db.insert(&Account {
            id,
            email: format!("{id}@x"),
            balance: id,
        })
        .await
        .unwrap();
    }
}

/// With a page of 100 bytes (two or three records), a scan of 40 records, a scan in a
/// transaction and a non-unique index lookup of 30 entries all arrive whole and in key
/// order; the raw protocol shows the server did cut the reply into pages.
#[tokio::test]
async fn a_range_larger_than_a_page_arrives_whole_and_in_order() {
    let site = Site::new(Mode::Remote);
    let (_server, db) = serve_with(&site, &["--page-bytes", "100"]);
    insert_accounts(&db, 40).await;
    let ids: Vec<u64> = db
        .scan::<Account>(..)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>());
    let in_tx = db
        .transaction(|tx| async move { tx.scan::<Account>(5..=35).await })
        .await
        .unwrap();
    assert_eq!(
        in_tx.iter().map(|a| a.id).collect::<Vec<_>>(),
        (5..=35).collect::<Vec<_>>()
    );
    for id in 1..=40 {
        db.insert(&Patient {
            id,
            ward: if id % 4 == 0 { "B" } else { "A" }.into(),
            note: "x".repeat(20),
        })
        .await
        .unwrap();
    }
    let ward_a: Vec<u64> = db
        .scope(Patient::by_ward("A".to_string()))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ward_a, (1..=40).filter(|i| i % 4 != 0).collect::<Vec<_>>());

    let (rpc, session, records) = raw_accounts(&site).await;
    let at = at_in(session, records);
    let first = rpc
        .range(at(0), WireBound::Unbounded, WireBound::Unbounded)
        .await
        .unwrap();
    assert!(first.more, "a 100-byte page holds less than 40 records");
    assert!(!first.entries.is_empty() && first.entries.len() < 40);
    let (tx, mut keys) = (first.tx, Vec::new());
    keys.extend(first.entries.into_iter().map(|(k, _)| k));
    loop {
        let last = keys.last().unwrap().clone();
        let page = rpc
            .range(at(tx), WireBound::Excluded(last), WireBound::Unbounded)
            .await
            .unwrap();
        assert_eq!(page.tx, tx);
        keys.extend(page.entries.into_iter().map(|(k, _)| k));
        if !page.more {
            break;
        }
    }
    assert_eq!(keys.len(), 40);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "pages out of order");
}

/// A write committed into a page the transaction already read — after the whole scan
/// arrived, or between two pages of it — makes the transaction conflict; a transaction that
/// read one page only is not disturbed by a write beyond that page (its read check covers
/// what it saw, no more). Through the API, the body re-runs and sees the write.
#[tokio::test]
async fn a_write_into_an_already_read_page_makes_the_transaction_conflict() {
    let site = Site::new(Mode::Remote);
    let (_server, db) = serve_with(&site, &["--page-bytes", "100"]);
    insert_accounts(&db, 40).await;
    let writer = Db::connect(&format!("unix:{}", site.socket().display())).unwrap();
    let set_balance = |balance| {
        let writer = writer.clone();
        async move {
            writer
                .update(&Account {
                    id: 1,
                    email: "1@x".into(),
                    balance,
                })
                .await
                .unwrap();
        }
    };

    // The API: the scan (many pages) completes, then account 1 (first page) changes.
    let runs = Arc::new(AtomicU64::new(0));
    let total = db
        .transaction(|tx| {
            let (runs, set_balance) = (runs.clone(), set_balance);
            async move {
                let all = tx.scan::<Account>(..).await?;
                if runs.fetch_add(1, Ordering::Relaxed) == 0 {
                    set_balance(1000).await;
                }
                tx.update(&Account {
                    id: 40,
                    email: "40@x".into(),
                    balance: all.iter().map(|a| a.balance).sum(),
                })
                .await?;
                Ok(all.iter().map(|a| a.balance).sum::<u64>())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::Relaxed),
        2,
        "the transaction re-ran once"
    );
    assert_eq!(
        total,
        1000 + (2..=40).sum::<u64>(),
        "the re-run saw the write"
    );

    // The protocol, page by page: `attempt` reads the first page, lets the writer change
    // account `write_id`, reads the other pages if `all_pages`, then commits a rewrite of the
    // first entry it read.
    let (rpc, session, records) = raw_accounts(&site).await;
    let at = at_in(session, records);
    let attempt = |all_pages: bool, write_id: u64| {
        let rpc = rpc.clone();
        let writer = writer.clone();
        async move {
            let first = rpc
                .range(at(0), WireBound::Unbounded, WireBound::Unbounded)
                .await
                .unwrap();
            assert!(first.more);
            let tx = first.tx;
            let rewrite = first.entries[0].clone();
            let mut last = first.entries.last().unwrap().0.clone();
            // Between the first and second page (or after the only page read).
            writer
                .update(&Account {
                    id: write_id,
                    email: format!("{write_id}@x"),
                    balance: 7,
                })
                .await
                .unwrap();
            let mut more = all_pages;
            while more {
                let page = rpc
                    .range(at(tx), WireBound::Excluded(last), WireBound::Unbounded)
                    .await
                    .unwrap();
                last = page.entries.last().unwrap().0.clone();
                more = page.more;
            }
            rpc.commit(Commit {
                session,
                tx,
                writes: vec![WireWrite {
                    keyspace: records,
                    key: rewrite.0,
                    value: Some(rewrite.1),
                }],
                sync: true,
            })
            .await
        }
    };
    let conflict = |r: Result<u64, cell_sdk::CallError<WireError>>| {
        matches!(r, Err(cell_sdk::CallError::App(WireError::Conflict)))
    };
    // Written into the first page, then the remaining pages read: conflict.
    assert!(conflict(attempt(true, 2).await));
    // Written into the last page before it was read (the snapshot hides it; the read check
    // of the whole range sees it changed): conflict.
    assert!(conflict(attempt(true, 39).await));
    // Only the first page read; written into the first page: conflict.
    assert!(conflict(attempt(false, 1).await));
    // Only the first page read; written beyond it: what the client saw is intact.
    assert!(attempt(false, 38).await.is_ok());
}

/// `--max-tx-per-session 2`: a session's third open transaction is refused at once with
/// `WireError::Limit` naming the flag; ending one makes room. `--max-sessions 2`: a third
/// connection's first request fails with `Error::Remote` naming its flag (no hang), and is
/// served once another client disconnects.
#[tokio::test]
async fn open_transactions_and_sessions_are_bounded() {
    let site = Site::new(Mode::Remote);
    let (_server, db) = serve_with(&site, &["--max-tx-per-session", "2", "--max-sessions", "2"]);
    insert_accounts(&db, 1).await; // session 1
    let (rpc, session, records) = raw_accounts(&site).await; // session 2
    // Held as a client does: the session ends when this call's connection closes.
    let holder = CellDbClient::from_synapse(rpc.synapse().with_timeout(None));
    let hold = tokio::spawn(async move { holder.hold(session).await });
    let at = at_in(session, records);
    let key = rpc
        .range(at(0), WireBound::Unbounded, WireBound::Unbounded)
        .await
        .unwrap();
    let first = key.tx;
    let key = key.entries[0].0.clone();
    rpc.point(at(0), key.clone()).await.unwrap();
    match rpc.point(at(0), key.clone()).await {
        Err(cell_sdk::CallError::App(WireError::Limit(reason))) => {
            assert!(reason.contains("--max-tx-per-session"), "{reason}");
        }
        other => panic!("expected the transaction limit, got {other:?}"),
    }
    // Reads in the open transactions are still served.
    rpc.point(at(first), key.clone()).await.unwrap();
    assert!(rpc.release(session, first).await.unwrap());
    rpc.point(at(0), key.clone()).await.unwrap();

    // A third session.
    assert!(matches!(
        rpc.open_session().await,
        Err(cell_sdk::CallError::App(WireError::Limit(_)))
    ));
    let third = Db::connect(&format!("unix:{}", site.socket().display())).unwrap();
    // A read in a transaction needs a session (`get` outside one reads the latest value).
    let read = |db: Db| async move {
        db.transaction(|tx| async move { tx.get::<Account>(1).await })
            .await
    };
    match read(third.clone()).await {
        Err(Error::Remote(reason)) => assert!(reason.contains("--max-sessions"), "{reason}"),
        other => panic!("expected the session limit, got {other:?}"),
    }
    // The raw client disconnects: its session (and transactions) end on the server.
    hold.abort();
    drop(rpc);
    let mut served = None;
    for _ in 0..400 {
        match read(third.clone()).await {
            Err(Error::Remote(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => {
                served = Some(other);
                break;
            }
        }
    }
    assert_eq!(served.unwrap().unwrap().unwrap().balance, 1);
    let stats = db.server_stats().await.unwrap();
    assert_eq!(stats.sessions, 2, "{stats:?}");
}

/// A session whose `hold` call never comes (a client that opened one and went silent) would
/// never end: with `--tx-timeout 1 --max-sessions 1` it is ended after the timeout, and a
/// real client is then served.
#[tokio::test]
async fn a_session_never_held_is_ended_after_the_timeout() {
    let site = Site::new(Mode::Remote);
    let (_server, db) = serve_with(&site, &["--tx-timeout", "1", "--max-sessions", "1"]);
    let rpc = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    rpc.open_session().await.unwrap();
    let mut served = None;
    for _ in 0..400 {
        match db
            .transaction(|tx| async move { tx.get::<Account>(1).await })
            .await
        {
            Err(Error::Remote(reason)) => {
                assert!(reason.contains("--max-sessions"), "{reason}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                served = Some(other);
                break;
            }
        }
    }
    assert!(served.unwrap().unwrap().is_none());
    let stats = db.server_stats().await.unwrap();
    assert_eq!(stats.sessions, 1, "{stats:?}");
}
