//! Transactions and the operations on records: optimistic, snapshot-based, atomic across
//! tables and their indexes.
//!
//! A [`Tx`] reads from a fjall snapshot taken when it began, remembers what it read (point
//! reads and ranges), and buffers its writes (reads see the transaction's own writes). At commit
//! its [`WriteSet`] goes to the commit log, which re-checks the reads; if another writer changed
//! something the transaction read, the commit is rejected and [`Db::transaction`] runs the body
//! again on a fresh snapshot. Single operations (`insert`, `update`, …) are one-operation
//! transactions, so they get the same guarantees: a record and its index entries change together,
//! and a unique index holds under concurrent writers (two inserts of one email cannot both see it
//! free *and* both commit).
//!
//! The same code serves remote mode (a [`Db`] from [`Db::connect`]): a remote transaction's
//! reads go to a snapshot the server holds for it (the server records the read checks), and
//! its write-set is sent to the server's commit log. Everything typed — encoding, index
//! entries, unique checks, own writes — stays here, so both modes behave alike.

use crate::db::{Db, Ks, TableHandle};
use crate::engine::{Reader, WriteMap};
use crate::error::{Error, Result};
use crate::key::{Key, KeyArg};
use crate::table::{Durability, Table};
use cell_sdk::codec;
use fjall::Slice;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// How many times [`Db::transaction`] runs a body that keeps conflicting before giving up.
pub const MAX_ATTEMPTS: u32 = 64;

/// Optimistic attempts before a transaction runs alone (see [`Db::transaction`]).
const OPTIMISTIC_ATTEMPTS: u32 = 8;

/// Which way a transaction holds the database's gate; held for the guard's lifetime only.
#[allow(dead_code, reason = "the guards are held for their Drop, never read")]
enum Gate<'a> {
    Shared(tokio::sync::RwLockReadGuard<'a, ()>),
    Exclusive(tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// A transaction in progress, handed to the body of [`Db::transaction`]. Cheap to clone.
///
/// Reads see a consistent snapshot plus the transaction's own writes; writes are applied
/// atomically at commit, or not at all.
#[derive(Clone)]
pub struct Tx {
    state: Arc<Mutex<TxState>>,
}

struct TxState {
    db: Db,
    reader: Reader,
    /// Buffered writes per keyspace id, keyed by `Slice` so lookups by `&[u8]` need no
    /// allocation (`Slice` borrows as `[u8]`; keys up to 20 bytes are stored inline). A hash
    /// map, not a B-tree: the write path is hot and write order does not matter.
    writes: BTreeMap<u64, (Ks, WriteMap)>,
    sync: bool,
    /// Reused rkyv buffer.
    buffer: codec::Bytes,
    /// The read barrier of a raft member ran for this transaction (see `raft::member`).
    linearized: bool,
    /// The last table used, so a run of writes to one table skips the registry lookup.
    last_table: Option<(std::any::TypeId, Arc<TableHandle>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Update,
    Upsert,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    fn begin(db: &Db) -> Self {
        Self {
            state: Arc::new(Mutex::new(TxState {
                db: db.clone(),
                reader: Reader::begin(db),
                writes: BTreeMap::new(),
                sync: false,
                buffer: codec::Bytes::new(),
                linearized: false,
                last_table: None,
            })),
        }
    }

    async fn lock(&self) -> MutexGuard<'_, TxState> {
        self.state.lock().await
    }

    /// The record of `T` with primary key `key`.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when the stored bytes fail validation.
    pub async fn get<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<Option<T>> {
        let mut pk = Vec::new();
        key.encode_arg(&mut pk);
        let mut st = self.lock().await;
        let table = st.table::<T>().await?;
        match st.read(&table.records, &pk).await? {
            Some(bytes) => decode::<T>(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Inserts a new record. [`Error::AlreadyExists`] if its key is taken,
    /// [`Error::UniqueViolation`] if a unique field's value is.
    ///
    /// # Errors
    /// As above, plus storage and encoding errors.
    ///
    /// Returns the key, which for an `auto_inc` table given key `0` is the one assigned.
    pub async fn insert<T: Table>(&self, value: &T) -> Result<T::Key> {
        self.lock().await.put(value, Mode::Insert).await
    }

    /// Replaces an existing record (same key). [`Error::NotFound`] if there is none.
    ///
    /// # Errors
    /// As above, plus [`Error::UniqueViolation`], storage and encoding errors.
    pub async fn update<T: Table>(&self, value: &T) -> Result<()> {
        self.lock().await.put(value, Mode::Update).await.map(drop)
    }

    /// Inserts or replaces the record with `value`'s key.
    ///
    /// # Errors
    /// [`Error::UniqueViolation`], storage and encoding errors.
    pub async fn upsert<T: Table>(&self, value: &T) -> Result<()> {
        self.lock().await.put(value, Mode::Upsert).await.map(drop)
    }

    /// Deletes the record with `key` and its index entries; `true` if it existed.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when the stored record fails validation.
    pub async fn delete<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<bool> {
        let mut pk = Vec::new();
        key.encode_arg(&mut pk);
        self.lock().await.delete::<T>(pk).await
    }

    /// The records whose key lies in `range`, in key order.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] on a record that fails validation.
    pub async fn scan<T: Table>(&self, range: impl RangeBounds<T::Key>) -> Result<Vec<T>> {
        let start = encode_bound(range.start_bound());
        let end = encode_bound(range.end_bound());
        let mut st = self.lock().await;
        let table = st.table::<T>().await?;
        st.range(&table.records, start, end)
            .await?
            .into_iter()
            .map(|(_, v)| decode::<T>(&v))
            .collect()
    }

    /// Number of records of `T`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn count<T: Table>(&self) -> Result<usize> {
        let mut st = self.lock().await;
        let table = st.table::<T>().await?;
        Ok(st
            .range(&table.records, Bound::Unbounded, Bound::Unbounded)
            .await?
            .len())
    }

    /// Records whose index number `index` has the encoded value `value` (generated `by_*`).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] on bad bytes.
    #[doc(hidden)]
    pub async fn by_index<T: Table>(&self, index: usize, value: Vec<u8>) -> Result<Vec<T>> {
        self.lock().await.by_index::<T>(index, value).await
    }
}

impl TxState {
    async fn table<T: Table>(&mut self) -> Result<Arc<TableHandle>> {
        let id = std::any::TypeId::of::<T>();
        if let Some((last, handle)) = &self.last_table
            && *last == id
        {
            return Ok(handle.clone());
        }
        let handle = self.db.table::<T>().await?;
        if !self.linearized
            && crate::raft::member::is_replicated(&handle.records)
            && let Some(member) = self.db.member()
        {
            // The first raft table of this transaction: read at a linearizable point (on a
            // bounded-staleness member, a recent enough one; commits re-check the reads).
            Box::pin(member.read_barrier()).await?;
            self.reader.refresh(&self.db);
            self.linearized = true;
        }
        self.last_table = Some((id, handle.clone()));
        Ok(handle)
    }

    async fn read(&mut self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
        if let Some(value) = self.writes.get(&ks.id()).and_then(|(_, m)| m.get(key)) {
            return Ok(value.clone());
        }
        self.reader.point(ks, key).await
    }

    async fn range(
        &mut self,
        ks: &Ks,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Slice)>> {
        let mut merged = BTreeMap::new();
        self.reader.range(ks, &start, &end, &mut merged).await?;
        if let Some((_, own)) = self.writes.get(&ks.id()) {
            let bounds = (start.clone(), end.clone());
            for (k, value) in own {
                if bounds.contains(&k.to_vec()) {
                    match value {
                        Some(v) => merged.insert(k.to_vec(), v.clone()),
                        None => merged.remove(k.as_ref()),
                    };
                }
            }
        }
        Ok(merged.into_iter().collect())
    }

    fn write(&mut self, table: &TableHandle, ks: &Ks, key: Vec<u8>, value: Option<Slice>) {
        self.sync |= table.durability == Durability::Sync;
        self.writes
            .entry(ks.id())
            .or_insert_with(|| (ks.clone(), WriteMap::default()))
            .1
            .insert(Slice::from(key), value);
    }

    async fn put<T: Table>(&mut self, value: &T, mode: Mode) -> Result<T::Key> {
        let table = self.table::<T>().await?;
        let assigned;
        let value: &T = match self.allocate(&table, value, mode).await? {
            Some(with_key) => {
                assigned = with_key;
                &assigned
            }
            None => value,
        };
        let mut pk = Vec::with_capacity(16);
        value.key().encode_key(&mut pk);
        // An upsert into a table without indexes needs nothing of the old record: a blind
        // write, with no read to make (a round trip on a server or a cluster) or to re-check
        // at commit. Serializable all the same: its outcome does not depend on what it replaces.
        let old = if mode == Mode::Upsert && T::INDEXES.is_empty() {
            None
        } else {
            self.read(&table.records, &pk).await?
        };
        match (&old, mode) {
            (Some(_), Mode::Insert) => {
                return Err(Error::AlreadyExists {
                    table: T::TABLE.into(),
                });
            }
            (None, Mode::Update) => {
                return Err(Error::NotFound {
                    table: T::TABLE.into(),
                });
            }
            _ => {}
        }
        let old: Option<T> = old.map(|b| decode::<T>(&b)).transpose()?;
        for (i, def) in T::INDEXES.iter().enumerate() {
            let mut new_ik = Vec::new();
            value.encode_index(i, &mut new_ik);
            let old_ik = old.as_ref().map(|o| {
                let mut ik = Vec::new();
                o.encode_index(i, &mut ik);
                ik
            });
            if old_ik.as_deref() == Some(new_ik.as_slice()) {
                continue;
            }
            let ks = &table.indexes[i];
            if def.unique {
                if let Some(owner) = self.read(ks, &new_ik).await?
                    && owner.as_ref() != pk.as_slice()
                {
                    return Err(Error::UniqueViolation {
                        table: T::TABLE.into(),
                        index: def.name.into(),
                    });
                }
                if let Some(old_ik) = old_ik {
                    self.write(&table, ks, old_ik, None);
                }
                self.write(&table, ks, new_ik, Some(Slice::from(pk.as_slice())));
            } else {
                if let Some(mut old_ik) = old_ik {
                    old_ik.extend_from_slice(&pk);
                    self.write(&table, ks, old_ik, None);
                }
                new_ik.extend_from_slice(&pk);
                self.write(&table, ks, new_ik, Some(Slice::from(&[][..])));
            }
        }
        // One encoding buffer per transaction: allocation dominates small records.
        let buffer = std::mem::take(&mut self.buffer);
        let bytes = codec::encode_into(value, buffer).map_err(|e| Error::Encode {
            table: T::TABLE.into(),
            reason: e.to_string(),
        })?;
        let encoded = Slice::from(&bytes[..]);
        self.buffer = bytes;
        self.write(&table, &table.records, pk, Some(encoded));
        Ok(value.key().clone())
    }

    /// For an `auto_inc` table: assigns the next key to a record inserted with key `0`, and
    /// keeps the table's counter above every key written. The counter lives in the same
    /// write-set as the record, so a crash keeps both or neither (ids never repeat), and two
    /// concurrent allocations conflict on it, so they never hand out the same id.
    async fn allocate<T: Table>(
        &mut self,
        table: &TableHandle,
        value: &T,
        mode: Mode,
    ) -> Result<Option<T>> {
        let Some(given) = value.auto_key() else {
            return Ok(None);
        };
        let seq = table.seq.clone();
        let current = match self.read(&seq, T::TABLE.as_bytes()).await? {
            None => 0,
            Some(bytes) => {
                u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| Error::Corrupt {
                    table: T::TABLE.into(),
                    reason: "the auto_inc counter is not 8 bytes".into(),
                })?)
            }
        };
        let (key, replaced) = if given == 0 && mode != Mode::Update {
            let next = current.checked_add(1).ok_or_else(|| Error::Encode {
                table: T::TABLE.into(),
                reason: "the auto_inc counter is exhausted".into(),
            })?;
            (next, value.with_auto_key(next))
        } else {
            (given, None)
        };
        if key > current {
            let counter = Slice::from(&key.to_be_bytes()[..]);
            self.write(table, &seq, T::TABLE.as_bytes().to_vec(), Some(counter));
        }
        Ok(replaced)
    }

    async fn delete<T: Table>(&mut self, pk: Vec<u8>) -> Result<bool> {
        let table = self.table::<T>().await?;
        let Some(old) = self.read(&table.records, &pk).await? else {
            return Ok(false);
        };
        let old = decode::<T>(&old)?;
        for (i, def) in T::INDEXES.iter().enumerate() {
            let mut ik = Vec::new();
            old.encode_index(i, &mut ik);
            if !def.unique {
                ik.extend_from_slice(&pk);
            }
            let ks = table.indexes[i].clone();
            self.write(&table, &ks, ik, None);
        }
        let records = table.records.clone();
        self.write(&table, &records, pk, None);
        Ok(true)
    }

    async fn by_index<T: Table>(&mut self, index: usize, value: Vec<u8>) -> Result<Vec<T>> {
        let table = self.table::<T>().await?;
        let (Some(def), Some(ks)) = (T::INDEXES.get(index), table.indexes.get(index).cloned())
        else {
            return Ok(Vec::new());
        };
        let pks: Vec<Vec<u8>> = if def.unique {
            match self.read(&ks, &value).await? {
                Some(pk) => vec![pk.to_vec()],
                None => Vec::new(),
            }
        } else {
            let start = Bound::Included(value.clone());
            let end = prefix_end(&value);
            self.range(&ks, start, end)
                .await?
                .into_iter()
                .map(|(k, _)| k.get(value.len()..).unwrap_or_default().to_vec())
                .collect()
        };
        let mut out = Vec::with_capacity(pks.len());
        for pk in pks {
            match self.read(&table.records, &pk).await? {
                Some(bytes) => out.push(decode::<T>(&bytes)?),
                None => {
                    return Err(Error::Corrupt {
                        table: T::TABLE.into(),
                        reason: format!("index `{}` points at a missing record", def.name),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

fn encode_bound<K: Key>(bound: Bound<&K>) -> Bound<Vec<u8>> {
    let enc = |k: &K| {
        let mut out = Vec::new();
        k.encode_key(&mut out);
        out
    };
    match bound {
        Bound::Included(k) => Bound::Included(enc(k)),
        Bound::Excluded(k) => Bound::Excluded(enc(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

pub(crate) fn decode<T: Table>(bytes: &[u8]) -> Result<T> {
    codec::from_bytes::<T>(bytes).map_err(|e| Error::Corrupt {
        table: T::TABLE.into(),
        reason: e.to_string(),
    })
}

impl Db {
    /// Runs `body` as one transaction: everything it writes commits atomically (across tables
    /// and their indexes) or not at all.
    ///
    /// **The body may run more than once.** Concurrency is optimistic: if another writer
    /// changed something the body read before it commits, the commit is rejected and the body
    /// runs again on fresh data. After 8 conflicts it runs alone (other transactions wait for
    /// it), so a body cannot starve behind faster writers. Keep side effects (sending mail,
    /// printing) out of the body, or make them idempotent. An `Err` from the body aborts
    /// without writing anything (see [`Error::abort`]).
    ///
    /// Do not start another transaction (or a single-operation write such as [`Db::insert`])
    /// inside a body: use the [`Tx`] it receives. A nested transaction would wait for the
    /// gate the outer one holds.
    ///
    /// # Errors
    /// The body's error, [`Error::Conflict`], or a commit error.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> celldb::Result<()> {
    /// let db = celldb::Db::temp()?;
    /// let n = db.transaction(|tx| async move { Ok(1 + 1) }).await?;
    /// assert_eq!(n, 2);
    /// # Ok(()) }
    /// ```
    pub async fn transaction<R, F, Fut>(&self, mut body: F) -> Result<R>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            // Starvation guard: a body that keeps losing runs alone. Every transaction holds
            // the gate shared (uncontended: one atomic operation); after `OPTIMISTIC_ATTEMPTS`
            // conflicts it takes the gate exclusively, so nothing can commit under it and its
            // next attempt cannot conflict with another transaction.
            let _gate = if attempt <= OPTIMISTIC_ATTEMPTS {
                Gate::Shared(self.inner.gate.read().await)
            } else {
                Gate::Exclusive(self.inner.gate.write().await)
            };
            let tx = Tx::begin(self);
            let out = match body(tx.clone()).await {
                Ok(out) => out,
                Err(e) if attempt < MAX_ATTEMPTS && self.read_stale_data(&tx).await => {
                    // The body failed on a view that no longer holds (on a cluster, reads come
                    // from more than one state): its error may be an artefact. Re-run it.
                    tracing::debug!(error = %e, "celldb: a transaction failed on stale reads; re-running it");
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.commit_tx(tx).await {
                Ok(()) => return Ok(out),
                Err(Error::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    tokio::task::yield_now().await;
                }
                Err(Error::Conflict { .. }) => return Err(Error::Conflict { attempts: attempt }),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// After a body failed: did it read anything that has changed since? Only a cluster's
    /// transactions can tell (they validate their reads); every other engine's reads are one
    /// snapshot, and the answer is no.
    async fn read_stale_data(&self, tx: &Tx) -> bool {
        let reader = {
            let mut guard = tx.lock().await;
            let emptied = guard.reader.emptied();
            std::mem::replace(&mut guard.reader, emptied)
        };
        matches!(
            crate::engine::finish_read_only(self, reader).await,
            Err(Error::Conflict { .. })
        )
    }

    async fn commit_tx(&self, tx: Tx) -> Result<()> {
        let state = {
            let mut guard = tx.lock().await;
            let empty = TxState {
                db: guard.db.clone(),
                reader: guard.reader.emptied(),
                writes: BTreeMap::new(),
                sync: false,
                buffer: codec::Bytes::new(),
                linearized: false,
                last_table: None,
            };
            std::mem::replace(&mut *guard, empty)
        };
        if state.writes.is_empty() {
            // Read-only: nothing to write. Its snapshot was consistent, except on a cluster,
            // where its reads are re-checked. (A remote one releases its server-side snapshot
            // when `state` drops.)
            return crate::engine::finish_read_only(self, state.reader).await;
        }
        crate::engine::commit(self, state.reader, state.writes, state.sync).await
    }

    /// The record of `T` with primary key `key` (latest committed state).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when the stored bytes fail validation.
    pub async fn get<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<Option<T>> {
        let table = self.table::<T>().await?;
        let mut pk = Vec::with_capacity(16);
        key.encode_arg(&mut pk);
        match crate::engine::latest(self, &table.records, &pk).await? {
            Some(bytes) => decode::<T>(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Inserts a new record (see [`Tx::insert`]); returns once it is durable.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::UniqueViolation`], storage and encoding errors.
    ///
    /// Returns the key (for an `auto_inc` table given key `0`, the one assigned).
    pub async fn insert<T: Table>(&self, value: &T) -> Result<T::Key> {
        self.transaction(|tx| async move { tx.insert(value).await })
            .await
    }

    /// Replaces an existing record (see [`Tx::update`]).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::UniqueViolation`], storage and encoding errors.
    pub async fn update<T: Table>(&self, value: &T) -> Result<()> {
        self.transaction(|tx| async move { tx.update(value).await })
            .await
    }

    /// Inserts or replaces a record (see [`Tx::upsert`]).
    ///
    /// # Errors
    /// [`Error::UniqueViolation`], storage and encoding errors.
    pub async fn upsert<T: Table>(&self, value: &T) -> Result<()> {
        self.transaction(|tx| async move { tx.upsert(value).await })
            .await
    }

    /// Deletes a record and its index entries; `true` if it existed.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn delete<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<bool> {
        let mut pk = Vec::new();
        key.encode_arg(&mut pk);
        self.transaction(|tx| {
            let pk = pk.clone();
            async move { tx.lock().await.delete::<T>(pk).await }
        })
        .await
    }

    /// The records whose key lies in `range`, in key order.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] on bad bytes.
    pub async fn scan<T: Table>(&self, range: impl RangeBounds<T::Key>) -> Result<Vec<T>> {
        Tx::begin(self).scan::<T>(range).await
    }

    /// Number of records of `T`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn count<T: Table>(&self) -> Result<usize> {
        let table = self.table::<T>().await?;
        crate::engine::count(self, &table.records).await
    }

    /// Records whose index number `index` has the encoded value `value` (generated `by_*`).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] on bad bytes.
    #[doc(hidden)]
    pub async fn by_index<T: Table>(&self, index: usize, value: Vec<u8>) -> Result<Vec<T>> {
        Tx::begin(self).by_index::<T>(index, value).await
    }
}

#[cfg(test)]
mod tests {
    use crate::Db;
    use cell_sdk::protein;

    cell_sdk::cell_remote!(DB = "celldb");

    #[protein]
    #[DB::persist]
    struct Counter {
        #[DB::key]
        name: String,
        value: u64,
    }

    /// With a recent-writes map of 4 entries (unit-test size), most validations fall back to
    /// re-reading storage: no update may be lost either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_lost_update_when_validation_rereads_storage() {
        let db = Db::temp().unwrap();
        db.insert(&Counter {
            name: "c".into(),
            value: 0,
        })
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for t in 0..6u64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10u64 {
                    // Unrelated writes keep pushing the horizon of the recent-writes map.
                    db.insert(&Counter {
                        name: format!("noise-{t}-{i}"),
                        value: i,
                    })
                    .await
                    .unwrap();
                    db.transaction(|tx| async move {
                        let mut c = tx.get::<Counter>("c").await?.unwrap();
                        c.value += 1;
                        tx.update(&c).await
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(db.get::<Counter>("c").await.unwrap().unwrap().value, 60);
    }
}
