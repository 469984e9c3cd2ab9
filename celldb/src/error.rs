//! The one error type of celldb's API.

use std::path::PathBuf;

/// Everything that can go wrong in celldb. Bytes read from disk that fail validation are a
/// [`Error::Corrupt`], never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine (fjall) or the file system failed.
    #[error("storage error{}: {source}", while_doing(.at))]
    Storage {
        /// What celldb was doing, naming the directory, table or keyspace (empty when the
        /// error came from a call that names nothing more than the operation).
        at: String,
        /// fjall's error.
        source: fjall::Error,
    },
    /// An I/O error outside fjall (lock file, directories).
    #[error("I/O error at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process (or another `Db` in this process) holds the database directory.
    #[error(
        "the database at {path} is in use by another process (lock file {path}/LOCK is held); \
         stop that process or open another directory"
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// A directory opened read-only (`celldb inspect`) holds no celldb database.
    #[error("{path} is not a celldb database: {reason}")]
    NotADatabase {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The table on disk was written by a different type than the one opening it.
    #[error(
        "table `{table}` on disk does not match the type opening it: {what}\n  on disk: {stored}\n  \
         in code: {current}\nkeep the old type and declare it with `#[DB::persist(prev = OldType)]` \
         plus `impl From<OldType> for NewType`, or use another table name"
    )]
    SchemaMismatch {
        /// The table name.
        table: String,
        /// What changed, in words (fields, key type, indexes).
        what: String,
        /// The structure recorded on disk.
        stored: String,
        /// The structure of the type in code.
        current: String,
    },
    /// Bytes on disk are not a valid record, index entry or metadata.
    #[error("corrupt data in `{table}`: {reason}")]
    Corrupt {
        /// The table (or `meta`) where the bytes were found.
        table: String,
        /// What the validator said.
        reason: String,
    },
    /// `insert` of a key that already exists.
    #[error("`{table}` already has a record with this key")]
    AlreadyExists {
        /// The table.
        table: String,
    },
    /// `update` of a key that does not exist.
    #[error("`{table}` has no record with this key")]
    NotFound {
        /// The table.
        table: String,
    },
    /// A write would give two records the same value of a unique index.
    #[error("unique constraint `{table}.{index}` violated: another record has this value")]
    UniqueViolation {
        /// The table.
        table: String,
        /// The unique field.
        index: String,
    },
    /// A transaction kept conflicting with concurrent writers and gave up.
    #[error("transaction gave up after {attempts} optimistic conflicts")]
    Conflict {
        /// How many times it ran.
        attempts: u32,
    },
    /// A value could not be encoded.
    #[error("cannot encode a `{table}` record: {reason}")]
    Encode {
        /// The table.
        table: String,
        /// What the encoder said.
        reason: String,
    },
    /// The commit log failed (its writer stopped or the engine is poisoned after an I/O error).
    #[error("commit failed: {0}")]
    Commit(String),
    /// The transaction body chose to abort (see [`Error::abort`]).
    #[error("transaction aborted: {0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// The celldb server refused a request or failed (its storage, a malformed request), or
    /// the operation needs the database directory and this handle is on a server.
    #[error("celldb server: {0}")]
    Remote(String),
    /// The celldb server could not be reached, or the connection broke during the call. For a
    /// commit, the outcome is unknown: it may or may not have been applied.
    #[error("cannot reach the celldb server: {0}")]
    Connection(String),
    /// A table declared `replicate = "raft"` was opened on a database that is not a raft
    /// group (a local directory or a single celldb server).
    #[error(
        "table `{table}` is declared `replicate = \"raft\"`, but this database ({database}) is a \
         single node, not a raft group: start the group and open the table through it (see \
         docs/replication.md), or declare the table `replicate = \"local\"`"
    )]
    NotReplicated {
        /// The table.
        table: String,
        /// The database it was opened on (a directory, or a server's address).
        database: String,
    },
    /// A raft write or linearizable read reached a node that is not the group's leader.
    #[error(
        "this node is not the raft group's leader{}: writes and linearizable reads go to the \
         leader",
        match .leader { Some(id) => format!(" (node {id} is)"), None => " (none is known yet)".to_string() }
    )]
    NotLeader {
        /// The leader, when this node knows it.
        leader: Option<u64>,
    },
    /// A transaction mixed raft and local tables in a way one commit cannot honour.
    #[error("a transaction cannot combine raft and local tables this way: {detail}")]
    MixedReplication {
        /// What it did.
        detail: String,
    },
    /// A member started with a staleness bound could not confirm, within its wait, that its
    /// replica holds every write acknowledged more than the bound ago (no leader answered a
    /// read index): the read is refused rather than served from older data.
    #[error(
        "this member's replica may be more than {bound:?} behind the raft group, and no leader \
         confirmed a newer read index: {reason}"
    )]
    TooStale {
        /// The member's staleness bound.
        bound: std::time::Duration,
        /// Why freshness could not be confirmed.
        reason: String,
    },
    /// The default database could not be opened.
    #[error("cannot open the default database: {0}")]
    Default(String),
}

impl From<fjall::Error> for Error {
    fn from(source: fjall::Error) -> Self {
        Error::Storage {
            at: String::new(),
            source,
        }
    }
}

impl Error {
    /// A storage error with what celldb was doing (`at`: "opening table users", …).
    pub(crate) fn storage(at: impl Into<String>, source: fjall::Error) -> Self {
        Error::Storage {
            at: at.into(),
            source,
        }
    }

    /// Aborts a transaction with your own error: nothing it wrote is committed.
    pub fn abort(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Aborted(reason.into())
    }
}

fn while_doing(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" while {at}")
    }
}

/// `Result` with celldb's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
