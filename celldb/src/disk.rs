//! The database directory on disk around fjall: who may own it, how it is created (atomically),
//! what is checked before fjall reads any of it, and the read-only view tools open.
//!
//! Layout of a database directory `<dir>`:
//! - `<dir>/LOCK`: the exclusive lock of the process that has the database open (shared for
//!   a read-only open). Opened without following symlinks.
//! - `<dir>/data/`: fjall's directory (journal `*.jnl`, `version`, `lock`, `keyspaces/N/`).
//!   It only ever appears whole: a new database is built in `<dir>/data.creating/` and renamed
//!   to `data` once fjall and celldb's own keyspaces are created and synced. A
//!   `data.creating/` left by a killed process is never a database: the next open removes it
//!   and creates again.
//!
//! Before fjall opens `data/`, [`validate`] checks what fjall would otherwise trust blindly:
//! - `data/version` is fjall 3's marker (a missing one would make fjall *create* a database
//!   over the old files);
//! - at least one journal exists (fjall always keeps its active journal; a missing one would
//!   be recreated empty, silently dropping the writes not yet flushed), and every journal
//!   passes [`crate::journal::check`];
//! - every entry of `data/keyspaces/` is a keyspace directory with a numeric name (fjall
//!   panics on another name), keyspace 0 (fjall's own metadata) has its `current` file (fjall
//!   would create an empty one and then *delete every other keyspace* as unreferenced);
//! - each keyspace's `current` file names a manifest `v<id>` whose xxh3-128 checksum matches
//!   the one `current` records. lsm-tree writes that checksum but does not check it (its
//!   manifest reader asserts on bad bytes, and the assertion can abort the process through a
//!   panic in a destructor); checking it first makes a damaged manifest [`Error::Corrupt`].
//!
//! After fjall opened, [`check_keyspaces`] verifies that every keyspace celldb's metadata names
//! was recovered: a deleted keyspace directory would otherwise be recreated empty by the next
//! open of its table, and read as a table (or index) without entries.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// fjall's directory inside a database directory.
pub(crate) const DATA: &str = "data";
/// Where a new database is built before it is renamed to [`DATA`].
const CREATING: &str = "data.creating";
/// The lock file of a database directory.
pub(crate) const LOCK: &str = "LOCK";
/// fjall 3's format marker (`data/version`).
const FJALL_VERSION: [u8; 4] = *b"FJL\x03";
/// lsm-tree's pointer to a keyspace's current manifest.
const CURRENT: &str = "current";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        table: format!("file {}", path.display()),
        reason: reason.to_string(),
    }
}

/// The effective uid of this process.
#[expect(unsafe_code, reason = "geteuid, which std does not wrap")]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the database directory with mode 0700 (the process umask is left alone; a mode
/// given to `mkdir` can only be narrowed by it), or checks an existing one: it must be a
/// directory owned by this process's user. A directory of another user could be read or
/// replaced by them; it is refused, as the runtime refuses such a socket directory.
pub(crate) fn prepare(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        "not a directory: a database is a directory",
                    ),
                });
            }
            if meta.uid() != euid() {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "the database directory belongs to uid {}, not to this process's \
                             user (uid {}); refusing it (another user could read or replace \
                             the data)",
                            meta.uid(),
                            euid()
                        ),
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(path)),
        Err(e) => Err(io(path)(e)),
    }
}

/// How the lock file is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Created if missing, locked exclusively (an open that may write).
    Exclusive,
    /// Never created, locked shared (a read-only open: several tools at once, never while a
    /// process has the database open for writing).
    Shared,
}

/// How long a held lock is tried again before the directory is reported in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The pause between two tries.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Opens `<dir>/LOCK` without following a symlink (a link planted there must not make us
/// create or lock another file) and locks it.
pub(crate) fn lock(dir: &Path, mode: LockMode) -> Result<File> {
    let lock_path = dir.join(LOCK);
    let mut options = File::options();
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match mode {
        LockMode::Exclusive => options.create(true).truncate(false).write(true).mode(0o600),
        LockMode::Shared => options.read(true),
    };
    let file = options.open(&lock_path).map_err(|source| {
        if source.raw_os_error() == Some(libc::ELOOP) {
            Error::Io {
                path: lock_path.clone(),
                source: std::io::Error::new(
                    ErrorKind::InvalidInput,
                    "the lock file is a symbolic link; refusing to follow it",
                ),
            }
        } else {
            Error::Io {
                path: lock_path.clone(),
                source,
            }
        }
    })?;
    // A lock that is held is tried again for a while before it is an error. The holder may
    // be no process of ours at all: a lock belongs to the open file, and a child another
    // thread of this process is forking holds a copy of every descriptor until its `exec`
    // closes them. A directory closed just before it is reopened could then read as "in use"
    // (a test of the corruption sweep met this while other tests spawned processes).
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let locked = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
}

/// Creates a new database in `dir` if it has none (the caller holds the exclusive lock):
/// built in `data.creating/`, then renamed to `data/`, so a kill at any moment leaves either
/// no database (the next open starts over) or a complete one.
pub(crate) fn create_if_new(dir: &Path, cache_bytes: u64, keyspaces: &[&str]) -> Result<()> {
    let data = dir.join(DATA);
    match std::fs::symlink_metadata(&data) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(&data)(e)),
    }
    let creating = dir.join(CREATING);
    match std::fs::remove_dir_all(&creating) {
        Ok(()) => tracing::info!(
            path = %creating.display(),
            "celldb: removed an interrupted database creation; creating it again"
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(&creating)(e)),
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&creating)
        .map_err(io(&creating))?;
    {
        let fjall = fjall::Database::builder(&creating)
            .cache_size(cache_bytes)
            .manual_journal_persist(true)
            .open()
            .map_err(|e| {
                Error::storage(format!("creating a database in {}", creating.display()), e)
            })?;
        for name in keyspaces {
            fjall
                .keyspace(name, fjall::KeyspaceCreateOptions::default)
                .map_err(|e| Error::storage(format!("creating keyspace {name}"), e))?;
        }
        fjall
            .persist(fjall::PersistMode::SyncAll)
            .map_err(|e| Error::storage(format!("syncing {}", creating.display()), e))?;
        // Dropping the database waits for its threads: nothing writes under the old name
        // after the rename.
    }
    sync_dir(&creating)?;
    std::fs::rename(&creating, &data).map_err(io(&data))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// True when `dir` holds a database (its `data/` directory exists).
pub(crate) fn exists(dir: &Path) -> bool {
    dir.join(DATA).is_dir()
}

/// Checks fjall's directory `data` before fjall reads it (see the module docs). Reads only;
/// returns the journals ending in a partly written batch, for [`crate::journal::cut_torn_tails`]
/// on the directory fjall will open.
///
/// # Errors
/// [`Error::Corrupt`] naming the file; I/O errors.
pub(crate) fn validate(data: &Path) -> Result<Vec<crate::journal::TornTail>> {
    let marker = data.join("version");
    match std::fs::read(&marker) {
        Ok(bytes) if bytes == FJALL_VERSION => {}
        Ok(bytes) => {
            return Err(corrupt(
                &marker,
                format!(
                    "fjall's format marker reads {bytes:02x?}, not {FJALL_VERSION:02x?} (fjall 3)"
                ),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(corrupt(
                &marker,
                "fjall's format marker is missing: the file was deleted, or the database's \
                 creation was interrupted by a celldb older than this one (which created it in \
                 place); if nothing in the directory is needed, delete it and open again",
            ));
        }
        Err(e) => return Err(io(&marker)(e)),
    }
    let mut journals = 0;
    for entry in std::fs::read_dir(data).map_err(io(data))? {
        let path = entry.map_err(io(data))?.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            journals += 1;
        }
    }
    if journals == 0 {
        return Err(corrupt(
            data,
            "no journal file (`*.jnl`): fjall always keeps its active journal, so it was \
             deleted, and with it every write not yet flushed to the keyspaces' tables",
        ));
    }
    let torn = crate::journal::check(data)?;
    let keyspaces = data.join("keyspaces");
    let entries = std::fs::read_dir(&keyspaces).map_err(io(&keyspaces))?;
    let mut saw_meta = false;
    for entry in entries {
        let entry = entry.map_err(io(&keyspaces))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_file() {
            // fjall skips stray files here.
            continue;
        }
        let id = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u64>().ok());
        let Some(id) = id else {
            return Err(corrupt(
                &path,
                "not a keyspace directory (keyspace directories are named by number)",
            ));
        };
        if !kind.is_dir() {
            return Err(corrupt(&path, "a keyspace is not a directory"));
        }
        let current = path.join(CURRENT);
        if !current.exists() {
            if id == 0 {
                return Err(corrupt(
                    &current,
                    "fjall's metadata keyspace has no `current` manifest pointer; fjall would \
                     start an empty one and delete every keyspace as unreferenced",
                ));
            }
            // A keyspace whose creation was interrupted (fjall removes it); one that a
            // table needs is reported by `check_keyspaces`.
            continue;
        }
        saw_meta |= id == 0;
        check_manifest(&path, &current)?;
    }
    if !saw_meta {
        return Err(corrupt(
            &keyspaces.join("0"),
            "fjall's metadata keyspace is missing; fjall would start an empty one and delete \
             every keyspace as unreferenced",
        ));
    }
    Ok(torn)
}

/// Checks that `current` (u64 version id, u128 xxh3 checksum, u8 checksum type 0) names a
/// manifest file whose checksum matches.
fn check_manifest(keyspace: &Path, current: &Path) -> Result<()> {
    let bytes = std::fs::read(current).map_err(io(current))?;
    let Ok(bytes) = <[u8; 25]>::try_from(bytes.as_slice()) else {
        return Err(corrupt(
            current,
            format!("{} bytes, not the 25 of a manifest pointer", bytes.len()),
        ));
    };
    let (id, rest) = bytes.split_at(8);
    let (sum, kind) = rest.split_at(16);
    let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
    let expected = u128::from_le_bytes(sum.try_into().unwrap_or_default());
    if kind != [0] {
        return Err(corrupt(
            current,
            format!("unknown checksum type {}", kind[0]),
        ));
    }
    let manifest = keyspace.join(format!("v{id}"));
    let mut file = match File::open(&manifest) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(corrupt(
                current,
                format!(
                    "names manifest v{id}, which does not exist (the pointer or the manifest \
                     was damaged)"
                ),
            ));
        }
        Err(e) => return Err(io(&manifest)(e)),
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io(&manifest))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let found = hasher.digest128();
    if found != expected {
        return Err(corrupt(
            &manifest,
            format!(
                "the manifest's checksum is {found:032x}, `current` recorded {expected:032x}: \
                 the manifest (or its pointer) was damaged"
            ),
        ));
    }
    Ok(())
}

/// After fjall opened `data`: every keyspace celldb's metadata names must have been recovered
/// (`names`: for each table, its keyspaces). A missing one is [`Error::Corrupt`]: opening its
/// table would recreate it empty.
pub(crate) fn check_keyspaces(
    fjall: &fjall::Database,
    data: &Path,
    names: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    for (table, keyspace) in names {
        if !fjall.keyspace_exists(&keyspace) {
            return Err(Error::Corrupt {
                table,
                reason: format!(
                    "its keyspace `{keyspace}` is missing from {} (its directory under \
                     keyspaces/ was deleted or never recovered): opening the table would \
                     recreate it empty, so the database is not opened; restore the directory \
                     from a backup",
                    data.display()
                ),
            });
        }
    }
    Ok(())
}

/// Recreates fjall's own lock file in `data` if it is missing: it carries nothing, and fjall
/// refuses to open without it.
pub(crate) fn restore_fjall_lock(data: &Path) -> Result<()> {
    let path = data.join("lock");
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => File::options()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map(drop)
            .map_err(io(&path)),
        Err(e) => Err(io(&path)(e)),
    }
}

/// A private copy of `data` for a read-only open: fjall writes while it opens (journal
/// recovery, lock, cleanup), so tools open a view whose files fjall may change without
/// touching the database. Table and blob files, which fjall never writes in place, are hard
/// links (copies on another file system); everything else is copied.
pub(crate) fn shadow(data: &Path) -> Result<tempfile::TempDir> {
    let view = tempfile::Builder::new()
        .prefix("celldb-view-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    let target = view.path().join(DATA);
    copy_tree(data, &target, false)?;
    restore_fjall_lock(&target)?;
    Ok(view)
}

fn copy_tree(from: &Path, to: &Path, immutable: bool) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let source = entry.path();
        let dest: PathBuf = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&source))?;
        if kind.is_dir() {
            let name = entry.file_name();
            copy_tree(&source, &dest, name == "tables" || name == "blobs")?;
        } else if kind.is_file() {
            let linked = immutable && std::fs::hard_link(&source, &dest).is_ok();
            if !linked {
                std::fs::copy(&source, &dest).map_err(io(&source))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock released while another open waits for it is taken: the open does not fail
    /// because a holder (such as a child between its fork and its exec) let go a moment late.
    #[test]
    fn a_lock_released_while_an_open_waits_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), LockMode::Exclusive).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(held);
        });
        let taken = lock(dir.path(), LockMode::Exclusive);
        releaser.join().unwrap();
        assert!(taken.is_ok(), "{:?}", taken.err());
    }

    /// A lock that stays held is still an error, after the wait.
    #[test]
    fn a_lock_held_throughout_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path(), LockMode::Exclusive).unwrap();
        assert!(matches!(
            lock(dir.path(), LockMode::Exclusive),
            Err(Error::Locked { .. })
        ));
        assert!(matches!(
            lock(dir.path(), LockMode::Shared),
            Err(Error::Locked { .. })
        ));
    }
}
