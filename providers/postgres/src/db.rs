//! [`Pg`] (a pool of connections to one database) and [`Tx`] (one serializable transaction),
//! over the same statement functions, plus the *current* database the free functions use.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;

use crate::column::{Column, KeyArg, refs};
use crate::error::{Error, Result};
use crate::query::Query;
use crate::table::{Table, TableSchema, Tables};

/// How many times [`Pg::transaction`] runs a body that keeps losing serialization conflicts.
pub const MAX_ATTEMPTS: u32 = 20;

/// The environment variable the default database comes from.
pub const URL_ENV: &str = "DATABASE_URL";

/// The name of the table `migrate` records schema versions and fingerprints in.
pub const SCHEMA_TABLE: &str = "cell_schema";

/// A PostgreSQL database: a pool of connections, cheap to clone.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("pool", &self.pool.status())
            .finish()
    }
}

tokio::task_local! {
    static CURRENT: Pg;
}

static DEFAULT: OnceLock<Pg> = OnceLock::new();

/// The current database: the one [`Pg::scope`] set for this task, else the one `$DATABASE_URL`
/// names (connected lazily, once per process; an unset variable is not remembered, so setting
/// it later works).
///
/// # Errors
/// [`Error::Config`] when neither is there.
pub fn current() -> Result<Pg> {
    if let Ok(pg) = CURRENT.try_with(Pg::clone) {
        return Ok(pg);
    }
    if let Some(pg) = DEFAULT.get() {
        return Ok(pg.clone());
    }
    let pg = Pg::from_env()?;
    // Two first callers may both build a pool; one is kept, the other never connected.
    Ok(DEFAULT.get_or_init(|| pg).clone())
}

impl Pg {
    /// A pool for `url` (`postgres://user@host:port/db` or `host=… dbname=…`). Connects lazily:
    /// the first statement opens the first connection.
    ///
    /// TLS follows the URL's `sslmode`: `disable`; `prefer` (the default: TLS when the server
    /// offers it); `require`. Without the `tls` feature, `prefer` connects in plain text (as a
    /// libpq built without SSL does) and `require` is refused here. With it, the server's
    /// certificate is always verified — against the system's roots, plus the PEM file
    /// `$PGSSLROOTCERT` names (libpq's variable) — and so is its name (the URL's host);
    /// libpq's `require` checks neither (see `docs/postgres.md`). TCP only: a Unix socket
    /// never uses TLS.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse, `sslmode=require` without the `tls`
    /// feature, or a `$PGSSLROOTCERT` that cannot be read.
    pub fn connect(url: &str) -> Result<Pg> {
        #[cfg(feature = "tls")]
        let roots = match std::env::var_os("PGSSLROOTCERT") {
            Some(path) => vec![std::fs::read(&path).map_err(|e| {
                Error::Config(format!(
                    "$PGSSLROOTCERT ({}) cannot be read: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?],
            None => Vec::new(),
        };
        #[cfg(not(feature = "tls"))]
        let roots = Vec::new();
        Pg::connect_with_roots(url, &roots)
    }

    /// [`Pg::connect`], trusting the server certificates signed by `root_pem` (a PEM
    /// certificate: a private CA, or a self-signed server certificate) besides the system's
    /// roots; `$PGSSLROOTCERT` is not read.
    ///
    /// # Errors
    /// As [`Pg::connect`], and [`Error::Config`] for a certificate that does not parse.
    #[cfg(feature = "tls")]
    pub fn connect_with_root_certificate(url: &str, root_pem: &[u8]) -> Result<Pg> {
        Pg::connect_with_roots(url, &[root_pem.to_vec()])
    }

    fn connect_with_roots(url: &str, roots: &[Vec<u8>]) -> Result<Pg> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Config(format!("bad database URL: {e}")))?;
        // `Fast` recycling: a connection the driver saw close is replaced; no extra round trip.
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => {
                Manager::from_config(config, tokio_postgres::NoTls, manager_config())
            }
            #[cfg(feature = "tls")]
            _ => Manager::from_config(config, tls_connector(roots)?, manager_config()),
            #[cfg(not(feature = "tls"))]
            tokio_postgres::config::SslMode::Prefer => {
                let _ = roots;
                Manager::from_config(config, tokio_postgres::NoTls, manager_config())
            }
            #[cfg(not(feature = "tls"))]
            _ => {
                return Err(Error::Config(
                    "the database URL asks for TLS (sslmode=require), and cell-postgres was \
                     built without it: enable its `tls` feature"
                        .to_owned(),
                ));
            }
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Pg { pool })
    }

    /// A pool for `$DATABASE_URL`.
    ///
    /// # Errors
    /// [`Error::Config`] when it is unset or does not parse.
    pub fn from_env() -> Result<Pg> {
        match std::env::var(URL_ENV) {
            Ok(url) => Pg::connect(&url),
            Err(_) => Err(Error::Config(format!(
                "${URL_ENV} is not set: set it (postgres://user@host:port/db) or use \
                 Pg::connect(url) with Pg::scope"
            ))),
        }
    }

    /// Runs `fut` with this database as the current one (what `Postgres::insert` and the
    /// other free functions use).
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        CURRENT.scope(self.clone(), fut).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(Error::from_pool)
    }

    /// Inserts `value`; returns its key (the generated one for a `serial` key).
    ///
    /// # Errors
    /// [`Error::UniqueViolation`], [`Error::Encode`], connection errors.
    pub async fn insert<T: Table>(&self, value: &T) -> Result<T::Key> {
        insert_on(&*self.client().await?, value).await
    }

    /// The record of `T` with key `key`.
    ///
    /// # Errors
    /// [`Error::Decode`] for a stored value that does not fit, connection errors.
    pub async fn get<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<Option<T>> {
        get_on(&*self.client().await?, &key.into_key()).await
    }

    /// Replaces the record with `value`'s key.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::UniqueViolation`], [`Error::Encode`], connection errors.
    pub async fn update<T: Table>(&self, value: &T) -> Result<()> {
        update_on(&*self.client().await?, value).await
    }

    /// Deletes the record with key `key`; `true` if there was one.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn delete<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<bool> {
        delete_on::<T>(&*self.client().await?, &key.into_key()).await
    }

    /// A typed query on `T`'s table.
    pub fn query<T: Table>(&self) -> Query<T> {
        Query::on(crate::query::Target::Pg(self.clone()))
    }

    /// Runs `body` in one `SERIALIZABLE` transaction, committed when it returns `Ok`.
    ///
    /// **The body may run more than once**: on a serialization failure (SQLSTATE 40001) or a
    /// deadlock, at any statement or at `COMMIT`, the transaction is rolled back and the body
    /// runs again, up to [`MAX_ATTEMPTS`] times. So it must have no side effects besides its
    /// statements. An `Err` from the body rolls back ([`Error::abort`] to give up on purpose).
    ///
    /// # Errors
    /// The body's error; [`Error::SerializationFailure`] after the last attempt;
    /// [`Error::ConnectionLost`] (nothing committed) or [`Error::CommitOutcomeUnknown`] when
    /// the server goes away.
    pub async fn transaction<R, F, Fut>(&self, mut body: F) -> Result<R>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(&mut body).await;
            match outcome {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, "serialization failure; retrying the transaction");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt<R, F, Fut>(&self, body: &mut F) -> Result<R>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let client = Arc::new(self.client().await?);
        client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .map_err(|e| Error::from_pg(e, "BEGIN"))?;
        let mut guard = OpenTx(Some(client.clone()));
        let tx = Tx {
            client,
            failed: Arc::new(std::sync::Mutex::new(None)),
        };
        let result = body(tx.clone()).await;
        // A statement error the body swallowed left the transaction aborted: COMMIT would
        // silently roll back, so report the first one.
        let failed = tx.failed.lock().map(|mut f| f.take()).unwrap_or(None);
        let result = match (result, failed) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        };
        let outcome = match result {
            Ok(value) => tx
                .client
                .batch_execute("COMMIT")
                .await
                .map(|()| value)
                .map_err(|e| Error::from_pg(e, "COMMIT")),
            Err(e) => {
                // Best effort: a lost connection rolls back by itself.
                let _ = tx.client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        };
        guard.0 = None;
        outcome
    }

    /// Creates the tables of `S` (one `#[Postgres::table]` type or a tuple of them) that do not
    /// exist yet, and checks the others were created from the same structs.
    ///
    /// Each table's DDL and its fingerprint (a hash of the DDL) are recorded in
    /// [`SCHEMA_TABLE`] with a version number. When the struct compiled in produces another
    /// DDL than the recorded one, `migrate` changes nothing and returns
    /// [`Error::SchemaChanged`], naming both. Concurrent `migrate` calls are serialized by an
    /// advisory lock.
    ///
    /// # Errors
    /// [`Error::SchemaChanged`]; server errors (a table that exists but was not created by
    /// `migrate`: `42P07`).
    pub async fn migrate<S: Tables>(&self) -> Result<()> {
        let mut schemas = Vec::new();
        S::schemas(&mut schemas);
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::from_pg(e, "BEGIN"))?;
        let pg = |e| Error::from_pg(e, "migrate");
        // 0x63656c6c = "cell": one lock for every migrate of this database.
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(1667591276);
             CREATE TABLE IF NOT EXISTS \"{SCHEMA_TABLE}\" (
                 table_name TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 fingerprint TEXT NOT NULL,
                 ddl TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(pg)?;
        for schema in &schemas {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT version, fingerprint, ddl FROM \"{SCHEMA_TABLE}\" WHERE table_name = $1"
                    ),
                    &[&schema.name],
                )
                .await
                .map_err(pg)?;
            match row {
                None => {
                    tx.batch_execute(&schema.ddl).await.map_err(pg)?;
                    tx.execute(
                        &format!(
                            "INSERT INTO \"{SCHEMA_TABLE}\" (table_name, version, fingerprint, ddl) \
                             VALUES ($1, 1, $2, $3)"
                        ),
                        &[&schema.name, &schema.fingerprint, &schema.ddl],
                    )
                    .await
                    .map_err(pg)?;
                    tracing::info!(table = schema.name, "created");
                }
                Some(row) => {
                    let stored = stored_schema(&row)?;
                    if stored.1 != schema.fingerprint {
                        return Err(Error::SchemaChanged {
                            table: schema.name.to_owned(),
                            version: stored.0,
                            stored: one_line(&stored.2),
                            current: one_line(&schema.ddl),
                        });
                    }
                }
            }
        }
        tx.commit().await.map_err(|e| Error::from_pg(e, "COMMIT"))
    }

    /// The DDL `migrate` recorded, table by table (name, version, DDL), in name order; empty
    /// when `migrate` never ran on this database.
    ///
    /// # Errors
    /// Connection and server errors.
    pub async fn recorded_schema(&self) -> Result<Vec<(String, i32, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT table_name, version, ddl FROM \"{SCHEMA_TABLE}\" ORDER BY 1"),
                &[],
            )
            .await
            .map_err(|e| Error::from_pg(e, "a statement"));
        let rows = match rows {
            // No `cell_schema` table: `migrate` never ran here.
            Err(Error::Db { code, .. }) if code == "42P01" => return Ok(Vec::new()),
            other => other?,
        };
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0).map_err(|e| stored_error(&e))?;
                let version: i32 = r.try_get(1).map_err(|e| stored_error(&e))?;
                let ddl: String = r.try_get(2).map_err(|e| stored_error(&e))?;
                Ok((name, version, ddl))
            })
            .collect()
    }
}

/// Returns a connection whose transaction did not finish (the body's future was dropped, or
/// it panicked) to the pool only after a `ROLLBACK`, so the next user never inherits it.
struct OpenTx(Option<Arc<deadpool_postgres::Object>>);

impl Drop for OpenTx {
    fn drop(&mut self) {
        if let Some(client) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = client.batch_execute("ROLLBACK").await;
            });
        }
    }
}

/// The TLS side of a connection: native-tls (the system's OpenSSL), verifying the server's
/// certificate and name against the system's roots and `roots` (PEM).
#[cfg(feature = "tls")]
fn tls_connector(roots: &[Vec<u8>]) -> Result<postgres_native_tls::MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    for pem in roots {
        let cert = native_tls::Certificate::from_pem(pem)
            .map_err(|e| Error::Config(format!("a root certificate that is not PEM: {e}")))?;
        builder.add_root_certificate(cert);
    }
    let connector = builder
        .build()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
}

fn stored_schema(row: &tokio_postgres::Row) -> Result<(i32, String, String)> {
    let version: i32 = row.try_get(0).map_err(|e| stored_error(&e))?;
    let fingerprint: String = row.try_get(1).map_err(|e| stored_error(&e))?;
    let ddl: String = row.try_get(2).map_err(|e| stored_error(&e))?;
    Ok((version, fingerprint, ddl))
}

fn stored_error(e: &tokio_postgres::Error) -> Error {
    Error::Decode {
        table: SCHEMA_TABLE,
        column: "?",
        reason: e.to_string(),
    }
}

fn one_line(ddl: &str) -> String {
    ddl.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exponential, capped, with jitter from the clock (no RNG dependency): concurrent losers do
/// not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = 1u64 << attempt.min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) % 1000);
    Duration::from_micros(base * 500 + jitter)
}

/// One serializable transaction, handed to the body of [`Pg::transaction`]. Cheap to clone;
/// every clone is the same transaction.
#[derive(Clone)]
pub struct Tx {
    client: Arc<deadpool_postgres::Object>,
    /// The first statement error, which left the server-side transaction aborted.
    failed: Arc<std::sync::Mutex<Option<Error>>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    /// Remembers the first error of a statement (see `attempt`), and passes it on.
    fn note<R>(&self, result: Result<R>) -> Result<R> {
        // Only errors the server raised abort its transaction; the client's own (`Encode`,
        // `Decode`, `NotFound`) leave it usable.
        if let Err(e) = &result
            && matches!(
                e,
                Error::UniqueViolation { .. }
                    | Error::SerializationFailure(_)
                    | Error::Db { .. }
                    | Error::ConnectionLost { .. }
            )
            && let Ok(mut failed) = self.failed.lock()
            && failed.is_none()
        {
            *failed = Some(e.clone());
        }
        result
    }

    /// Inserts `value` in this transaction; returns its key.
    ///
    /// # Errors
    /// As [`Pg::insert`].
    pub async fn insert<T: Table>(&self, value: &T) -> Result<T::Key> {
        self.note(insert_on(&self.client, value).await)
    }

    /// Reads the record with key `key` in this transaction.
    ///
    /// # Errors
    /// As [`Pg::get`].
    pub async fn get<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<Option<T>> {
        self.note(get_on(&self.client, &key.into_key()).await)
    }

    /// Replaces the record with `value`'s key in this transaction.
    ///
    /// # Errors
    /// As [`Pg::update`].
    pub async fn update<T: Table>(&self, value: &T) -> Result<()> {
        self.note(update_on(&self.client, value).await)
    }

    /// Deletes the record with key `key` in this transaction.
    ///
    /// # Errors
    /// As [`Pg::delete`].
    pub async fn delete<T: Table>(&self, key: impl KeyArg<T::Key>) -> Result<bool> {
        self.note(delete_on::<T>(&self.client, &key.into_key()).await)
    }

    /// A typed query in this transaction.
    pub fn query<T: Table>(&self) -> Query<T> {
        Query::on(crate::query::Target::Tx(self.clone()))
    }

    pub(crate) async fn run_rows(
        &self,
        sql: &str,
        params: &[crate::Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.note(rows_on(&self.client, sql, params).await)
    }
}

fn stmt_error(e: tokio_postgres::Error) -> Error {
    Error::from_pg(e, "a statement")
}

fn key_decode<T: Table>(reason: String) -> Error {
    Error::Decode {
        table: T::TABLE,
        column: T::COLUMNS[T::KEY].name,
        reason,
    }
}

async fn insert_on<T: Table>(client: &ClientWrapper, value: &T) -> Result<T::Key> {
    let params = value.insert_params()?;
    let stmt = client
        .prepare_cached(T::SQL.insert)
        .await
        .map_err(stmt_error)?;
    let row = client
        .query_one(&stmt, &refs(&params))
        .await
        .map_err(stmt_error)?;
    T::Key::decode(&row, 0).map_err(key_decode::<T>)
}

async fn get_on<T: Table>(client: &ClientWrapper, key: &T::Key) -> Result<Option<T>> {
    let key = key.encode().map_err(|reason| Error::Encode {
        table: T::TABLE,
        column: T::COLUMNS[T::KEY].name,
        reason,
    })?;
    let stmt = client
        .prepare_cached(T::SQL.get)
        .await
        .map_err(stmt_error)?;
    // One parameter: borrowed in place, not collected into a `Vec` as `refs` would.
    let row = client
        .query_opt(&stmt, &[&key as &(dyn ToSql + Sync)])
        .await
        .map_err(stmt_error)?;
    row.as_ref().map(T::from_row).transpose()
}

async fn update_on<T: Table>(client: &ClientWrapper, value: &T) -> Result<()> {
    let params = value.update_params()?;
    let stmt = client
        .prepare_cached(T::SQL.update)
        .await
        .map_err(stmt_error)?;
    let n = client
        .execute(&stmt, &refs(&params))
        .await
        .map_err(stmt_error)?;
    if n == 0 {
        return Err(Error::NotFound { table: T::TABLE });
    }
    Ok(())
}

async fn delete_on<T: Table>(client: &ClientWrapper, key: &T::Key) -> Result<bool> {
    let key = key.encode().map_err(|reason| Error::Encode {
        table: T::TABLE,
        column: T::COLUMNS[T::KEY].name,
        reason,
    })?;
    let stmt = client
        .prepare_cached(T::SQL.delete)
        .await
        .map_err(stmt_error)?;
    let n = client
        .execute(&stmt, &[&key as &(dyn ToSql + Sync)])
        .await
        .map_err(stmt_error)?;
    Ok(n > 0)
}

pub(crate) async fn rows_on(
    client: &ClientWrapper,
    sql: &str,
    params: &[crate::Param<'_>],
) -> Result<Vec<tokio_postgres::Row>> {
    let stmt = client.prepare_cached(sql).await.map_err(stmt_error)?;
    client.query(&stmt, &refs(params)).await.map_err(stmt_error)
}

impl Pg {
    pub(crate) async fn run_rows(
        &self,
        sql: &str,
        params: &[crate::Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        rows_on(&*self.client().await?, sql, params).await
    }
}

/// The schema of one table, for tools: see [`TableSchema::of`].
pub fn schema_of<T: Table>() -> TableSchema {
    TableSchema::of::<T>()
}
