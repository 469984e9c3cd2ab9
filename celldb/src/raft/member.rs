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
//! - Writes and linearizable reads need the leader. On a node of a process cluster (one with
//!   a [`Client`] of the group), a follower or learner asks the leader for a read index and
//!   waits until it has applied that far (a follower read), and forwards writes to the leader
//!   with a request id. Elsewhere (an in-process group) a follower fails with
//!   [`Error::NotLeader`](crate::Error::NotLeader), naming the leader.
//! - **Bounded staleness** (a member started with `max_staleness = B`): the `DB::` API's reads
//!   skip the round trip while the member's newest read index is younger than `B`. A read
//!   index asked for at time `t` covers every write acknowledged before `t`; once this node
//!   has applied it, a read at `now` sees every write acknowledged before `now - B`. Only the
//!   local monotonic clock is involved: no clock of another node, no lease. A refresh runs in
//!   the background once the index is half the bound old; an index older than `B` is renewed
//!   before the read, and a member that cannot renew it fails the read with
//!   [`Error::TooStale`](crate::Error::TooStale) instead of serving older data. A conflict at
//!   commit (proof that this node read stale data) drops the index, so the re-run reads after
//!   a full barrier.
//! - A table's schema is replicated too: the first node to open a raft table writes its
//!   [`TableMeta`](crate::TableMeta) through the group; a member whose type differs gets
//!   `Error::SchemaMismatch`. (Migrations of raft tables are not supported yet.)
//!
//! A commit proposed on the leader's own member is not retried by celldb when its answer is
//! lost (the leader changed in the middle), so it is never applied twice; the caller gets the
//! error. A follower's forwarded commit carries a request id and is retried like a client's.

use crate::db::{Ks, TableHandle};
use crate::engine::WriteMap;
use crate::error::{Error, Result};
use crate::log::ReadCheck;
use crate::raft::cluster::client::Client;
use crate::raft::cmd::CmdBuilder;
use crate::raft::{DATA_PREFIX, Outcome, Raft};
use crate::schema::{TableMeta, index_keyspace, meta_of, records_keyspace, same_schema};
use crate::table::{Durability, Table};
use cell_sdk::codec;
use fjall::{Keyspace, KeyspaceCreateOptions};
use openraft::rt::WatchReceiver as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The replicated keyspace of table metadata (without the `r.` prefix).
const META: &str = "celldb.meta";
/// The replicated keyspace of `auto_inc` counters.
const SEQ: &str = "celldb.seq";

/// How long a follower read waits for this node to apply the leader's read index.
const APPLY_WITHIN: Duration = Duration::from_secs(30);
/// The shortest wait of a bounded-staleness read for a new read index before it fails.
const RENEW_WITHIN_AT_LEAST: Duration = Duration::from_secs(3);

/// The raft side of a member database.
pub(crate) struct Member {
    raft: Raft,
    /// On a node of a process cluster: a client of the group, through which a follower or
    /// learner forwards its writes to the leader and asks it for read indexes.
    remote: OnceLock<Arc<Client>>,
    freshness: Arc<Freshness>,
}

/// What a bounded-staleness member knows of its own freshness.
#[derive(Default)]
struct Freshness {
    /// The staleness bound; unset: reads are linearizable.
    bound: OnceLock<Duration>,
    /// The newest read index obtained, and when it was asked for (before the request left).
    known: Mutex<Option<(Instant, u64)>>,
    /// A background renewal is running.
    renewing: AtomicBool,
    /// The log index of this member's newest committed write: its reads wait for it (read
    /// your writes; a forwarded write is applied here a little after the leader answers).
    written: AtomicU64,
}

impl Freshness {
    fn known(&self) -> std::sync::MutexGuard<'_, Option<(Instant, u64)>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the newest of what is known and `(asked, index)`.
    fn record(&self, asked: Instant, index: u64) {
        let mut known = self.known();
        match *known {
            Some((t, i)) if t >= asked => *known = Some((t, i.max(index))),
            Some((_, i)) => *known = Some((asked, i.max(index))),
            None => *known = Some((asked, index)),
        }
    }
}

impl Member {
    pub(crate) fn new(raft: Raft) -> Self {
        Self {
            raft,
            remote: OnceLock::new(),
            freshness: Arc::default(),
        }
    }

    /// Lets this member forward writes and read barriers to the leader through `client`.
    pub(crate) fn set_remote(&self, client: Arc<Client>) {
        let _ = self.remote.set(client);
    }

    /// Serves the `DB::` API's reads of raft tables with bounded staleness (module docs).
    pub(crate) fn set_max_staleness(&self, bound: Duration) {
        let _ = self.freshness.bound.set(bound);
    }

    /// Waits until this node's state machine holds every write committed before the call
    /// (ReadIndex). On a follower or learner of a process cluster, the leader gives the read
    /// index and this node waits until it has applied that far (a follower read); elsewhere a
    /// follower fails with `NotLeader`.
    pub(crate) async fn barrier(&self) -> Result<()> {
        let asked = Instant::now();
        let index = read_index(&self.raft, self.remote.get()).await?;
        if self.freshness.bound.get().is_some() {
            self.freshness.record(asked, index);
        }
        Ok(())
    }

    /// The barrier before the `DB::` API reads raft tables: [`Member::barrier`], or on a
    /// bounded-staleness member the newest read index if it is young enough (module docs).
    pub(crate) async fn read_barrier(&self) -> Result<()> {
        let Some(&bound) = self.freshness.bound.get() else {
            return self.barrier().await;
        };
        let known = *self.freshness.known();
        if let Some((asked, index)) = known {
            let age = asked.elapsed();
            if age <= bound {
                if age >= bound / 2 {
                    self.renew_in_background();
                }
                let written = self.freshness.written.load(Ordering::Acquire);
                return wait_applied(&self.raft, index.max(written)).await;
            }
        }
        let wait = bound.max(RENEW_WITHIN_AT_LEAST);
        match tokio::time::timeout(wait, self.barrier()).await {
            Ok(Ok(())) => Ok(()),
            // A follower of an in-process group has no way to the leader: as when unbounded.
            Ok(Err(e @ Error::NotLeader { .. })) => Err(e),
            Ok(Err(e)) => Err(Error::TooStale {
                bound,
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::TooStale {
                bound,
                reason: format!("no read index within {wait:?}"),
            }),
        }
    }

    /// Renews the read index in a task, unless a renewal is running already.
    fn renew_in_background(&self) {
        if self.freshness.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (raft, remote, freshness) = (
            self.raft.clone(),
            self.remote.get().cloned(),
            self.freshness.clone(),
        );
        tokio::spawn(async move {
            let asked = Instant::now();
            match read_index(&raft, remote.as_ref()).await {
                Ok(index) => freshness.record(asked, index),
                Err(e) => tracing::debug!(error = %e, "celldb: renewing the read index failed"),
            }
            freshness.renewing.store(false, Ordering::Release);
        });
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
                    match self.submit(cmd).await {
                        Ok(_) | Err(Error::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
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
        match self.submit(cmd).await {
            Ok(index) => {
                if self.freshness.bound.get().is_some() {
                    self.freshness.written.fetch_max(index, Ordering::AcqRel);
                }
                Ok(())
            }
            Err(e) => {
                if let Error::Conflict { .. } = e {
                    // This node read something stale: the re-run reads after a full barrier.
                    *self.freshness.known() = None;
                }
                Err(e)
            }
        }
    }

    /// Proposes `cmd` here, or forwards it to the leader; the log index it was applied at.
    async fn submit(&self, cmd: CmdBuilder) -> Result<u64> {
        let encoded = cmd
            .finish()
            .map_err(|e| Error::Commit(format!("encoding the write-set for raft: {e}")))?;
        match self.raft.client_write(encoded).await {
            Ok(response) => match response.data {
                Outcome::Committed { index } => Ok(index),
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

/// A read index: every write committed before the call is at or below it, and this node has
/// applied it when this returns. The leader confirms its leadership (ReadIndex); a follower or
/// learner of a process cluster asks the leader through `remote`.
async fn read_index(raft: &Raft, remote: Option<&Arc<Client>>) -> Result<u64> {
    let local = raft
        .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
        .await;
    let leader = match local {
        Ok(read) => return Ok(read.index()),
        Err(e) => match e.forward_to_leader() {
            Some(forward) => forward.leader_id,
            None => return Err(Error::Commit(format!("raft read barrier: {e}"))),
        },
    };
    let Some(remote) = remote else {
        return Err(Error::NotLeader { leader });
    };
    let index = Box::pin(remote.read_index()).await?;
    wait_applied(raft, index).await?;
    Ok(index)
}

/// Waits until this node has applied log index `index`.
async fn wait_applied(raft: &Raft, index: u64) -> Result<()> {
    let applied = raft.metrics().borrow_watched().last_applied;
    if applied.is_some_and(|l| l.index >= index) {
        return Ok(());
    }
    raft.wait(Some(APPLY_WITHIN))
        .applied_index_at_least(Some(index), "a follower read catches up")
        .await
        .map(drop)
        .map_err(|e| Error::Commit(format!("waiting to apply index {index}: {e}")))
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
