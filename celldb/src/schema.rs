//! Schema metadata: what celldb records about each table (a leaf module: it knows tables and
//! their keyspace names, not how or where they are stored).
//!
//! Every table has one [`TableMeta`] in the metadata keyspace, written when the table is first
//! opened and compared on every later open (a changed type is migrated or refused). Keyspace
//! names are derived here, so the local engine, the server and a replica name a table's
//! keyspaces alike.

use crate::error::{Error, Result};
use crate::table::Table;
use cell_sdk::{Fingerprint, codec, protein};

/// The keyspace holding one [`TableMeta`] per table.
pub(crate) const META_KEYSPACE: &str = "celldb.meta";
/// The keyspace holding `auto_inc` counters (table → the highest key written, big-endian `u64`).
pub(crate) const SEQ_KEYSPACE: &str = "celldb.seq";
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

pub(crate) fn records_keyspace(table: &str) -> String {
    format!("t.{table}")
}

pub(crate) fn index_keyspace(table: &str, index: &str) -> String {
    format!("i.{table}.{index}")
}

pub(crate) fn decode_meta(table: &str, bytes: &[u8]) -> Result<TableMeta> {
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
