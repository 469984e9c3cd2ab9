//! celldb's database directory on a real disk: who may own it and read it, a symlinked lock
//! file, keyspaces and journals deleted behind celldb's back, a damaged keyspace manifest
//! (through the real `celldb` binary, so an abort would be seen as a signal), and the
//! read-only `inspect`/`dump` that create and change nothing.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use cell_sdk::protein;
use celldb::{Db, Error};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(table = "notes")]
pub struct Note {
    #[DB::key]
    id: u64,
    #[DB::index]
    topic: String,
    text: String,
}

fn note(id: u64) -> Note {
    Note {
        id,
        topic: format!("t{}", id % 3),
        text: format!("note {id}"),
    }
}

/// A database with `n` notes, closed.
fn filled(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Db::open(dir.path()).unwrap();
        for id in 0..n {
            db.insert(&note(id)).await.unwrap();
        }
    });
    dir
}

/// fjall's numeric id of keyspace `name` in database `dir` (opened raw, then closed).
fn keyspace_id(dir: &Path, name: &str) -> u64 {
    let raw = fjall::Database::builder(dir.join("data")).open().unwrap();
    assert!(raw.keyspace_exists(name), "no keyspace {name}");
    raw.keyspace(name, fjall::KeyspaceCreateOptions::default)
        .unwrap()
        .id()
}

/// Every file under `dir` with its size, mode and content (to prove nothing changed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, (meta.mode(), Vec::new()));
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path, (meta.mode(), bytes));
            }
        }
    }
    out
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_celldb-cli"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_new_database_directory_and_its_data_are_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("db");
    drop(Db::open(&dir).unwrap());
    for path in [dir.clone(), dir.join("data")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", path.display());
    }
}

#[test]
fn a_database_directory_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Who we are: the owner of the directory we just created.
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path()).unwrap());
    let path = if me == 0 {
        // As root: a directory given to `nobody`.
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        dir.path().to_path_buf()
    } else {
        // Not root: `/` belongs to root.
        PathBuf::from("/")
    };
    let before = snapshot(dir.path());
    let err = Db::open(&path).unwrap_err();
    assert!(err.to_string().contains("belongs to uid"), "{err}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the refused directory was changed"
    );
}

#[test]
fn a_symlinked_lock_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::os::unix::fs::symlink(&victim, db.join("LOCK")).unwrap();
    let err = Db::open(&db).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert!(!db.join("data").exists());
}

/// A deleted records keyspace or index keyspace would be recreated empty by the next open of
/// its table, and read as "no records" / "no index entries": it is an error naming the table
/// and the keyspace instead, in embedded mode and for a server (which refuses to start).
#[test]
fn a_deleted_table_or_index_keyspace_is_an_error_not_an_empty_table() {
    for keyspace in ["t.notes", "i.notes.topic"] {
        let dir = filled(6);
        let id = keyspace_id(dir.path(), keyspace);
        std::fs::remove_dir_all(dir.path().join(format!("data/keyspaces/{id}"))).unwrap();
        let err = Db::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(keyspace) && text.contains("notes"),
            "{keyspace}: {text}"
        );
        let sockets = cell_sdk::testkit::temp_socket_dir().unwrap();
        let served =
            crate::celldb_site::ServerProcess::start(dir.path(), &sockets.path().join("db.sock"));
        let err = served
            .err()
            .expect("the server must refuse a damaged directory");
        assert!(err.contains(keyspace), "{err}");
    }
}

/// celldb's own metadata keyspace deleted: every table would look new (and empty).
#[test]
fn a_deleted_metadata_keyspace_is_an_error() {
    let dir = filled(3);
    let id = keyspace_id(dir.path(), "celldb.meta");
    std::fs::remove_dir_all(dir.path().join(format!("data/keyspaces/{id}"))).unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("celldb.meta"), "{err}");
}

/// Without a journal, fjall would start a new one and drop every write not yet flushed.
#[test]
fn a_deleted_journal_is_an_error() {
    let dir = filled(3);
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jnl") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("journal"), "{err}");
}

/// One flipped byte in a keyspace manifest (`keyspaces/N/v*`) made lsm-tree assert and the
/// process abort (a panic in a destructor): `celldb inspect` — a real process, so an abort is a
/// signal here, not the end of this test run — now exits with an error naming the file, and
/// so does `Db::open`.
#[test]
fn a_flipped_byte_in_a_keyspace_manifest_is_an_error_not_an_abort() {
    let dir = filled(4);
    let id = keyspace_id(dir.path(), "t.notes");
    let ks = dir.path().join(format!("data/keyspaces/{id}"));
    let manifest = std::fs::read_dir(&ks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('v'))
        })
        .unwrap();
    let original = std::fs::read(&manifest).unwrap();
    for at in [0, original.len() / 2, original.len() - 1] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x5A;
        std::fs::write(&manifest, &bytes).unwrap();
        let out = cli(&["inspect", dir.path().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "byte {at}: {:?} {err}",
            out.status
        );
        assert!(
            err.contains("checksum") && err.contains("v"),
            "byte {at}: {err}"
        );
        let e = Db::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
    std::fs::write(&manifest, &original).unwrap();
    Db::open(dir.path()).unwrap();
}

/// `inspect` and `dump` open read-only: on a directory that merely has a `data/` folder they
/// say it is not a celldb database and create nothing; on a real database they change no byte,
/// no file and no mode.
#[test]
fn inspect_and_dump_create_and_change_nothing() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("data")).unwrap();
    let before = snapshot(empty.path());
    let out = cli(&["inspect", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a celldb database"), "{err}");
    assert_eq!(snapshot(empty.path()), before);

    let dir = filled(5);
    let before = snapshot(dir.path());
    let out = cli(&["inspect", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("records:     5"));
    let out = cli(&["dump", dir.path().to_str().unwrap(), "notes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 record(s)"));
    assert_eq!(
        snapshot(dir.path()),
        before,
        "inspect/dump changed the directory"
    );
}

/// A directory whose creation a kill interrupted (only `data.creating/` exists) is not a
/// database for the tools, and a writing open creates it again.
#[test]
fn an_interrupted_creation_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data.creating/keyspaces")).unwrap();
    std::fs::write(dir.path().join("data.creating/0.jnl"), b"half").unwrap();
    let out = cli(&["inspect", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted"), "{err}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let db = Db::open(dir.path()).unwrap();
    runtime.block_on(async {
        db.insert(&note(1)).await.unwrap();
        assert_eq!(db.get::<Note>(1).await.unwrap(), Some(note(1)));
    });
    assert!(!dir.path().join("data.creating").exists());
}
