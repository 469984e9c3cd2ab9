//! The one error type of cell-postgres: server errors classified by SQLSTATE, so callers can
//! tell a unique violation from a serialization failure without reading messages.

/// Result with cell-postgres' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Driver and pool types never leak: the server's SQLSTATE code and messages
/// are kept as strings.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `UNIQUE` or primary-key constraint refused the write (SQLSTATE 23505).
    #[error("unique violation on `{constraint}`: {detail}")]
    UniqueViolation {
        /// The constraint's name (`users_email_key`, `users_pkey`).
        constraint: String,
        /// The server's detail (`Key (email)=(ada@x) already exists.`).
        detail: String,
    },
    /// A serializable transaction lost a conflict (SQLSTATE 40001, or a deadlock, 40P01).
    /// [`transaction`](crate::transaction) retries these by itself; this error reaches the
    /// caller only after its last attempt, or from a statement outside a transaction.
    #[error("serialization failure (the transaction conflicted with a concurrent one): {0}")]
    SerializationFailure(String),
    /// `update` found no record with the value's key.
    #[error("no record in `{table}` with this key")]
    NotFound {
        /// The table.
        table: &'static str,
    },
    /// A value cannot be stored in its column (a NUL in a `String`, a `u64` above `i64::MAX`).
    #[error("cannot store `{table}.{column}`: {reason}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored value does not fit its field (a column of another type, written by an older
    /// schema; a negative number in a `u64` field).
    #[error("cannot read `{table}.{column}`: {reason}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// Why.
        reason: String,
    },
    /// The database holds a table created from a different struct than the one compiled in.
    #[error(
        "table `{table}` in the database was created from a different struct (schema version \
         {version}).\n  stored:  {stored}\n  current: {current}\n  help: write the migration \
         (ALTER TABLE …) and apply it, or drop the table in a development database; see \
         docs/postgres.md#migrations"
    )]
    SchemaChanged {
        /// The table.
        table: String,
        /// The stored version number.
        version: i32,
        /// The stored DDL.
        stored: String,
        /// The DDL of the struct compiled in.
        current: String,
    },
    /// The transaction body gave up ([`Error::abort`]); nothing was committed.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The connection to the server was lost; the statement (and the transaction it was in)
    /// did not commit.
    #[error(
        "the connection to PostgreSQL was lost during {during}; nothing was committed: {reason}"
    )]
    ConnectionLost {
        /// What was running (`a statement`, `BEGIN`).
        during: &'static str,
        /// The driver's words.
        reason: String,
    },
    /// The connection was lost while `COMMIT` was in flight: the server may or may not have
    /// committed. Only a read can tell.
    #[error("the connection to PostgreSQL was lost during COMMIT; the outcome is unknown: {0}")]
    CommitOutcomeUnknown(String),
    /// No database configured, or an unusable URL.
    #[error("configuration: {0}")]
    Config(String),
    /// No connection could be made or taken from the pool.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// Any other error the server reported.
    #[error("PostgreSQL error {code}: {message}")]
    Db {
        /// The SQLSTATE code (`22001`).
        code: String,
        /// The server's message.
        message: String,
    },
}

impl Error {
    /// An error a transaction body returns to give up (nothing is committed, no retry).
    pub fn abort(reason: impl Into<String>) -> Error {
        Error::Aborted(reason.into())
    }

    /// Whether a new attempt of the same transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::SerializationFailure(_))
    }

    /// Classifies a driver error raised while `during` ran.
    pub(crate) fn from_pg(e: tokio_postgres::Error, during: &'static str) -> Error {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            return match code {
                "23505" => Error::UniqueViolation {
                    constraint: db.constraint().unwrap_or_default().to_owned(),
                    detail: db.detail().unwrap_or(db.message()).to_owned(),
                },
                "40001" | "40P01" => Error::SerializationFailure(db.message().to_owned()),
                // The server is going away (shutdown, crash of another process, postmaster
                // death): the connection ends, and with it any open transaction.
                "57P01" | "57P02" | "57P03" if during == "COMMIT" => {
                    Error::CommitOutcomeUnknown(db.message().to_owned())
                }
                "57P01" | "57P02" | "57P03" => Error::ConnectionLost {
                    during,
                    reason: db.message().to_owned(),
                },
                _ => Error::Db {
                    code: code.to_owned(),
                    message: db.message().to_owned(),
                },
            };
        }
        if e.is_closed() || is_io(&e) {
            let reason = full_message(&e);
            return if during == "COMMIT" {
                Error::CommitOutcomeUnknown(reason)
            } else {
                Error::ConnectionLost { during, reason }
            };
        }
        Error::Db {
            code: String::new(),
            message: full_message(&e),
        }
    }

    pub(crate) fn from_pool(e: deadpool_postgres::PoolError) -> Error {
        match e {
            deadpool_postgres::PoolError::Backend(e) => match Error::from_pg(e, "connecting") {
                Error::ConnectionLost { reason, .. } => Error::Connect(reason),
                other => other,
            },
            other => Error::Connect(other.to_string()),
        }
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn full_message(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
