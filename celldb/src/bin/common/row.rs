//! The record both celldb benchmarks write (`celldb-bench`, `celldb-remote-bench`), so their
//! figures are for the same bytes: a key, a unique and a non-unique index, 100 bytes of payload.

use super::DB;
use cell_sdk::protein;

/// The benchmark record.
#[protein]
#[DB::persist(table = "bench")]
pub(crate) struct Row {
    #[DB::key]
    pub(crate) id: u64,
    #[DB::unique]
    pub(crate) email: String,
    #[DB::index]
    pub(crate) group: u64,
    pub(crate) payload: Vec<u8>,
}

/// Row `id`: distinct emails, 100 groups.
pub(crate) fn row(id: u64) -> Row {
    Row {
        id,
        email: format!("user{id}@example.com"),
        group: id % 100,
        payload: vec![(id % 251) as u8; 100],
    }
}
