//! [`Db`]: the handle users hold, whichever engine is behind it (the local engine in `local`,
//! or a celldb server through `remote`), and the tables it has opened.

use crate::error::{Error, Result};
use crate::local::Local;
use crate::log::LogStats;
use crate::schema::{META_KEYSPACE, SEQ_KEYSPACE, TableMeta, decode_meta, records_keyspace};
use crate::table::{Durability, Table};
use fjall::{Keyspace, KeyspaceCreateOptions, Slice};
use std::any::TypeId;
use std::collections::HashMap;

use std::path::Path;
use std::sync::{Arc, RwLock};

/// A keyspace as a transaction names it: a local fjall keyspace, or the id of a keyspace on a
/// celldb server (the server's fjall keyspace id, handed out by `open_table`).
#[derive(Clone)]
pub(crate) enum Ks {
    Local(Keyspace),
    Remote(u64),
    /// A replicated keyspace of a cluster, by the client's number for its name.
    Cluster(u64),
}

impl Ks {
    /// The keyspace id (fjall's, on whichever side holds the keyspace).
    pub(crate) fn id(&self) -> u64 {
        match self {
            Ks::Local(ks) => ks.id(),
            Ks::Remote(id) | Ks::Cluster(id) => *id,
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
#[expect(
    clippy::large_enum_variant,
    reason = "one per `Db`, inside its `Arc`: the size is paid once"
)]
pub(crate) enum Backend {
    Local(Local),
    Remote(Arc<crate::remote::Client>),
    Cluster(Arc<crate::raft::cluster::client::Client>),
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
            Backend::Cluster(client) => f
                .debug_struct("Db")
                .field("cluster", &client.describe())
                .finish_non_exhaustive(),
        }
    }
}

impl Db {
    /// Opens (or creates) the database in directory `path`, with default [`Options`].
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds the directory (after trying again for two
    /// seconds: a holder may be about to let go); I/O and storage errors.
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
        let local = Local::open(path, &view_data, Options::default(), lock, Some(view), true)?;
        Ok(Self::with_backend(Backend::Local(local)))
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
        let local = Local::open(path, &data, options, lock, temp, false)?;
        Ok(Self::with_backend(Backend::Local(local)))
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

    /// The raft side of a member database (see `raft::member`), if this is one.
    pub(crate) fn member(&self) -> Option<&crate::raft::member::Member> {
        self.local().and_then(|local| local.member.get())
    }

    /// The local engine, or `None` for a handle on a celldb server.
    pub(crate) fn local(&self) -> Option<&Local> {
        match &self.inner.backend {
            Backend::Local(local) => Some(local),
            Backend::Remote(_) | Backend::Cluster(_) => None,
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
            Backend::Remote(_) | Backend::Cluster(_) => Path::new(""),
        }
    }

    /// Commit-log counters (fsyncs, committed write-sets, conflicts) of this process's log.
    /// A handle on a server has no log of its own: its counters stay zero (the server's are
    /// in its `stats` call, see `docs/celldb.md`).
    pub fn stats(&self) -> &LogStats {
        static NONE: std::sync::LazyLock<LogStats> = std::sync::LazyLock::new(LogStats::default);
        match &self.inner.backend {
            Backend::Local(local) => local.log.stats(),
            Backend::Remote(_) | Backend::Cluster(_) => &NONE,
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
        // A raft table opens through the group on a member's database, and refuses to open
        // anywhere else rather than silently living on one node.
        // A cluster client keeps every table in the group: it has no directory of its own.
        if let Backend::Cluster(client) = &self.inner.backend {
            let handle = Arc::new(Box::pin(client.open_table::<T>()).await?);
            self.inner
                .tables
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, handle.clone());
            return Ok(handle);
        }
        if T::REPLICATE == crate::Replicate::Raft {
            if let Backend::Local(local) = &self.inner.backend
                && let Some(member) = local.member.get()
            {
                // Boxed: raft's futures are deep, and every `DB::insert` in a user's crate
                // would otherwise carry them in its own layout (rustc's query depth limit).
                let handle = Arc::new(Box::pin(member.register::<T>(&local.fjall)).await?);
                self.inner
                    .tables
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, handle.clone());
                return Ok(handle);
            }
            return Err(Error::NotReplicated {
                table: T::TABLE.to_string(),
                database: match &self.inner.backend {
                    Backend::Local(local) => local.path.display().to_string(),
                    Backend::Remote(client) => client.endpoint().to_string(),
                    Backend::Cluster(client) => client.describe(),
                },
            });
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
            Backend::Cluster(_) => {
                return Err(Error::Commit(
                    "internal error: a cluster table reached the local path".into(),
                ));
            }
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
