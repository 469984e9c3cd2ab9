//! [`Db`]: an open database directory — fjall, its lock, its tables and its commit log.

use crate::error::{Error, Result};
use crate::log::{CommitLog, LocalLog, LogStats, Write, WriteSet};
use crate::table::{Durability, Table};
use cell_sdk::{Fingerprint, codec, protein};
use fjall::{Keyspace, KeyspaceCreateOptions, Slice};
use std::any::TypeId;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The keyspace holding one [`TableMeta`] per table.
const META_KEYSPACE: &str = "celldb.meta";
/// The keyspace holding `auto_inc` counters (table → the highest key written, big-endian `u64`).
const SEQ_KEYSPACE: &str = "celldb.seq";
/// Version of the on-disk layout (keyspace names, key encodings, metadata format).
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// What the database records about a table, to detect a changed type on open.
#[protein]
pub struct TableMeta {
    /// Layout version that wrote the table.
    pub layout: u32,
    /// Structural fingerprint of the record type.
    pub fingerprint: u64,
    /// The record type's structure (`struct { id: u64, email: String }`).
    pub describe: String,
    /// The record type's name when the table was last opened.
    pub type_name: String,
    /// The key type (`u64`).
    pub key_type: String,
    /// Fingerprint of the key type.
    pub key_fingerprint: u64,
    /// Secondary indexes: `(field, unique)`.
    pub indexes: Vec<(String, bool)>,
}

/// A keyspace as a transaction names it: a local fjall keyspace, or the id of a keyspace on a
/// celldb server (the server's fjall keyspace id, handed out by `open_table`).
#[derive(Clone)]
pub(crate) enum Ks {
    Local(Keyspace),
    Remote(u64),
}

impl Ks {
    /// The keyspace id (fjall's, on whichever side holds the keyspace).
    pub(crate) fn id(&self) -> u64 {
        match self {
            Ks::Local(ks) => ks.id(),
            Ks::Remote(id) => *id,
        }
    }
}

/// An open table: its record keyspace, one keyspace per index, and the `auto_inc` counters.
pub(crate) struct TableHandle {
    pub(crate) records: Ks,
    pub(crate) indexes: Vec<Ks>,
    pub(crate) seq: Ks,
    pub(crate) durability: Durability,
}

/// Settings for [`Db::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of tables that do not set their own (default [`Durability::Sync`]).
    pub durability: Durability,
    /// fjall block cache size in bytes (default 32 MiB).
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A handle to an open database. Cheap to clone; the directory closes when the last clone drops.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> celldb::Result<()> {
/// let db = celldb::Db::temp()?;
/// assert!(db.path().exists());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

/// What every handle has, whichever engine is behind it.
pub(crate) struct Inner {
    pub(crate) backend: Backend,
    tables: RwLock<HashMap<TypeId, Arc<TableHandle>>>,
    /// Shared by every running transaction; exclusive for one that kept conflicting.
    pub(crate) gate: tokio::sync::RwLock<()>,
}

/// The engine behind a [`Db`]: the local fjall directory, or a celldb server. Typed work
/// (encoding, index maintenance, unique checks, own writes) happens above it, in `tx`, for both.
pub(crate) enum Backend {
    Local(Local),
    Remote(crate::remote::Client),
}

/// An open local database directory.
pub(crate) struct Local {
    pub(crate) fjall: fjall::Database,
    pub(crate) meta: Keyspace,
    pub(crate) seq: Keyspace,
    pub(crate) log: LocalLog,
    registering: Mutex<()>,
    path: PathBuf,
    options: Options,
    // Field order matters: fjall closes before the lock is released, the temp dir goes last.
    _lock: File,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.backend {
            Backend::Local(local) => f
                .debug_struct("Db")
                .field("path", &local.path)
                .finish_non_exhaustive(),
            Backend::Remote(client) => f
                .debug_struct("Db")
                .field("remote", &client.endpoint().to_string())
                .finish_non_exhaustive(),
        }
    }
}

impl Db {
    /// Opens (or creates) the database in directory `path`, with default [`Options`].
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds the directory; I/O and storage errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default())
    }

    /// Opens (or creates) the database in `path` with `options`.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        Self::open_inner(path.as_ref(), options, None)
    }

    /// A fresh database in a new temporary directory (on disk, not tmpfs), deleted on drop.
    /// Each call is a different database: parallel tests never share one.
    ///
    /// # Errors
    /// When the directory cannot be created or opened.
    pub fn temp() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("celldb-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let path = dir.path().to_path_buf();
        Self::open_inner(&path, Options::default(), Some(dir))
    }

    /// Opens the database in `path` for reading only (`celldb inspect` and `dump`): nothing
    /// in the directory is created or changed. fjall writes while it opens (journal recovery,
    /// its lock, cleanups), so it opens a private view: the files it may write are copied to
    /// a temporary directory, its immutable table files are linked there. The lock is taken
    /// shared: several readers at once, none while a process has the database open.
    ///
    /// # Errors
    /// [`Error::NotADatabase`] when `path` holds no celldb database; [`Error::Locked`] while
    /// another process has it open; [`Error::Corrupt`], I/O and storage errors.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let not = |reason: &str| Error::NotADatabase {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if !path.is_dir() {
            return Err(not("no such directory"));
        }
        if !crate::disk::exists(path) {
            return Err(not(if path.join("data.creating").exists() {
                "its creation was interrupted before it was complete (opening it for writing \
                 creates it again)"
            } else {
                "no `data` directory"
            }));
        }
        if !path.join(crate::disk::LOCK).exists() {
            return Err(not("no `LOCK` file"));
        }
        let lock = crate::disk::lock(path, crate::disk::LockMode::Shared)?;
        let data = path.join(crate::disk::DATA);
        let torn = crate::disk::validate(&data)?;
        let view = crate::disk::shadow(&data)?;
        let view_data = view.path().join(crate::disk::DATA);
        crate::journal::cut_torn_tails(&view_data, &torn)?;
        Self::open_fjall(path, &view_data, Options::default(), lock, Some(view), true)
    }

    fn open_inner(path: &Path, options: Options, temp: Option<tempfile::TempDir>) -> Result<Self> {
        crate::disk::prepare(path)?;
        let lock = crate::disk::lock(path, crate::disk::LockMode::Exclusive)?;
        // A new database appears whole or not at all (see `disk`).
        crate::disk::create_if_new(path, options.cache_bytes, &[META_KEYSPACE, SEQ_KEYSPACE])?;
        let data = path.join(crate::disk::DATA);
        // fjall truncates a journal at the first entry it cannot read, silently, and trusts
        // its manifests: refuse to open damaged ones (see `disk` and `journal`).
        let torn = crate::disk::validate(&data)?;
        crate::journal::cut_torn_tails(&data, &torn)?;
        crate::disk::restore_fjall_lock(&data)?;
        Self::open_fjall(path, &data, options, lock, temp, false)
    }

    fn open_fjall(
        path: &Path,
        data: &Path,
        options: Options,
        lock: File,
        temp: Option<tempfile::TempDir>,
        read_only: bool,
    ) -> Result<Self> {
        let shown = path.join(crate::disk::DATA);
        let fjall = fjall::Database::builder(data)
            .cache_size(options.cache_bytes)
            .manual_journal_persist(true)
            .open()
            .map_err(|e| Error::storage(format!("opening {}", shown.display()), e))?;
        let names = fjall.list_keyspace_names();
        let has = |name: &str| fjall.keyspace_exists(name);
        if !has(META_KEYSPACE) && (read_only || !names.is_empty()) {
            return Err(Error::Corrupt {
                table: "meta".into(),
                reason: format!(
                    "celldb's metadata keyspace `{META_KEYSPACE}` is missing from {} though \
                     it holds {} other keyspace(s): its directory was deleted",
                    shown.display(),
                    names.len()
                ),
            });
        }
        let open = |name: &str| {
            fjall
                .keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| Error::storage(format!("opening keyspace {name}"), e))
        };
        let meta = open(META_KEYSPACE)?;
        if !has(SEQ_KEYSPACE) && !meta.is_empty()? {
            return Err(Error::Corrupt {
                table: "meta".into(),
                reason: format!(
                    "the `auto_inc` counters' keyspace `{SEQ_KEYSPACE}` is missing from {}: \
                     its directory was deleted",
                    shown.display()
                ),
            });
        }
        let seq = open(SEQ_KEYSPACE)?;
        // Every keyspace the metadata names must be there (metadata that does not decode is
        // reported when its table is opened).
        let mut expected = Vec::new();
        for guard in meta.iter() {
            let (key, value) = guard
                .into_inner()
                .map_err(|e| Error::storage("reading celldb's metadata", e))?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let Ok(stored) = codec::from_bytes::<TableMeta>(&value) else {
                continue;
            };
            expected.push((name.clone(), records_keyspace(&name)));
            for (index, _) in &stored.indexes {
                expected.push((name.clone(), index_keyspace(&name, index)));
            }
        }
        crate::disk::check_keyspaces(&fjall, &shown, expected)?;
        let log = LocalLog::start(fjall.clone())?;
        Ok(Self::with_backend(Backend::Local(Local {
            fjall,
            meta,
            seq,
            log,
            registering: Mutex::new(()),
            path: path.to_path_buf(),
            options,
            _lock: lock,
            _temp: temp,
        })))
    }

    pub(crate) fn with_backend(backend: Backend) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                tables: RwLock::new(HashMap::new()),
                gate: tokio::sync::RwLock::new(()),
            }),
        }
    }

    /// The local engine, or `None` for a handle on a celldb server.
    pub(crate) fn local(&self) -> Option<&Local> {
        match &self.inner.backend {
            Backend::Local(local) => Some(local),
            Backend::Remote(_) => None,
        }
    }

    /// The local engine, or [`Error::Remote`] naming `what` is not available over the wire.
    fn local_only(&self, what: &str) -> Result<&Local> {
        self.local().ok_or_else(|| {
            Error::Remote(format!(
                "{what} reads the database directory and is not available through a celldb \
                 server; run `celldb inspect` on the server's directory instead"
            ))
        })
    }

    /// True when this handle talks to a celldb server ([`Db::connect`]).
    pub fn is_remote(&self) -> bool {
        self.local().is_none()
    }

    /// The database directory; for a handle on a server ([`Db::connect`]), an empty path
    /// (the directory belongs to the server).
    pub fn path(&self) -> &Path {
        match &self.inner.backend {
            Backend::Local(local) => &local.path,
            Backend::Remote(_) => Path::new(""),
        }
    }

    /// Commit-log counters (fsyncs, committed write-sets, conflicts) of this process's log.
    /// A handle on a server has no log of its own: its counters stay zero (the server's are
    /// in its `stats` call, see `docs/celldb.md`).
    pub fn stats(&self) -> &LogStats {
        static NONE: std::sync::LazyLock<LogStats> = std::sync::LazyLock::new(LogStats::default);
        match &self.inner.backend {
            Backend::Local(local) => local.log.stats(),
            Backend::Remote(_) => &NONE,
        }
    }

    /// Every table recorded in this database, as stored in its metadata.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when metadata fails validation; [`Error::Remote`] on a handle on a
    /// server.
    pub fn tables(&self) -> Result<Vec<(String, TableMeta)>> {
        let local = self.local_only("listing tables")?;
        let mut out = Vec::new();
        for guard in local.meta.iter() {
            let (key, value) = guard
                .into_inner()
                .map_err(|e| Error::storage("reading celldb's metadata", e))?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let meta = decode_meta(&name, &value)?;
            out.push((name, meta));
        }
        Ok(out)
    }

    /// Raw records of a table by name: `(encoded key, rkyv bytes)`, for tools (`celldb dump`).
    ///
    /// # Errors
    /// Storage errors; an unknown table gives an empty list; [`Error::Remote`] on a handle on
    /// a server.
    pub fn raw_records(&self, table: &str) -> Result<Vec<(Slice, Slice)>> {
        let local = self.local_only("dumping records")?;
        let name = records_keyspace(table);
        if !local.fjall.keyspace_exists(&name) {
            return Ok(Vec::new());
        }
        let ks = local
            .fjall
            .keyspace(&name, KeyspaceCreateOptions::default)
            .map_err(|e| Error::storage(format!("opening keyspace {name}"), e))?;
        ks.iter()
            .map(|g| {
                g.into_inner()
                    .map_err(|e| Error::storage(format!("reading table {table}"), e))
            })
            .collect()
    }

    /// Runs `future` with this database as the *current* one: the free functions
    /// (`DB::insert`, `User::get`, …) inside it use `self` instead of the default database.
    ///
    /// The returned future does not borrow `self`, so it can be spawned.
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        crate::context::CURRENT.scope(self.clone(), future)
    }

    /// Opens (or returns the already open) table of `T`, checking its stored fingerprint.
    pub(crate) async fn table<T: Table>(&self) -> Result<Arc<TableHandle>> {
        let id = TypeId::of::<T>();
        if let Some(handle) = self.cached_table(id) {
            return Ok(handle);
        }
        let handle = match &self.inner.backend {
            Backend::Local(local) => {
                let _registering = local
                    .registering
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(handle) = self.cached_table(id) {
                    return Ok(handle);
                }
                Arc::new(local.register::<T>()?)
            }
            // Two tasks opening one table at once both ask the server; it answers both alike.
            Backend::Remote(client) => Arc::new(client.open_table::<T>().await?),
        };
        self.inner
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, handle.clone());
        Ok(handle)
    }

    fn cached_table(&self, id: TypeId) -> Option<Arc<TableHandle>> {
        self.inner
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }
}

/// What [`Local::open_raw`] found for a table.
pub(crate) enum Opened {
    /// The stored metadata matches (or the table is new and its metadata was written).
    Ready,
    /// The stored metadata differs: the table needs a migration from `stored` (or is refused).
    Differs(TableMeta),
}

/// The keyspaces of one table, opened locally.
pub(crate) struct RawTable {
    pub(crate) records: Keyspace,
    pub(crate) indexes: Vec<Keyspace>,
}

impl Local {
    fn register<T: Table>(&self) -> Result<TableHandle> {
        let current = meta_of::<T>();
        let (raw, opened) = self.open_raw(T::TABLE, &current)?;
        if let Opened::Differs(stored) = opened {
            let migrated =
                crate::migrate::upgrade::<T>(self, &raw.records, &raw.indexes, &stored, &current)?;
            self.write_meta(T::TABLE, &current, migrated)?;
        }
        Ok(TableHandle {
            records: Ks::Local(raw.records),
            indexes: raw.indexes.into_iter().map(Ks::Local).collect(),
            seq: Ks::Local(self.seq.clone()),
            durability: T::DURABILITY.unwrap_or(self.options.durability),
        })
    }

    /// Opens a table's keyspaces by name and compares its stored metadata with `current`
    /// (writing it when the table is new or only the type's name changed). Shared by local
    /// tables and by the server, which knows tables only by their metadata.
    pub(crate) fn open_raw(&self, table: &str, current: &TableMeta) -> Result<(RawTable, Opened)> {
        let fjall = &self.fjall;
        let stored = match self
            .meta
            .get(table)
            .map_err(|e| Error::storage(format!("reading the metadata of table {table}"), e))?
        {
            Some(bytes) => Some(decode_meta(table, &bytes)?),
            None => None,
        };
        let open = |name: String| {
            // A stored table's keyspaces were checked when the database opened; one that is
            // gone now (it cannot be, short of a bug) must not be recreated empty.
            if let Some(stored) = &stored
                && !fjall.keyspace_exists(&name)
                && (name == records_keyspace(table)
                    || stored
                        .indexes
                        .iter()
                        .any(|(i, _)| index_keyspace(table, i) == name))
            {
                return Err(Error::Corrupt {
                    table: table.to_string(),
                    reason: format!("its keyspace `{name}` is missing"),
                });
            }
            fjall
                .keyspace(&name, KeyspaceCreateOptions::default)
                .map_err(|e| Error::storage(format!("opening keyspace {name} of table {table}"), e))
        };
        let records = open(records_keyspace(table))?;
        let indexes = current
            .indexes
            .iter()
            .map(|(name, _)| open(index_keyspace(table, name)))
            .collect::<Result<Vec<_>>>()?;
        let opened = match stored {
            None => {
                self.write_meta(table, current, Vec::new())?;
                Opened::Ready
            }
            Some(stored) if same_schema(&stored, current) => {
                if stored.type_name != current.type_name {
                    // A renamed Rust type with the same structure: keep the metadata current.
                    self.write_meta(table, current, Vec::new())?;
                }
                Opened::Ready
            }
            Some(stored) => Opened::Differs(stored),
        };
        Ok((RawTable { records, indexes }, opened))
    }

    /// True when table `table` has stored metadata.
    pub(crate) fn has_table(&self, table: &str) -> Result<bool> {
        self.meta
            .contains_key(table)
            .map_err(|e| Error::storage(format!("reading the metadata of table {table}"), e))
    }

    /// How many tables have stored metadata.
    pub(crate) fn table_count(&self) -> Result<usize> {
        self.meta
            .len()
            .map_err(|e| Error::storage("counting celldb's tables", e))
    }

    /// Writes the table's metadata (plus `writes`, a migration) durably through the log.
    pub(crate) fn write_meta(
        &self,
        table: &str,
        meta: &TableMeta,
        mut writes: Vec<Write>,
    ) -> Result<()> {
        let bytes = codec::to_bytes(meta).map_err(|e| Error::Encode {
            table: "meta".into(),
            reason: e.to_string(),
        })?;
        writes.push(Write {
            keyspace: self.meta.clone(),
            key: Slice::from(table.as_bytes()),
            value: Some(Slice::from(&bytes[..])),
        });
        let ws = WriteSet {
            distinct_keys: false,
            version: self.log.version(),
            reads: Vec::new(),
            writes,
            durability: Durability::Sync,
        };
        commit_blocking(&self.log, ws)
    }
}

/// Submits `ws` and waits on this thread (used while registering a table).
pub(crate) fn commit_blocking(log: &dyn CommitLog, ws: WriteSet) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    log.submit(
        ws,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv()
        .map_err(|_| Error::Commit("the commit thread has stopped".into()))?
        .map(|_| ())
}

pub(crate) fn records_keyspace(table: &str) -> String {
    format!("t.{table}")
}

pub(crate) fn index_keyspace(table: &str, index: &str) -> String {
    format!("i.{table}.{index}")
}

fn decode_meta(table: &str, bytes: &[u8]) -> Result<TableMeta> {
    codec::from_bytes::<TableMeta>(bytes).map_err(|e| Error::Corrupt {
        table: format!("meta of {table}"),
        reason: e.to_string(),
    })
}

pub(crate) fn meta_of<T: Table>() -> TableMeta {
    TableMeta {
        layout: LAYOUT_VERSION,
        fingerprint: T::FINGERPRINT,
        describe: T::describe(),
        type_name: T::type_name(),
        key_type: <T::Key as Fingerprint>::type_name(),
        key_fingerprint: <T::Key as Fingerprint>::FINGERPRINT,
        indexes: T::INDEXES
            .iter()
            .map(|d| (d.name.to_string(), d.unique))
            .collect(),
    }
}

pub(crate) fn same_schema(a: &TableMeta, b: &TableMeta) -> bool {
    a.layout == b.layout
        && a.fingerprint == b.fingerprint
        && a.key_fingerprint == b.key_fingerprint
        && a.indexes == b.indexes
}
