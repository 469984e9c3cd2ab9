//! The local engine: one fjall database directory, its lock, the metadata and `auto_inc`
//! keyspaces, and its [`LocalLog`]. Opening it checks what `disk` and `journal` cannot (the
//! keyspaces the metadata names are all there); registering a table writes or compares its
//! [`TableMeta`].

use crate::db::{Ks, Options, TableHandle};
use crate::error::{Error, Result};
use crate::log::{CommitLog, LocalLog, Write, WriteSet};
use crate::schema::{
    META_KEYSPACE, SEQ_KEYSPACE, TableMeta, decode_meta, index_keyspace, meta_of, records_keyspace,
    same_schema,
};
use crate::table::{Durability, Table};
use cell_sdk::codec;
use fjall::{Keyspace, KeyspaceCreateOptions, Slice};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open local database directory.
pub(crate) struct Local {
    pub(crate) fjall: fjall::Database,
    pub(crate) meta: Keyspace,
    pub(crate) seq: Keyspace,
    pub(crate) log: LocalLog,
    pub(crate) registering: Mutex<()>,
    pub(crate) path: PathBuf,
    pub(crate) options: Options,
    /// Set when this database is a raft group member (`RaftNode`): its raft tables go through
    /// the group.
    pub(crate) member: std::sync::OnceLock<crate::raft::member::Member>,
    // Field order matters: fjall closes before the lock is released, the temp dir goes last.
    pub(crate) _lock: File,
    pub(crate) _temp: Option<tempfile::TempDir>,
}

impl Local {
    /// Opens fjall in `data` (the database's `data` directory, or a read-only view of it)
    /// under `lock`, and checks that every keyspace the metadata names is there.
    pub(crate) fn open(
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
        Ok(Local {
            fjall,
            meta,
            seq,
            log,
            registering: Mutex::new(()),
            path: path.to_path_buf(),
            options,
            member: std::sync::OnceLock::new(),
            _lock: lock,
            _temp: temp,
        })
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
    pub(crate) fn register<T: Table>(&self) -> Result<TableHandle> {
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
