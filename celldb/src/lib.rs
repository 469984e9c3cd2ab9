//! `celldb`: the embedded database provider cell.
//!
//! It provides typed tables on [fjall](https://docs.rs/fjall) 3: a `#[DB::persist]` struct is a
//! table keyed by its `#[DB::key]` field, with secondary indexes (`#[DB::index]`,
//! `#[DB::unique]`) kept in the same atomic commit as the record.
//!
//! Principal types and functions:
//! - [`Db`]: an open database directory ([`Db::open`], [`Db::temp`] for tests), with
//!   [`Db::insert`], [`Db::get`], [`Db::update`], [`Db::upsert`], [`Db::delete`], [`Db::scan`],
//!   [`Db::count`] and [`Db::transaction`];
//! - the same operations as free functions ([`insert`], [`get`], …) on the *current* database:
//!   the one set for this task by [`Db::scope`], else a default database opened lazily at a
//!   per-cell directory (see [`context::default_path`]) — so a plain `cargo run` needs no setup;
//! - [`Table`] (implemented by `#[DB::persist]`), [`Key`] (order-preserving key encoding);
//! - [`CommitLog`]: the one interface every write goes through.
//!
//! Key design decision: **every write is a write-set through one commit log with group
//! commit.** Concurrency is optimistic (snapshot reads, validated at commit), and the local log
//! writes every waiting write-set in one fjall batch with one `persist(SyncAll)`: acknowledged
//! means fsynced, and many concurrent writers share an fsync. A replicated log can replace the
//! local one without touching the API.
//!
//! Remote mode: `celldb serve` ([`server`], [`wire`]) serves a directory over the runtime, and
//! [`Db::connect`] (or `$CELLDB_URL` for the default database, [`remote`]) makes the same API
//! reach it. Transactions still run in the caller — reads from a snapshot the server holds for
//! them, the write-set validated and group-committed by the server's log — so both modes share
//! the typed code and the isolation (serializable for what a transaction reads).
//!
//! Bytes on disk are never trusted: records and metadata are validated on every read, and
//! fjall's journal is walked before fjall recovers it (fjall would truncate a damaged journal
//! silently; celldb makes that an [`Error::Corrupt`]).
//!
//! What it is not: a SQL engine, and not a store for untyped data: every table's structural
//! fingerprint is checked when it is opened.
//!
//! # Example
//! ```
//! use cell_sdk::{cell_remote, protein};
//! cell_remote!(DB = "celldb");
//!
//! #[protein]
//! #[DB::persist]
//! pub struct User {
//!     #[DB::key]
//!     id: u64,
//!     #[DB::unique]
//!     email: String,
//!     name: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> celldb::Result<()> {
//! let db = celldb::Db::temp()?;
//! db.scope(async {
//!     let ada = User { id: 1, email: "ada@example.com".into(), name: "Ada".into() };
//!     DB::insert(&ada).await?;
//!     assert_eq!(User::get(1).await?, Some(ada.clone()));
//!     assert_eq!(User::by_email("ada@example.com").await?, Some(ada));
//!     assert_eq!(User::count().await?, 1);
//!     Ok(())
//! })
//! .await
//! # }
//! ```

// Lets `#[persist]` expansions (`::celldb::…`) work inside this crate's own tests and docs.
extern crate self as celldb;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod context;
mod db;
mod disk;
mod engine;
mod error;
mod journal;
pub mod key;
mod local;
mod log;
mod migrate;
pub mod raft;
pub mod remote;
mod schema;
pub mod server;
mod table;
mod tx;
pub mod wire;

pub use context::{current, set_default};
pub use db::{Db, Options};
pub use error::{Error, Result};
pub use key::{Key, KeyArg, KeyError};
pub use log::{Ack, CommitLog, LocalLog, LogStats, WriteSet};
pub use schema::TableMeta;
pub use table::{Durability, IndexDef, Previous, Replicate, Table};
pub use tx::{MAX_ATTEMPTS, Tx};

use std::ops::RangeBounds;

/// Inserts a new record into the current database; returns its key once it is durable (for
/// an `auto_inc` table given key `0`, the key assigned).
///
/// # Errors
/// [`Error::AlreadyExists`], [`Error::UniqueViolation`], storage errors.
pub async fn insert<T: Table>(value: &T) -> Result<T::Key> {
    current()?.insert(value).await
}

/// The record of `T` with primary key `key` in the current database.
///
/// # Errors
/// Storage errors; [`Error::Corrupt`] on bytes that fail validation.
pub async fn get<T: Table>(key: impl KeyArg<T::Key>) -> Result<Option<T>> {
    current()?.get::<T>(key).await
}

/// Replaces an existing record in the current database.
///
/// # Errors
/// [`Error::NotFound`], [`Error::UniqueViolation`], storage errors.
pub async fn update<T: Table>(value: &T) -> Result<()> {
    current()?.update(value).await
}

/// Inserts or replaces a record in the current database.
///
/// # Errors
/// [`Error::UniqueViolation`], storage errors.
pub async fn upsert<T: Table>(value: &T) -> Result<()> {
    current()?.upsert(value).await
}

/// Deletes the record with `key` from the current database; `true` if it existed.
///
/// # Errors
/// Storage errors.
pub async fn delete<T: Table>(key: impl KeyArg<T::Key>) -> Result<bool> {
    current()?.delete::<T>(key).await
}

/// Records of `T` whose key is in `range`, in key order, from the current database.
///
/// # Errors
/// Storage errors; [`Error::Corrupt`] on bad bytes.
pub async fn scan<T: Table>(range: impl RangeBounds<T::Key>) -> Result<Vec<T>> {
    current()?.scan::<T>(range).await
}

/// Number of records of `T` in the current database.
///
/// # Errors
/// Storage errors.
pub async fn count<T: Table>() -> Result<usize> {
    current()?.count::<T>().await
}

/// Runs `body` as one transaction on the current database. **It may run more than once** (see
/// [`Db::transaction`]).
///
/// # Errors
/// The body's error, [`Error::Conflict`], or a commit error.
pub async fn transaction<R, F, Fut>(body: F) -> Result<R>
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    current()?.transaction(body).await
}

// What `cell_remote!(DB = "celldb")` puts under the consumer's alias (the export declaration,
// docs/export-contract.md). rustc checks every name; tools read this declaration without
// compiling, and take each macro's docs from its `#[proc_macro_attribute]` fn in celldb-macros.
// The argument schema must match what `persist` really accepts (celldb-macros tests it).
cell_sdk::export! {
    format = 1;
    cell = "celldb";
    macros = celldb_macros;

    attribute persist {
        helpers = [key, index, unique, auto_inc];
        args {
            table: str?,
            durability: "sync" | "buffered" = "sync",
            prev: expr?,
            replicate: "local" | "raft" = "local",
        }
    }
    // The helpers are macros too, so one written outside `persist` gets a clear error from
    // celldb-macros instead of rustc's "cannot find attribute".
    attribute key {}
    attribute index {}
    attribute unique {}
    attribute auto_inc {}

    api = [insert, get, update, upsert, delete, scan, count, transaction, Db, Tx, Error, Durability, Replicate];
}

/// Re-exports used by macro expansions. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::key::encode;

    /// The metadata a table of `T` is stored with (tests of the server speak the protocol
    /// by hand).
    pub fn table_meta<T: crate::Table>() -> crate::TableMeta {
        crate::schema::meta_of::<T>()
    }
    pub use cell_sdk::{Fingerprint, codec, fingerprint};
}
