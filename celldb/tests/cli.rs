//! The `celldb` CLI on a real database directory.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::protein;
use std::process::Command;

cell_sdk::cell_remote!(DB = "celldb");

/// A small table to inspect.
#[protein]
#[DB::persist(table = "users")]
pub struct User {
    #[DB::key]
    id: u64,
    #[DB::unique]
    email: String,
}

fn celldb(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_celldb"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn filled() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = celldb::Db::open(dir.path()).unwrap();
        for id in [2u64, 1] {
            db.insert(&User {
                id,
                email: format!("u{id}@x"),
            })
            .await
            .unwrap();
        }
    });
    dir
}

#[test]
fn inspect_lists_tables_with_counts_and_fingerprints() {
    let dir = filled();
    let path = dir.path().to_str().unwrap();
    let (ok, out, err) = celldb(&["inspect", path]);
    assert!(ok, "{err}");
    assert!(out.contains("table users"), "{out}");
    assert!(out.contains("records:     2"), "{out}");
    assert!(out.contains("email (unique)"), "{out}");
    assert!(out.contains("struct { id: u64, email: String }"), "{out}");
    let fingerprint = cell_sdk::fingerprint::hex(<User as cell_sdk::Fingerprint>::FINGERPRINT);
    assert!(out.contains(&fingerprint), "{out}");
}

#[test]
fn dump_prints_records_in_key_order() {
    let dir = filled();
    let (ok, out, err) = celldb(&["dump", dir.path().to_str().unwrap(), "users"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("0000000000000001 "), "{out}");
    assert!(lines[1].starts_with("0000000000000002 "), "{out}");
    assert_eq!(lines[2], "2 record(s)");
}

#[test]
fn unknown_tables_and_held_directories_are_errors() {
    let dir = filled();
    let path = dir.path().to_str().unwrap();
    let (ok, _, err) = celldb(&["dump", path, "nope"]);
    assert!(!ok);
    assert!(err.contains("no table `nope`"), "{err}");
    let _held = celldb::Db::open(dir.path()).unwrap();
    let (ok, _, err) = celldb(&["inspect", path]);
    assert!(!ok);
    assert!(err.contains("in use by another process"), "{err}");
    let (ok, _, err) = celldb(&["inspect", "/nonexistent/celldb"]);
    assert!(!ok);
    assert!(err.contains("not a celldb database"), "{err}");
}

#[test]
fn serve_help_teaches_how_clients_connect() {
    let (ok, out, _) = celldb(&["serve", "--help"]);
    assert!(ok);
    for needle in [
        "CELLDB_URL",
        "--socket",
        "--tcp",
        "CELL_SECRET",
        "--dir",
        "--threads",
    ] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }
    // A TCP server without a secret is refused before it serves anything.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_celldb"))
        .args(["serve", "--tcp", "127.0.0.1:1", "--dir"])
        .arg(dir.path())
        .env_remove("CELL_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("secret"), "{err}");
}

#[test]
fn serve_refuses_a_runtime_without_threads() {
    // Zero worker threads would serve nothing: refused before the directory is touched.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let path = path.to_str().unwrap();
    let refused = |ok: bool, err: &str| {
        assert!(!ok);
        assert!(
            err.contains("--threads") && err.contains("1..=1024"),
            "{err}"
        );
        assert!(!dir.path().join("db").exists(), "the directory was created");
    };
    let (ok, _, err) = celldb(&["serve", "--threads", "0", "--dir", path]);
    refused(ok, &err);
    // The same through its variable (what a benchmark or a unit file sets).
    let out = Command::new(env!("CARGO_BIN_EXE_celldb"))
        .args(["serve", "--dir", path])
        .env("CELLDB_THREADS", "0")
        .output()
        .unwrap();
    refused(out.status.success(), &String::from_utf8_lossy(&out.stderr));
}
