//! `celldb serve` against hostile or buggy clients, with real server processes: payloads that
//! are not exactly a method's arguments, unguessable session and transaction ids, bounded
//! schema (tables, indexes, metadata size) and read checks, and the server's log on stderr
//! (refused peers, bad frames).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use crate::celldb_site::{Mode, ServerProcess, Site};
use cell_sdk::{TypedClient, protein};
use celldb::wire::{At, CellDbClient, OpenTable, WireError};
use std::io::BufRead;
use std::time::Duration;

cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(table = "parcels")]
pub struct Parcel {
    #[DB::key]
    id: u64,
    #[DB::index]
    colour: String,
    content: Vec<u8>,
}

fn a_parcel(id: u64) -> Parcel {
    Parcel {
        id,
        colour: format!("c{}", id % 4),
        content: vec![7; 100],
    }
}

/// `celldb serve` with extra flags on the site's directory and socket; a raw protocol client.
async fn serve(site: &Site, flags: &[&str]) -> (ServerProcess, CellDbClient) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .arg("serve")
        .args(flags)
        .arg("--dir")
        .arg(site.dir())
        .arg("--socket")
        .arg(site.socket());
    let server =
        ServerProcess::spawn(command, format!("unix:{}", site.socket().display())).unwrap();
    let rpc = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    (server, rpc)
}

fn limit<T: std::fmt::Debug>(r: Result<T, cell_sdk::CallError<WireError>>, flag: &str) {
    match r {
        Err(cell_sdk::CallError::App(WireError::Limit(reason))) => {
            assert!(reason.contains(flag), "{reason}");
        }
        other => panic!("expected the limit of {flag}, got {other:?}"),
    }
}

/// The generated decoder ignored the payload of a method without arguments, and rkyv accepts
/// bytes before an archive's root: random bytes sent as `open_session` took a session slot,
/// and `count` accepted 16 bytes for its 8-byte argument. Now any payload that is not exactly
/// the archive closes that connection, takes nothing, and others are served.
#[tokio::test]
async fn a_payload_that_is_not_exactly_the_arguments_is_refused() {
    let site = Site::new(Mode::Remote);
    let (_server, rpc) = serve(&site, &[]).await;
    let records = rpc
        .open_table(OpenTable {
            table: "parcels".into(),
            meta: celldb::__private::table_meta::<Parcel>(),
        })
        .await
        .unwrap()
        .records;
    let before = rpc.stats().await.unwrap();
    // `open_session` (method 1) with 8 bytes of arguments it does not have.
    let bad = rpc
        .synapse()
        .call::<u64, u64, WireError>(1, &0x1234_5678_9abc_def0)
        .await;
    assert!(bad.is_err(), "{bad:?}");
    // `count` (method 8) with its keyspace id after 8 bytes of garbage.
    let other = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    let bad = other
        .synapse()
        .call::<(u64, u64), u64, WireError>(8, &(0xdead_beef, records))
        .await;
    assert!(bad.is_err(), "{bad:?}");
    let fresh = CellDbClient::connect_to(cell_sdk::Endpoint::unix(site.socket()))
        .await
        .unwrap();
    let after = fresh.stats().await.unwrap();
    assert_eq!(after.sessions, before.sessions, "{after:?}");
    // Exact payloads are served as before.
    assert_eq!(fresh.count(records).await.unwrap(), 0);
    fresh.open_session().await.unwrap();
}

/// Session and transaction ids come from the OS's CSPRNG: no two of a few dozen are close, so
/// none can be found by counting from one's own.
#[tokio::test]
async fn session_and_transaction_ids_are_not_guessable() {
    let site = Site::new(Mode::Remote);
    let (_server, rpc) = serve(&site, &["--max-tx-per-session", "64"]).await;
    let records = rpc
        .open_table(OpenTable {
            table: "parcels".into(),
            meta: celldb::__private::table_meta::<Parcel>(),
        })
        .await
        .unwrap()
        .records;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let session = rpc.open_session().await.unwrap();
        ids.push(session);
        for _ in 0..4 {
            let at = At {
                session,
                tx: 0,
                keyspace: records,
            };
            ids.push(rpc.point(at, vec![1]).await.unwrap().tx);
        }
    }
    ids.sort_unstable();
    for pair in ids.windows(2) {
        assert!(
            pair[1] - pair[0] > 1 << 20,
            "ids too close to each other: {:x} {:x}",
            pair[0],
            pair[1]
        );
    }
}

/// One `open_table` with 2,000 index names made the server create 2,000 keyspaces; 400
/// tables took 414 MB. Tables, indexes per table and the metadata's size are bounded, with
/// errors naming the flag; tables that exist stay usable at the bound.
#[tokio::test]
async fn tables_indexes_and_metadata_are_bounded() {
    let site = Site::new(Mode::Remote);
    let (_server, rpc) = serve(
        &site,
        &["--max-tables", "3", "--max-indexes-per-table", "2"],
    )
    .await;
    let meta = |indexes: usize| {
        let mut meta = celldb::__private::table_meta::<Parcel>();
        meta.indexes = (0..indexes).map(|i| (format!("ix{i}"), false)).collect();
        meta
    };
    let open = |table: String, meta| {
        let rpc = rpc.clone();
        async move { rpc.open_table(OpenTable { table, meta }).await }
    };
    limit(
        open("wide".into(), meta(3)).await,
        "--max-indexes-per-table",
    );
    for t in 0..3 {
        open(format!("t{t}"), meta(2)).await.unwrap();
    }
    limit(open("t3".into(), meta(0)).await, "--max-tables");
    // At the bound, an existing table still opens.
    open("t1".into(), meta(2)).await.unwrap();
    // Metadata of more than 64 KiB is refused as malformed.
    let mut huge = meta(0);
    huge.describe = "x".repeat(70_000);
    match open("t0".into(), huge).await {
        Err(cell_sdk::CallError::App(WireError::BadRequest(reason))) => {
            assert!(reason.contains("bytes"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let stats = rpc.stats().await.unwrap();
    assert!(stats.bad_requests >= 1, "{stats:?}");
}

/// Every point read keeps its key and the value it saw until commit: the bytes one session's
/// transactions hold are bounded (`--max-session-read-bytes`), the read past it is refused,
/// and ending the transactions gives the room back.
#[tokio::test]
async fn read_checks_held_by_a_session_are_bounded() {
    let site = Site::new(Mode::Remote);
    let (_server, rpc) = serve(&site, &["--max-session-read-bytes", "4000"]).await;
    let db = celldb::Db::connect(&format!("unix:{}", site.socket().display())).unwrap();
    for id in 0..50 {
        db.insert(&a_parcel(id)).await.unwrap();
    }
    let records = rpc
        .open_table(OpenTable {
            table: "parcels".into(),
            meta: celldb::__private::table_meta::<Parcel>(),
        })
        .await
        .unwrap()
        .records;
    let session = rpc.open_session().await.unwrap();
    let key = |id: u64| celldb::key::encode::<u64, _>(&id);
    let first = rpc
        .point(
            At {
                session,
                tx: 0,
                keyspace: records,
            },
            key(0),
        )
        .await
        .unwrap()
        .tx;
    let at = At {
        session,
        tx: first,
        keyspace: records,
    };
    let mut refused = None;
    for id in 1..50 {
        match rpc.point(at.clone(), key(id)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((id, e));
                break;
            }
        }
    }
    let (id, e) = refused.expect("50 reads of ~150 bytes held past a 4000-byte bound");
    assert!(id > 5, "refused too early, at read {id}");
    limit::<()>(Err(e), "--max-session-read-bytes");
    assert!(rpc.release(session, first).await.unwrap());
    rpc.point(
        At {
            session,
            tx: 0,
            keyspace: records,
        },
        key(1),
    )
    .await
    .unwrap();
}

/// `celldb serve` with stderr captured in a file: its log.
struct Logged {
    server: ServerProcess,
    log: std::path::PathBuf,
}

impl Logged {
    fn start(mut command: std::process::Command, url: String, log: std::path::PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        command.stderr(file);
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("celldb: serving"), "{line}");
        Logged {
            server: ServerProcess::adopt(child, url),
            log,
        }
    }

    /// The log once it contains `needle` (bounded wait: 20 s).
    fn wait_for(&self, needle: &str) -> String {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "`{needle}` never appeared in the server's log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// The server logs to stderr: a TCP client with the wrong secret (a refused peer) and a bad
/// frame on the Unix socket are each visible, `RUST_LOG` is honoured, and there are no ANSI
/// colours in a file.
#[tokio::test]
async fn serve_logs_refused_peers_and_bad_frames_to_stderr() {
    let site = Site::new(Mode::Remote);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .args(["serve", "--tcp", &addr.to_string(), "--dir"])
        .arg(site.dir())
        .env("CELL_SECRET", "the-real-secret")
        .env_remove("RUST_LOG");
    let logged = Logged::start(
        command,
        format!("tcp://{addr}"),
        site.dir().join("serve.log"),
    );
    let wrong = celldb::Db::connect_with(
        cell_sdk::Endpoint::tcp(addr.to_string()),
        cell_sdk::SynapseConfig {
            secret: Some(cell_sdk::Secret::new(b"a-guess".to_vec())),
            ..cell_sdk::SynapseConfig::default()
        },
    );
    assert!(wrong.get::<Parcel>(1).await.is_err());
    let text = logged.wait_for("unauthenticated peer");
    assert!(text.contains("WARN"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI colours in a log file:\n{text}"
    );
    drop(logged.server);

    // Unix socket, `RUST_LOG=debug`: a frame that is not a protocol's handshake.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
    command
        .arg("serve")
        .arg("--dir")
        .arg(site.dir())
        .arg("--socket")
        .arg(site.socket())
        .env("RUST_LOG", "debug");
    let logged = Logged::start(
        command,
        format!("unix:{}", site.socket().display()),
        site.dir().join("serve-unix.log"),
    );
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::UnixStream::connect(site.socket())
            .await
            .unwrap();
        let _ = raw.write_all(&[0xFF; 64]).await;
        let _ = raw.shutdown().await;
    }
    let text = logged.wait_for("connection closed after an error");
    assert!(
        text.contains("DEBUG"),
        "RUST_LOG=debug not honoured:\n{text}"
    );
}
