//! A celldb database that is a member of a raft group: the node's own [`Db`](crate::Db)
//! serves its local tables as always, and its `replicate = "raft"` tables through the group.
//!
//! - A raft table's keyspaces are the state machine's (`r.t.<table>`, `r.i.<table>.<index>`,
//!   `r.celldb.seq`, `r.celldb.meta`), read from this node's fjall database like any other.
//! - Before a transaction first opens a raft table, and before a read outside transactions, the
//!   member runs a ReadIndex barrier (`ensure_linearizable`): this node's state machine then
//!   holds every write committed before the read began, and the transaction reads a snapshot
//!   taken after it. Reads are linearizable.
//! - A transaction that writes raft tables commits as one raft entry (a [`Cmd`] of its writes
//!   and of the reads it made of raft tables); every replica re-checks the reads by value. A
//!   conflict re-runs the transaction, as locally. It may not also write local tables (one
//!   atomic commit cannot span two logs), nor have read local tables (raft cannot check them).
//! - Writes and linearizable reads need the leader: on a follower they fail with
//!   [`Error::NotLeader`](crate::Error::NotLeader), naming the leader. Forwarding to it comes
//!   with the network between processes.
//! - A table's schema is replicated too: the first node to open a raft table writes its
//!   [`TableMeta`](crate::TableMeta) through the group; a member whose type differs gets
//!   `Error::SchemaMismatch`. (Migrations of raft tables are not supported yet.)
//!
//! Not yet: request ids. A commit whose answer was lost (the leader changed in the middle) is
//! not retried by celldb, so it is never applied twice; the caller gets the error.

use crate::db::{Ks, TableHandle};
use crate::engine::WriteMap;
use crate::error::{Error, Result};
use crate::log::ReadCheck;
use crate::raft::cmd::CmdBuilder;
use crate::raft::{DATA_PREFIX, Outcome, Raft};
use crate::schema::{TableMeta, index_keyspace, meta_of, records_keyspace, same_schema};
use crate::table::{Durability, Table};
use cell_sdk::codec;
use fjall::{Keyspace, KeyspaceCreateOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The replicated keyspace of table metadata (without the `r.` prefix).
const META: &str = "celldb.meta";
/// The replicated keyspace of `auto_inc` counters.
const SEQ: &str = "celldb.seq";

/// The raft side of a member database.
pub(crate) struct Member {
    raft: Raft,
    /// On a node of a process cluster: a client of the group, through which a follower or
    /// learner forwards its writes to the leader and asks it for read indexes.
    remote: std::sync::OnceLock<Arc<crate::raft::cluster::client::Client>>,
}

impl Member {
    pub(crate) fn new(raft: Raft) -> Self {
        Self {
            raft,
            remote: std::sync::OnceLock::new(),
        }
    }

    /// Lets this member forward writes and read barriers to the leader through `client`.
    pub(crate) fn set_remote(&self, client: Arc<crate::raft::cluster::client::Client>) {
        let _ = self.remote.set(client);
    }

    /// Waits until this node's state machine holds every write committed before the call
    /// (ReadIndex). On a follower or learner of a process cluster, the leader gives the read
    /// index and this node waits until it has applied that far (a follower read); elsewhere a
    /// follower fails with `NotLeader`.
    pub(crate) async fn barrier(&self) -> Result<()> {
        let local = self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await;
        let leader = match local {
            Ok(_) => return Ok(()),
            Err(e) => match e.forward_to_leader() {
                Some(forward) => forward.leader_id,
                None => return Err(Error::Commit(format!("raft read barrier: {e}"))),
            },
        };
        let Some(remote) = self.remote.get() else {
            return Err(Error::NotLeader { leader });
        };
        let index = Box::pin(remote.read_index()).await?;
        self.raft
            .wait(Some(std::time::Duration::from_secs(30)))
            .applied_index_at_least(Some(index), "a follower read catches up")
            .await
            .map(drop)
            .map_err(|e| Error::Commit(format!("waiting to apply index {index}: {e}")))
    }

    /// Opens the raft table of `T` on this node, writing or checking its replicated metadata.
    pub(crate) async fn register<T: Table>(&self, fjall: &fjall::Database) -> Result<TableHandle> {
        let open = |name: &str| -> Result<Keyspace> {
            let full = format!("{DATA_PREFIX}{name}");
            fjall
                .keyspace(&full, KeyspaceCreateOptions::default)
                .map_err(|e| Error::storage(format!("opening keyspace {full}"), e))
        };
        self.register_meta(fjall, T::TABLE, &meta_of::<T>()).await?;
        Ok(TableHandle {
            records: Ks::Local(open(&records_keyspace(T::TABLE))?),
            indexes: T::INDEXES
                .iter()
                .map(|d| open(&index_keyspace(T::TABLE, d.name)).map(Ks::Local))
                .collect::<Result<_>>()?,
            seq: Ks::Local(open(SEQ)?),
            durability: Durability::Sync,
        })
    }

    /// Writes table `table`'s metadata through the group if no node has, or checks it against
    /// what is replicated (a cluster node does this for its clients too).
    pub(crate) async fn register_meta(
        &self,
        fjall: &fjall::Database,
        table: &str,
        current: &TableMeta,
    ) -> Result<()> {
        let full = format!("{DATA_PREFIX}{META}");
        let meta_ks = fjall
            .keyspace(&full, KeyspaceCreateOptions::default)
            .map_err(|e| Error::storage(format!("opening keyspace {full}"), e))?;
        let bytes = codec::to_bytes(current).map_err(|e| Error::Encode {
            table: "meta".into(),
            reason: e.to_string(),
        })?;
        loop {
            self.barrier().await?;
            let stored = meta_ks
                .get(table)
                .map_err(|e| Error::storage(format!("reading the metadata of {table}"), e))?;
            match stored {
                Some(stored) => {
                    let stored =
                        codec::from_bytes::<TableMeta>(&stored).map_err(|e| Error::Corrupt {
                            table: format!("meta of {table}"),
                            reason: e.to_string(),
                        })?;
                    if !same_schema(&stored, current) {
                        return Err(Error::SchemaMismatch {
                            table: table.into(),
                            what: "the replicated table's record type (migrations of raft \
                                   tables are not supported yet)"
                                .into(),
                            stored: stored.describe,
                            current: current.describe.clone(),
                        });
                    }
                    return Ok(());
                }
                None => {
                    let mut cmd = CmdBuilder::new(0);
                    cmd.check(META, table.as_bytes(), None);
                    cmd.put(META, table.as_bytes(), &bytes);
                    // Conflict: another node registered it first; check what it wrote.
                    self.submit(cmd).await.or_else(|e| match e {
                        Error::Conflict { .. } => Ok(()),
                        e => Err(e),
                    })?;
                }
            }
        }
    }

    /// Commits a transaction's writes to raft tables as one entry, with its reads of raft
    /// tables as the checks every replica makes.
    pub(crate) async fn commit(
        &self,
        reads: Vec<ReadCheck>,
        writes: BTreeMap<u64, (Ks, WriteMap)>,
    ) -> Result<()> {
        let mut cmd = CmdBuilder::new(0);
        for read in &reads {
            match read {
                ReadCheck::Point {
                    keyspace,
                    key,
                    seen,
                } => cmd.check(replicated_name(keyspace)?, key, seen.as_deref()),
                ReadCheck::Range {
                    keyspace,
                    start,
                    end,
                    digest,
                } => cmd.check_range(
                    replicated_name(keyspace)?,
                    start.clone(),
                    end.clone(),
                    *digest,
                ),
            };
        }
        for (ks, keys) in writes.values() {
            let Ks::Local(keyspace) = ks else {
                return Err(Error::Commit(
                    "internal error: a member's write names a remote keyspace".into(),
                ));
            };
            let name = replicated_name(keyspace)?;
            let mut keys: Vec<_> = keys.iter().collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, value) in keys {
                match value {
                    Some(v) => cmd.put(name, key, v),
                    None => cmd.delete(name, key),
                };
            }
        }
        self.submit(cmd).await
    }

    async fn submit(&self, cmd: CmdBuilder) -> Result<()> {
        let encoded = cmd
            .finish()
            .map_err(|e| Error::Commit(format!("encoding the write-set for raft: {e}")))?;
        match self.raft.client_write(encoded).await {
            Ok(response) => match response.data {
                Outcome::Committed { .. } => Ok(()),
                Outcome::Conflict => Err(Error::Conflict { attempts: 1 }),
                Outcome::Rejected(reason) => Err(Error::Commit(format!(
                    "every replica rejected the write-set: {reason}"
                ))),
                Outcome::SessionExpired => Err(Error::Commit(
                    "internal error: a member's write-set named a client session".into(),
                )),
            },
            Err(e) => match (e.forward_to_leader(), self.remote.get()) {
                // Not proposed here: forward it, with a request id, to the leader.
                (Some(_), Some(remote)) => Box::pin(remote.commit(cmd)).await,
                (Some(forward), None) => Err(Error::NotLeader {
                    leader: forward.leader_id,
                }),
                (None, _) => Err(Error::Commit(format!("raft write: {e}"))),
            },
        }
    }
}

/// True for a keyspace of the raft state machine.
pub(crate) fn is_replicated(ks: &Ks) -> bool {
    matches!(ks, Ks::Local(k) if k.name().starts_with(DATA_PREFIX))
}

/// A replicated keyspace's name as write-sets give it (without `r.`); a local keyspace in a
/// raft write-set is the caller's mistake, reported as such.
fn replicated_name(keyspace: &Keyspace) -> Result<&str> {
    let name: &str = keyspace.name().as_ref();
    name.strip_prefix(DATA_PREFIX)
        .ok_or_else(|| Error::MixedReplication {
            detail: format!(
                "it read the local keyspace `{name}`; raft cannot check that read on its replicas. \
             Read local tables in a separate transaction"
            ),
        })
}
