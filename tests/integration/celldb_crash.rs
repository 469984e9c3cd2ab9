//! Crash safety with real processes.
//!
//! The child is this test binary itself, re-run with `CELLDB_CHILD_DIR` set on the test
//! [`child_writer`]: it writes records from several concurrent tasks and prints `ACK <id>` after
//! each write is acknowledged. The parent SIGKILLs it at random moments, reopens the directory,
//! and checks that every acknowledged record is present and that the indexes agree with the
//! records. A SIGKILL cannot catch a missing fsync (the page cache survives), so a second test
//! runs the child under `strace` and checks that an `fsync`/`fdatasync` separates every two
//! acknowledgements — and that buffered mode, the negative control, does not.
//!
//! A third test kills the child at random moments while it opens the database — creating a
//! new one, or opening and recovering an existing one (the child prints `OPENING` just before
//! `Db::open` and `OPENED` after it) — and checks that the directory always opens again with
//! every acknowledged write.
//!
//! `CELLDB_CRASH_KILLS` sets the number of kills after the first acknowledgement (default 20;
//! the long run documented in `docs/celldb.md` uses 500); `CELLDB_CRASH_OPEN_KILLS` the number
//! of kills during open (default 30, on 10 new databases and 20 reopens; the long run 400).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::protein;
use celldb::{Db, Durability, Error, Options};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(table = "items")]
pub struct Item {
    #[DB::key]
    id: u64,
    #[DB::unique]
    tag: String,
    #[DB::index]
    group: u64,
    payload: Vec<u8>,
}

pub(crate) fn item(id: u64) -> Item {
    Item {
        id,
        tag: format!("tag-{id}"),
        group: id % 7,
        payload: vec![(id % 251) as u8; 64],
    }
}

/// In a normal run: a small real write/read check. Re-run by the tests below with
/// `CELLDB_CHILD_DIR` set: the writer child, until killed or `CELLDB_CHILD_COUNT` writes.
#[test]
fn child_writer() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(dir) = std::env::var_os("CELLDB_CHILD_DIR") else {
        // Not a child: check the writer's records round-trip in a temp database.
        runtime.block_on(async {
            let db = Db::temp().unwrap();
            for id in 0..20 {
                db.insert(&item(id)).await.unwrap();
            }
            verify(&db, &(0..20).collect::<Vec<_>>()).await;
        });
        return;
    };
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let start = env("CELLDB_CHILD_START", 0);
    let writers = env("CELLDB_CHILD_WRITERS", 8);
    let count = env("CELLDB_CHILD_COUNT", u64::MAX);
    let durability = if std::env::var("CELLDB_CHILD_DURABILITY").as_deref() == Ok("buffered") {
        Durability::Buffered
    } else {
        Durability::Sync
    };
    runtime.block_on(async move {
        // The open-kill test aims its kills at what follows this line.
        println!("OPENING");
        let db = Db::open_with(
            &dir,
            Options {
                durability,
                ..Options::default()
            },
        )
        .unwrap();
        println!("OPENED");
        // Register the table before the first acknowledgement, so its one-time metadata
        // write is not mistaken for a record's fsync.
        db.count::<Item>().await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                loop {
                    let id = start + w + i * writers;
                    if id - start >= count {
                        break;
                    }
                    db.insert(&item(id)).await.unwrap();
                    // println! locks stdout and writes the whole line in one write(2).
                    println!("ACK {id}");
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Every acknowledged id is present; every record's index entries exist; no index entry
/// points at a missing record.
pub(crate) async fn verify(db: &Db, acked: &[u64]) {
    for &id in acked {
        let found = db.get::<Item>(id).await.unwrap();
        assert_eq!(found, Some(item(id)), "acknowledged write {id} lost");
    }
    let all = db.scan::<Item>(..).await.unwrap();
    for record in &all {
        let by_tag = db
            .by_index::<Item>(0, celldb::key::encode::<String, _>(&record.tag))
            .await
            .unwrap();
        assert_eq!(by_tag, vec![record.clone()], "unique index disagrees");
    }
    let mut indexed = 0;
    for group in 0..7u64 {
        let members = db
            .by_index::<Item>(1, celldb::key::encode::<u64, _>(&group))
            .await
            .unwrap();
        assert!(members.iter().all(|m| m.group == group));
        indexed += members.len();
    }
    assert_eq!(indexed, all.len(), "index entries and records disagree");
}

fn child(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "celldb_crash::child_writer",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CELLDB_CHILD_DIR", dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

/// A small xorshift: random kill moments without a dependency.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let kills: u64 = std::env::var("CELLDB_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..kills {
        let mut process = child(dir.path())
            .env("CELLDB_CHILD_START", (round * 1_000_000).to_string())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line
                    .strip_prefix("ACK ")
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    let _ = sender.send(id);
                }
            }
        });
        // Wait for the first acknowledgement, then kill after a random 0–40 ms of writing.
        let first = receiver.recv_timeout(Duration::from_secs(60)).unwrap();
        acked.push(first);
        let deadline = Instant::now() + Duration::from_millis(next_random(&mut seed) % 40);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        reader.join().unwrap();
        acked.extend(receiver.try_iter());
        let db = Db::open(dir.path()).unwrap();
        runtime.block_on(verify(&db, &acked));
    }
    assert!(
        acked.len() as u64 > kills,
        "the child acknowledged too few writes"
    );
}

/// SIGKILL while the child creates a new database or opens (recovers) an existing one — at a
/// random moment between the child's `OPENING` line (printed just before `Db::open`) and about
/// its first acknowledgement — the directory always opens again, with every acknowledged
/// write. (A kill in the first
/// milliseconds of a new database's first open used to leave a directory that never opened
/// again: `Io(File exists)`, `InvalidVersion(None)`.)
#[test]
fn sigkill_during_open_and_recovery_never_bricks_the_directory() {
    let kills: u64 = std::env::var("CELLDB_CRASH_OPEN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut seed = 0x5DEE_CE66_D1CE_4E5B
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // How long a child's `Db::open` of a new database takes: kills are spread over twice
    // that, from the moment it starts opening.
    let window = {
        let dir = tempfile::tempdir().unwrap();
        let (mut process, lines) = spawn_lines(
            child(dir.path())
                .env("CELLDB_CHILD_COUNT", "1")
                .env("CELLDB_CHILD_WRITERS", "1"),
        );
        let started = wait_for_line(&lines, "OPENING");
        let opened = wait_for_line(&lines, "OPENED");
        let window = opened.duration_since(started).as_micros() as u64 * 2;
        assert!(process.wait().unwrap().success());
        window.max(1)
    };
    let shared = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let (mut fresh, mut reopened) = (0, 0);
    for round in 0..kills {
        // One round in three on a new database (creation), the others on the shared one
        // (recovery of a database with records and a journal to replay).
        let new_dir = tempfile::tempdir().unwrap();
        let creating = round % 3 == 0;
        let dir = if creating {
            new_dir.path()
        } else {
            shared.path()
        };
        let (mut process, lines) = spawn_lines(
            child(dir)
                .env("CELLDB_CHILD_START", (round * 1_000_000).to_string())
                .env("CELLDB_CHILD_WRITERS", "2"),
        );
        wait_for_line(&lines, "OPENING");
        std::thread::sleep(Duration::from_micros(next_random(&mut seed) % window));
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        let acks: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ACK ").and_then(|s| s.parse().ok()))
            .collect();
        let db = Db::open(dir).unwrap_or_else(|e| {
            panic!("round {round}: the directory does not open after a kill during open: {e}")
        });
        if creating {
            fresh += 1;
            runtime.block_on(verify(&db, &acks));
        } else {
            reopened += 1;
            acked.extend(acks);
            runtime.block_on(verify(&db, &acked));
        }
    }
    println!(
        "kills during open (0-{window} µs after it began): {fresh} while creating, {reopened} \
         while recovering; {} writes acknowledged before a kill",
        acked.len()
    );
}

/// Spawns `command` and forwards its stdout lines (until it ends) to the returned channel.
fn spawn_lines(command: &mut Command) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut process = command.spawn().unwrap();
    let stdout = process.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (process, receiver)
}

/// Waits (at most 60 s) for a line containing `prefix`; when it came.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, prefix: &str) -> Instant {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no `{prefix}` line from the child: {e}"));
        // The harness prints `test … ... ` before the test's first line, without a newline.
        if line.contains(prefix) {
            return Instant::now();
        }
    }
}

/// Runs the child under strace with one writer and returns, for each acknowledgement after the
/// first, how many fsync/fdatasync calls happened since the previous acknowledgement.
fn fsyncs_between_acks(durability: &str) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.out");
    let db_dir = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("strace")
        .arg("-f")
        .arg("-qq")
        .args(["-e", "trace=fsync,fdatasync,write", "-s", "32", "-o"])
        .arg(&trace)
        .arg(&exe)
        .args([
            "--exact",
            "celldb_crash::child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CELLDB_CHILD_DIR", &db_dir)
        .env("CELLDB_CHILD_WRITERS", "1")
        .env("CELLDB_CHILD_COUNT", "30")
        .env("CELLDB_CHILD_DURABILITY", durability)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace must be installed (apt-get install strace)");
    assert!(status.success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut gaps = Vec::new();
    let mut since_ack: Option<usize> = None;
    for line in text.lines() {
        if line.contains("fsync(") || line.contains("fdatasync(") {
            if let Some(n) = since_ack.as_mut() {
                *n += 1;
            }
        } else if line.contains("write(1, \"ACK ") {
            if let Some(n) = since_ack {
                gaps.push(n);
            }
            since_ack = Some(0);
        }
    }
    assert_eq!(gaps.len(), 29, "expected 30 acknowledgements in the trace");
    gaps
}

#[test]
fn every_acknowledgement_follows_an_fsync() {
    let gaps = fsyncs_between_acks("sync");
    assert!(
        gaps.iter().all(|&n| n >= 1),
        "fsyncs between acks: {gaps:?}"
    );
}

#[test]
fn buffered_mode_acknowledges_without_fsync() {
    // Negative control: the same trace analysis must see the missing fsyncs.
    let gaps = fsyncs_between_acks("buffered");
    assert!(
        gaps.iter().all(|&n| n == 0),
        "fsyncs between acks: {gaps:?}"
    );
}

#[test]
fn an_unknown_table_is_not_an_error_for_tools() {
    let db = Db::temp().unwrap();
    assert!(db.raw_records("nothing").unwrap().is_empty());
    assert!(matches!(db.tables(), Ok(t) if t.is_empty()));
    let _: Option<Error> = None;
}
