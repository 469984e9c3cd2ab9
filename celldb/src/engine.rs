//! The one place that matches on the engine behind a [`Db`]: where a transaction's reads come
//! from, where its write-set goes, and the reads outside transactions.
//!
//! `tx` does every typed thing (encoding, index entries, unique checks, own writes) the same
//! way for every engine and calls this module for storage. An engine is a [`Backend`] variant,
//! the [`Ks`] handles its tables are made of, and a [`Reader`] variant; a new engine (a raft
//! group) adds one of each and the arms below, and nothing in `tx` changes. Handles never
//! cross engines: a `Db`'s tables are opened by its own backend, so the pairs below always
//! match, and a mismatch is reported as the internal error it would be.

use crate::db::{Backend, Db, Ks};
use crate::error::{Error, Result};
use crate::log::{CommitLog, RangeDigest, ReadCheck, Write, WriteSet};
use crate::raft::cluster::client::ClusterTx;
use crate::remote::RemoteTx;
use crate::table::Durability;
use crate::wire::WireWrite;
use fjall::{Readable, Slice};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A transaction's buffered writes to one keyspace.
pub(crate) type WriteMap = HashMap<Slice, Option<Slice>, crate::log::KeyHashBuild>;

/// Where a transaction's reads come from.
pub(crate) enum Reader {
    /// A local fjall snapshot, the commit version it was taken at, and the read checks of
    /// what was read through it.
    Local {
        snapshot: fjall::Snapshot,
        version: u64,
        reads: Vec<ReadCheck>,
    },
    /// A snapshot held by the server, which records the reads itself.
    Remote(RemoteTx),
    /// Reads from a cluster's leader, each recorded as a check of the write-set to be.
    Cluster(ClusterTx),
}

impl Reader {
    /// Begins reading at the engine's latest committed state.
    pub(crate) fn begin(db: &Db) -> Reader {
        match &db.inner.backend {
            Backend::Local(local) => {
                // The version is read *before* the snapshot is taken: a commit in between
                // makes the write-set look older than its snapshot, so it is validated (safe),
                // never trusted.
                let version = local.log.version();
                Reader::Local {
                    snapshot: local.fjall.snapshot(),
                    version,
                    reads: Vec::new(),
                }
            }
            // The server begins the transaction with its first read.
            Backend::Remote(client) => Reader::Remote(RemoteTx::new(client.clone())),
            Backend::Cluster(client) => Reader::Cluster(ClusterTx::new(client.clone())),
        }
    }

    /// A reader on the same state with nothing read yet (what stays behind in a `Tx` whose
    /// state was taken for its commit).
    pub(crate) fn emptied(&self) -> Reader {
        match self {
            Reader::Local {
                snapshot, version, ..
            } => Reader::Local {
                snapshot: snapshot.clone(),
                version: *version,
                reads: Vec::new(),
            },
            Reader::Remote(tx) => Reader::Remote(RemoteTx::new(tx.client.clone())),
            Reader::Cluster(tx) => Reader::Cluster(ClusterTx::new(tx.client.clone())),
        }
    }

    /// Takes a fresh snapshot for the reads to come (a raft member, after its read barrier).
    /// Reads already made stay recorded, and the version stays the older one, so they are
    /// still validated at commit.
    pub(crate) fn refresh(&mut self, db: &Db) {
        if let (Reader::Local { snapshot, .. }, Backend::Local(local)) = (self, &db.inner.backend) {
            *snapshot = local.fjall.snapshot();
        }
    }

    /// The value of `key` in `ks` as of this reader, recorded for validation at commit.
    pub(crate) async fn point(&mut self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
        match (self, ks) {
            (
                Reader::Local {
                    snapshot, reads, ..
                },
                Ks::Local(keyspace),
            ) => {
                let seen = snapshot
                    .get(keyspace, key)
                    .map_err(|e| reading(keyspace, e))?;
                reads.push(ReadCheck::Point {
                    keyspace: keyspace.clone(),
                    key: Slice::from(key),
                    seen: seen.clone(),
                });
                Ok(seen)
            }
            (Reader::Remote(tx), Ks::Remote(id)) => {
                let client = tx.client.clone();
                Ok(client.point(tx, *id, key).await?.map(Slice::from))
            }
            (Reader::Cluster(tx), Ks::Cluster(_)) => Ok(tx.point(ks, key).await?.map(Slice::from)),
            _ => Err(mixed()),
        }
    }

    /// The entries of `[start, end)` in `ks` as of this reader, into `out`; recorded for
    /// validation at commit.
    pub(crate) async fn range(
        &mut self,
        ks: &Ks,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        out: &mut BTreeMap<Vec<u8>, Slice>,
    ) -> Result<()> {
        match (self, ks) {
            (
                Reader::Local {
                    snapshot, reads, ..
                },
                Ks::Local(keyspace),
            ) => {
                let mut digest = RangeDigest::default();
                for guard in snapshot.range::<Vec<u8>, _>(keyspace, (start.clone(), end.clone())) {
                    let (k, v) = guard.into_inner().map_err(|e| reading(keyspace, e))?;
                    digest.add(&k, &v);
                    out.insert(k.to_vec(), v);
                }
                reads.push(ReadCheck::Range {
                    keyspace: keyspace.clone(),
                    start: start.clone(),
                    end: end.clone(),
                    digest: digest.finish(),
                });
            }
            (Reader::Remote(tx), Ks::Remote(id)) => {
                let client = tx.client.clone();
                for (k, v) in client.range(tx, *id, start, end).await? {
                    out.insert(k, Slice::from(v));
                }
            }
            (Reader::Cluster(tx), Ks::Cluster(_)) => {
                for (k, v) in tx.range(ks, start, end).await? {
                    out.insert(k, Slice::from(v));
                }
            }
            _ => return Err(mixed()),
        }
        Ok(())
    }
}

/// Commits a transaction's writes (`sync`: at least one table wants fsync) read through
/// `reader`; returns once the engine acknowledged them.
pub(crate) async fn commit(
    db: &Db,
    reader: Reader,
    writes: BTreeMap<u64, (Ks, WriteMap)>,
    sync: bool,
) -> Result<()> {
    match (&db.inner.backend, reader) {
        (Backend::Local(local), Reader::Local { version, reads, .. }) => {
            if let Some(member) = local.member.get() {
                let replicated = writes
                    .values()
                    .filter(|(ks, _)| crate::raft::member::is_replicated(ks))
                    .count();
                if replicated == writes.len() {
                    // Boxed, as in `Db::table`: keeps raft's deep futures out of callers'.
                    return Box::pin(member.commit(reads, writes)).await;
                }
                if replicated > 0 {
                    return Err(Error::MixedReplication {
                        detail: "it writes both raft and local tables; one commit cannot \
                                 span the raft log and the local log. Write them in separate \
                                 transactions"
                            .into(),
                    });
                }
            }
            let ws = local_write_set(version, reads, writes, sync)?;
            let (send, receive) = tokio::sync::oneshot::channel();
            local.log.submit(
                ws,
                Box::new(move |result| {
                    let _ = send.send(result);
                }),
            );
            receive
                .await
                .map_err(|_| Error::Commit("the commit thread has stopped".into()))?
                .map(|_| ())
        }
        (Backend::Remote(client), Reader::Remote(mut remote)) => client
            .commit(&mut remote, wire_writes(writes), sync)
            .await
            .map(drop),
        (Backend::Cluster(client), Reader::Cluster(tx)) => {
            let mut cmd = tx.cmd;
            for (ks, keys) in writes.into_values() {
                let name = client.name(&ks)?;
                let mut keys: Vec<(Slice, Option<Slice>)> = keys.into_iter().collect();
                keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                for (key, value) in keys {
                    match value {
                        Some(v) => cmd.put(&name, &key, &v),
                        None => cmd.delete(&name, &key),
                    };
                }
            }
            Box::pin(client.commit(cmd)).await.map(drop)
        }
        _ => Err(mixed()),
    }
}

/// Ends a transaction that wrote nothing. Its reads were consistent in every engine but a
/// cluster's, whose reads are served without a barrier: there they are re-checked after one
/// (a conflict re-runs the transaction).
pub(crate) async fn finish_read_only(db: &Db, reader: Reader) -> Result<()> {
    match (&db.inner.backend, reader) {
        (Backend::Cluster(client), Reader::Cluster(tx)) if tx.reads > 0 => {
            Box::pin(client.verify(tx.cmd)).await
        }
        _ => Ok(()),
    }
}

/// The latest committed value of `key` in `ks`, outside any transaction.
pub(crate) async fn latest(db: &Db, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
    linearize(db, ks).await?;
    match (&db.inner.backend, ks) {
        (Backend::Local(_), Ks::Local(records)) => Ok(records.get(key)?),
        (Backend::Remote(client), Ks::Remote(id)) => {
            Ok(client.latest(*id, key).await?.map(Slice::from))
        }
        (Backend::Cluster(client), Ks::Cluster(_)) => Ok(Box::pin(client.point(ks, key, false))
            .await?
            .map(Slice::from)),
        _ => Err(mixed()),
    }
}

/// The number of entries in `ks`, outside any transaction.
pub(crate) async fn count(db: &Db, ks: &Ks) -> Result<usize> {
    linearize(db, ks).await?;
    match (&db.inner.backend, ks) {
        (Backend::Local(_), Ks::Local(records)) => Ok(records.len()?),
        (Backend::Remote(client), Ks::Remote(id)) => client.count(*id).await,
        (Backend::Cluster(client), Ks::Cluster(_)) => Box::pin(client.count(ks)).await,
        _ => Err(mixed()),
    }
}

/// Before a read of a raft table outside a transaction: the member's read barrier.
async fn linearize(db: &Db, ks: &Ks) -> Result<()> {
    match db.member() {
        Some(member) if crate::raft::member::is_replicated(ks) => {
            Box::pin(member.read_barrier()).await
        }
        _ => Ok(()),
    }
}

/// The local log's write-set: keys sorted per keyspace.
fn local_write_set(
    version: u64,
    reads: Vec<ReadCheck>,
    writes: BTreeMap<u64, (Ks, WriteMap)>,
    sync: bool,
) -> Result<WriteSet> {
    let mut out = Vec::new();
    for (keyspace, keys) in writes.into_values() {
        let Ks::Local(keyspace) = keyspace else {
            return Err(mixed());
        };
        // Key order: the memtable skiplist inserts sorted runs much faster (locality).
        // Sorted on the first eight bytes (zero-padded, so their order is the keys' order)
        // before the whole keys: most comparisons are then one integer compare instead of
        // a `Slice` comparison, which cost as much as the sort saved.
        let mut keys: Vec<(u64, Slice, Option<Slice>)> = keys
            .into_iter()
            .map(|(key, value)| (key_prefix(&key), key, value))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1[..].cmp(&b.1[..])));
        out.extend(keys.into_iter().map(|(_, key, value)| Write {
            keyspace: keyspace.clone(),
            key,
            value,
        }));
    }
    Ok(WriteSet {
        distinct_keys: true,
        version,
        reads,
        writes: out,
        durability: if sync {
            Durability::Sync
        } else {
            Durability::Buffered
        },
    })
}

/// The writes as the wire carries them (remote mode), in key order per keyspace.
fn wire_writes(writes: BTreeMap<u64, (Ks, WriteMap)>) -> Vec<WireWrite> {
    let mut out = Vec::new();
    for (id, (_, keys)) in writes {
        let mut keys: Vec<(Slice, Option<Slice>)> = keys.into_iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.extend(keys.into_iter().map(|(key, value)| WireWrite {
            keyspace: id,
            key: key.to_vec(),
            value: value.map(|v| v.to_vec()),
        }));
    }
    out
}

/// The first eight bytes of `key`, big-endian and zero-padded: `a < b` implies
/// `key_prefix(a) <= key_prefix(b)`.
fn key_prefix(key: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = key.len().min(8);
    word[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(word)
}

/// A handle of one engine used with another: a bug in celldb, never data.
fn mixed() -> Error {
    Error::Commit("internal error: a transaction mixed keyspaces of two engines".into())
}

/// A fjall error of a read, naming the keyspace (`t.<table>` or `i.<table>.<index>`) and its
/// directory.
fn reading(keyspace: &fjall::Keyspace, e: fjall::Error) -> Error {
    Error::storage(
        format!(
            "reading keyspace {} ({})",
            keyspace.name().as_ref() as &str,
            keyspace.path().display()
        ),
        e,
    )
}
