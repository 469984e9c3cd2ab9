//! `cell-postgres`: the PostgreSQL provider cell.
//!
//! A `#[Postgres::table]` struct is the rows of one PostgreSQL table: the macro generates its
//! DDL, the encoding of a row, typed CRUD statements and one column constant per field for the
//! typed query builder. Every value travels as a statement parameter.
//!
//! Principal types and functions:
//! - [`Pg`]: a pool of connections to one database ([`Pg::connect`], [`Pg::from_env`] for
//!   `$DATABASE_URL`), with [`Pg::insert`], [`Pg::get`], [`Pg::update`], [`Pg::delete`],
//!   [`Pg::query`], [`Pg::transaction`] and [`Pg::migrate`];
//! - the same operations as free functions ([`insert`], [`get`], …) on the *current* database:
//!   the one [`Pg::scope`] set for this task, else `$DATABASE_URL`;
//! - [`Error`]: unique violations and serialization failures are distinct variants;
//! - [`Column`] (how a Rust type maps to a column), [`Table`], [`Query`], [`Col`].
//!
//! Key design decision: **the struct is the schema, and the database remembers it.**
//! [`Pg::migrate`] creates what is missing and records each table's DDL with a fingerprint;
//! a struct that no longer matches its table is reported at start, by name and DDL, instead of
//! failing later on some row. Transactions are `SERIALIZABLE` and retried on serialization
//! failures, like celldb's, so code moves between the two by changing the alias.
//!
//! What it is not: an ORM with relations or lazy loading, nor a migration generator (a changed
//! struct is detected, the `ALTER TABLE` is yours).
//!
//! # Example
//! ```
//! use cell_sdk::{cell_remote, protein};
//! cell_remote!(Postgres = "cell-postgres");
//!
//! #[protein]
//! #[Postgres::table(name = "users")]
//! pub struct User {
//!     #[Postgres::primary_key]
//!     #[Postgres::serial]
//!     id: u64,
//!     #[Postgres::unique]
//!     #[Postgres::varchar(255)]
//!     email: String,
//!     name: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cell_postgres::Result<()> {
//! # // A private server (skipped without PostgreSQL); an application uses $DATABASE_URL.
//! # let Some(server) = cell_postgres::testing::shared() else { return Ok(()) };
//! # let pg = server.pg().await;
//! # pg.scope(async {
//! Postgres::migrate::<User>().await?;
//! let id = Postgres::insert(&User { id: 0, email: "ada@x".into(), name: "Ada".into() }).await?;
//! let ada: Option<User> = Postgres::get::<User>(id).await?;
//! let same = Postgres::query::<User>().where_eq(User::email, "ada@x").first().await?;
//! assert_eq!(ada, same);
//! assert!(matches!(
//!     Postgres::insert(&User { id: 0, email: "ada@x".into(), name: "Other".into() }).await,
//!     Err(Postgres::Error::UniqueViolation { .. })
//! ));
//! # Ok(()) }).await }
//! ```
//!
//! Setup, the type mapping and migrations: `docs/postgres.md`.

// Lets `#[table]` expansions (`::cell_postgres::…`) work inside this crate's own tests and docs.
extern crate self as cell_postgres;

#[cfg(feature = "cli")]
pub mod cli;
mod column;
mod db;
mod error;
mod query;
mod table;
#[cfg(feature = "testing")]
pub mod testing;

pub use column::{Column, KeyArg, Param, Timestamp};
pub use db::{MAX_ATTEMPTS, Pg, SCHEMA_TABLE, Tx, URL_ENV, current, schema_of};
pub use error::{Error, Result};
pub use query::{Col, Query};
pub use table::{ColumnDef, Statements, Table, TableSchema, Tables, schema_sql};

/// Inserts `value` into the current database; returns its key (the generated one for a
/// `serial` key).
///
/// # Errors
/// [`Error::UniqueViolation`], [`Error::Encode`], connection errors.
pub async fn insert<T: Table>(value: &T) -> Result<T::Key> {
    current()?.insert(value).await
}

/// The record of `T` with key `key` in the current database.
///
/// # Errors
/// [`Error::Decode`], connection errors.
pub async fn get<T: Table>(key: impl KeyArg<T::Key>) -> Result<Option<T>> {
    current()?.get::<T>(key).await
}

/// Replaces the record with `value`'s key in the current database.
///
/// # Errors
/// [`Error::NotFound`], [`Error::UniqueViolation`], [`Error::Encode`], connection errors.
pub async fn update<T: Table>(value: &T) -> Result<()> {
    current()?.update(value).await
}

/// Deletes the record of `T` with key `key` from the current database; `true` if it existed.
///
/// # Errors
/// Connection errors.
pub async fn delete<T: Table>(key: impl KeyArg<T::Key>) -> Result<bool> {
    current()?.delete::<T>(key).await
}

/// A typed query on `T`'s table in the current database:
/// `query::<User>().where_eq(User::email, e).order_by(User::id).limit(10).all()`.
pub fn query<T: Table>() -> Query<T> {
    Query::on(query::Target::Current)
}

/// Runs `body` as one `SERIALIZABLE` transaction on the current database, retried on
/// serialization failures. **It may run more than once** (see [`Pg::transaction`]).
///
/// # Errors
/// The body's error, [`Error::SerializationFailure`] after [`MAX_ATTEMPTS`], connection errors.
pub async fn transaction<R, F, Fut>(body: F) -> Result<R>
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    current()?.transaction(body).await
}

/// Creates the missing tables of `S` (a table type or a tuple of them) in the current
/// database, and checks the existing ones against their recorded fingerprints (see
/// [`Pg::migrate`]).
///
/// # Errors
/// [`Error::SchemaChanged`], server errors.
pub async fn migrate<S: Tables>() -> Result<()> {
    current()?.migrate::<S>().await
}

// What `cell_remote!(Postgres = "cell-postgres")` puts under the consumer's alias (the shared
// contract, docs/export-contract.md). The macros read a generated copy of this declaration
// (macros/src/export_decl.rs, checked by a test); their docs are what editors show.
cell_sdk::export! {
    format = 1;
    cell = "cell-postgres";
    macros = cell_postgres_macros;

    attribute table {
        helpers = [primary_key, serial, unique, index, varchar(_: int), column(name: str)];
        args { name: str? }
    }
    // The helpers are macros too, so one written outside `table` gets a clear error (and its
    // docs show on hover).
    attribute primary_key {}
    attribute serial {}
    attribute unique {}
    attribute index {}
    attribute varchar {}
    attribute column {}

    api = [insert, get, update, delete, query, transaction, migrate, Pg, Tx, Error, Result, Timestamp, Col, Query];
}

/// Re-exports used by macro expansions. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use tokio_postgres::Row;
}
