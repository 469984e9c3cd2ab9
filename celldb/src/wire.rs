//! The celldb protocol: what a client (a [`Db`](crate::Db) from [`Db::connect`](crate::Db::connect))
//! and `celldb serve` say to each other, at the level of bytes and keyspaces.
//!
//! The server knows tables only by their metadata ([`TableMeta`]): it never decodes a record.
//! Everything typed — rkyv encoding, key encoding, index maintenance, unique checks, a
//! transaction's own writes — happens in the client's [`Tx`](crate::Tx), exactly as in
//! embedded mode. The server holds, per open transaction, a fjall snapshot, the commit version
//! it was taken at, and the read checks of every read it served; a commit sends the write-set
//! and the server validates those reads through its commit log.

use crate::schema::TableMeta;
use cell_sdk::{protein, service};

/// Which tables a client opens: name and the metadata of its type.
#[protein]
pub struct OpenTable {
    /// Table name.
    pub table: String,
    /// The client's type, as embedded mode would store it.
    pub meta: TableMeta,
}

/// The server's keyspace ids of an open table.
#[protein]
pub struct TableIds {
    /// The records' keyspace.
    pub records: u64,
    /// One keyspace per index, in the order of the metadata's indexes.
    pub indexes: Vec<u64>,
    /// The `auto_inc` counters' keyspace.
    pub seq: u64,
}

/// One end of a range read.
#[protein]
pub enum WireBound {
    /// No bound.
    Unbounded,
    /// Keys from (or up to) this one, inclusive.
    Included(Vec<u8>),
    /// Keys after (or before) this one.
    Excluded(Vec<u8>),
}

impl WireBound {
    /// The wire form of a range bound.
    pub(crate) fn from_bound(b: &std::ops::Bound<Vec<u8>>) -> Self {
        match b {
            std::ops::Bound::Unbounded => Self::Unbounded,
            std::ops::Bound::Included(k) => Self::Included(k.clone()),
            std::ops::Bound::Excluded(k) => Self::Excluded(k.clone()),
        }
    }

    /// The range bound this stands for.
    pub(crate) fn into_bound(self) -> std::ops::Bound<Vec<u8>> {
        match self {
            Self::Unbounded => std::ops::Bound::Unbounded,
            Self::Included(k) => std::ops::Bound::Included(k),
            Self::Excluded(k) => std::ops::Bound::Excluded(k),
        }
    }
}

/// Where a read happens: in transaction `tx`, or (`tx == 0`) in a new transaction of
/// `session`, whose id comes back with the result.
#[protein]
pub struct At {
    /// The client's session (see [`CellDb::open_session`]).
    pub session: u64,
    /// The transaction, `0` to begin one.
    pub tx: u64,
    /// The keyspace id (from [`TableIds`]).
    pub keyspace: u64,
}

/// A point read's result.
#[protein]
pub struct PointReply {
    /// The transaction the read happened in.
    pub tx: u64,
    /// The value in the transaction's snapshot.
    pub value: Option<Vec<u8>>,
}

/// A range read's result.
#[protein]
pub struct RangeReply {
    /// The transaction the read happened in.
    pub tx: u64,
    /// Keys and values of the range, in key order: all of them, or (when `more`) a first
    /// page of them.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The reply was cut at the server's page size (at least one entry is always sent): ask
    /// for the rest in the same transaction, from `Excluded(last key)` to the same end. The
    /// server reads every page from the transaction's snapshot and validates the pages a
    /// client read as one range, from the first start to the last key it sent.
    pub more: bool,
}

/// One write of a commit: `value: None` deletes.
#[protein]
pub struct WireWrite {
    /// Keyspace id.
    pub keyspace: u64,
    /// Key (1 to 65,535 bytes).
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// A transaction's write-set.
#[protein]
pub struct Commit {
    /// The session that began the transaction.
    pub session: u64,
    /// The transaction (`0`: a blind write-set without reads).
    pub tx: u64,
    /// Writes, applied atomically.
    pub writes: Vec<WireWrite>,
    /// `true` to acknowledge only after the fsync (the table's durability).
    pub sync: bool,
}

/// Counters of a server (`celldb` clients and tests read them).
#[protein]
pub struct ServerStats {
    /// Transactions holding a snapshot on the server right now.
    pub open_transactions: u64,
    /// Client sessions alive.
    pub sessions: u64,
    /// Write-sets committed since the server started.
    pub committed: u64,
    /// Write-sets rejected by validation.
    pub conflicts: u64,
    /// fsyncs since the server started.
    pub syncs: u64,
    /// Requests refused as malformed (bad ids, bad keys).
    pub bad_requests: u64,
}

/// A table's stored type differs from the client's (see [`Error::SchemaMismatch`]).
///
/// [`Error::SchemaMismatch`]: crate::Error::SchemaMismatch
#[protein]
pub struct Mismatch {
    /// Table.
    pub table: String,
    /// What changed.
    pub what: String,
    /// Structure on disk.
    pub stored: String,
    /// Structure in the client's code.
    pub current: String,
}

/// Why the server refused a request. The client turns it into an [`Error`](crate::Error).
#[protein]
pub enum WireError {
    /// Storage failed on the server.
    Storage(String),
    /// The table on the server was written by another type.
    SchemaMismatch(Mismatch),
    /// Bytes on the server's disk failed validation: `(table, reason)`.
    Corrupt(String, String),
    /// Validation failed: something the transaction read changed. Re-run it.
    Conflict,
    /// The transaction is unknown (ended, aborted, or the server restarted). Re-run it.
    UnknownTransaction,
    /// The session is unknown (its connection closed, or the server restarted).
    UnknownSession,
    /// The commit log failed.
    Commit(String),
    /// A malformed request (unknown keyspace id, empty or oversized key, …).
    BadRequest(String),
    /// A bound of the server was reached (sessions per server, open transactions per
    /// session): the request is refused at once, nothing was changed. The reason names the
    /// bound and the `celldb serve` flag that sets it.
    Limit(String),
}

/// The celldb service. Methods take plain values; see the module docs.
#[service(name = "celldb")]
pub trait CellDb {
    /// Opens (or creates) a table; the server checks the stored fingerprint.
    async fn open_table(&self, open: OpenTable) -> Result<TableIds, WireError>;
    /// Starts a session: transactions belong to one, and die with it. [`WireError::Limit`]
    /// when the server holds its maximum of sessions.
    async fn open_session(&self) -> Result<u64, WireError>;
    /// Held open by the client for the session's lifetime: when the connection closes, the
    /// server drops this call, and with it every transaction of the session. Returns when the
    /// server shuts down (`true`), or at once for an unknown session (`false`).
    async fn hold(&self, session: u64) -> bool;
    /// A point read in a transaction's snapshot (recorded for validation).
    async fn point(&self, at: At, key: Vec<u8>) -> Result<PointReply, WireError>;
    /// A range read in a transaction's snapshot (its digest recorded for validation), one page
    /// at a time (see [`RangeReply::more`]).
    async fn range(
        &self,
        at: At,
        start: WireBound,
        end: WireBound,
    ) -> Result<RangeReply, WireError>;
    /// Validates and commits a write-set through the server's commit log; the commit version.
    async fn commit(&self, commit: Commit) -> Result<u64, WireError>;
    /// Ends a transaction without committing (frees its snapshot); `false` if unknown.
    async fn release(&self, session: u64, tx: u64) -> bool;
    /// The latest committed value of a key (no transaction).
    async fn latest(&self, keyspace: u64, key: Vec<u8>) -> Result<Option<Vec<u8>>, WireError>;
    /// Number of keys in a keyspace (latest committed state).
    async fn count(&self, keyspace: u64) -> Result<u64, WireError>;
    /// The server's counters.
    async fn stats(&self) -> ServerStats;
}
