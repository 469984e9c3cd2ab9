//! All cross-crate integration tests, in one binary (faster to build on two cores).
//!
//! Table of contents:
//! - `protein`: `#[protein]` round trips, fingerprints, and its compile errors (trybuild UI tests
//!   in `tests/ui/protein/`).
//! - `celldb_api`: celldb tables through `#[DB::persist]`: CRUD, indexes, transactions,
//!   concurrency (unique constraints, lost updates), schema mismatch and migration, the
//!   directory lock, corrupt bytes, task-local databases; compile errors in `tests/ui/celldb/`.
//! - `celldb_crash`: real child processes: SIGKILL loops (no acknowledged write lost, indexes
//!   agree with records) and the fsync proof under strace (buffered mode as negative control).

mod celldb_api;
mod celldb_crash;
mod protein;
