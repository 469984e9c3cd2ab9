//! What a persisted type tells the database about itself: the [`Table`] trait, implemented by
//! `#[DB::persist]` (or by hand).

use crate::key::Key;
use cell_sdk::codec::DecodeError;
use cell_sdk::{Fingerprint, Protein};

/// When an acknowledged write is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged = fsynced (`fsync` of the journal). Concurrent writers share one fsync
    /// (group commit). The default.
    #[default]
    Sync,
    /// Acknowledged = handed to the operating system. Survives a crash of the process (kill -9),
    /// not a power loss or kernel crash. No fsync on the write path.
    Buffered,
}

/// Where a table's records live: on this node only, or replicated by raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicate {
    /// One node's directory (or one celldb server). The default.
    #[default]
    Local,
    /// A raft group (`#[DB::persist(replicate = "raft")]`): a write is acknowledged once a
    /// majority of the group has it in its journal, fsynced; the table survives the loss of
    /// a minority of nodes. Needs a database opened on a raft group (docs/replication.md).
    Raft,
}

/// One secondary index of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    /// The indexed field's name (`email`); lookups are `by_<name>`.
    pub name: &'static str,
    /// A unique index maps a value to at most one record and rejects duplicates.
    pub unique: bool,
}

/// A type stored as a table: records keyed by [`Table::Key`], with secondary indexes.
///
/// `#[DB::persist]` implements it; implement it by hand only for generated code of your own.
pub trait Table: Protein + Send + Sync + 'static {
    /// The primary key type (the `#[DB::key]` field's type).
    type Key: Key + Fingerprint;
    /// The table name (defaults to the type name in snake case).
    const TABLE: &'static str;
    /// Secondary indexes, in field order.
    const INDEXES: &'static [IndexDef];
    /// The table's durability; `None` uses the database default ([`Durability::Sync`]).
    const DURABILITY: Option<Durability> = None;
    /// Where the table's records live ([`Replicate::Local`] unless declared otherwise).
    const REPLICATE: Replicate = Replicate::Local;

    /// The primary key of this record.
    fn key(&self) -> &Self::Key;

    /// Appends the encoded value of index number `index` (position in [`Table::INDEXES`]).
    fn encode_index(&self, index: usize, out: &mut Vec<u8>);

    /// For a table whose `u64` key is `#[DB::auto_inc]`: the record's key. `None` otherwise.
    fn auto_key(&self) -> Option<u64> {
        None
    }

    /// For an `auto_inc` table: a copy of the record with key `key`.
    fn with_auto_key(&self, _key: u64) -> Option<Self> {
        None
    }

    /// The previous version of this type, if the table may hold records written by it.
    fn previous() -> Option<Previous<Self>> {
        None
    }
}

/// How to upgrade records written by a previous version of a table's type
/// (`#[DB::persist(prev = UserV1)]` plus `impl From<UserV1> for User`).
pub struct Previous<T> {
    /// The previous type's structural fingerprint.
    pub fingerprint: u64,
    /// The previous type's structure, for messages.
    pub describe: fn() -> String,
    /// Decodes (validated) a record of the previous type and converts it.
    pub upgrade: fn(&[u8]) -> Result<T, DecodeError>,
}

impl<T> std::fmt::Debug for Previous<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Previous")
            .field("fingerprint", &cell_sdk::fingerprint::hex(self.fingerprint))
            .finish_non_exhaustive()
    }
}
