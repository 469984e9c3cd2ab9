//! celldb on openraft: the replicated log, the deterministic state machine and snapshots, all
//! in the node's own fjall database (one journal serves the raft log, the vote and the data).
//!
//! openraft decides what is committed; this module stores it:
//! - [`LogStore`] ([`RaftLogStorage`](openraft::storage::RaftLogStorage)): entries and the vote
//!   in keyspaces of the celldb database, written by one journal thread that groups fsyncs. An
//!   append is reported flushed, and `save_vote` returns, only after the fsync that covers it.
//! - [`StateMachine`] ([`RaftStateMachine`](openraft::storage::RaftStateMachine)): applies
//!   [`Cmd`]s (write-sets that name their keyspaces) **deterministically**: a write-set's reads
//!   are checked against the state at its log index by comparing values, so every replica
//!   reaches the same commit or conflict decision whatever the batching, and the caller hears
//!   it as an [`Outcome`].
//! - [`SnapshotData`]: a consistent fjall view on the sending side, a staged file on the
//!   receiving side; transferred in chunks under the runtime's frame limit ([`snapshot`]).
//!
//! Every openraft type stays behind this module: openraft is pinned to an alpha, and an upgrade
//! should touch these files only. The research behind the choices is in
//! `docs/dev/openraft-notes.md`; the user-facing design in `docs/replication.md`.
//!
//! # Example
//! A one-node group on a temporary directory:
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use celldb::raft::{Cmd, CmdBuilder, Node, Outcome, RaftNode};
//! let dir = tempfile::tempdir()?;
//! let node = RaftNode::start_single(1, dir.path()).await?;
//! let mut cmd = CmdBuilder::new(0);
//! cmd.put("t.users", b"1", b"ada");
//! let answer = node.raft.client_write(cmd.finish()?).await?;
//! assert!(matches!(answer.data, Outcome::Committed { .. }));
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod cluster;
mod cmd;
mod log_store;
pub(crate) mod member;
mod node;
pub mod snapshot;
mod state_machine;
pub mod testing;

pub use cmd::{Cmd, CmdBuilder, CmdError, Outcome};
pub use log_store::LogStore;
pub use node::{NodeError, RaftNode, config, open_storage};
pub use snapshot::SnapshotData;
pub use state_machine::StateMachine;

/// A node's address as raft stores it in the membership.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// celldb's raft types: write-sets in, outcomes out, `u64` node ids.
    pub CellRaft:
        D = Cmd,
        R = Outcome,
        NodeId = u64,
        Node = Node,
);

/// A raft group member handle over celldb's storage.
pub type Raft = openraft::Raft<CellRaft, StateMachine>;

/// The keyspace of raft log entries (key: the index, 8 bytes big-endian).
pub(crate) const LOG_KEYSPACE: &str = "celldb.raft.log";
/// The keyspace of the vote, the committed log id and the last purged log id.
pub(crate) const META_KEYSPACE: &str = "celldb.raft.meta";
/// The keyspace of the state machine's own state (applied log id, membership).
pub(crate) const SM_KEYSPACE: &str = "celldb.raft.sm";
/// Replicated data lives in keyspaces named by this prefix and the name a write-set gives
/// (`r.t.users`): local tables of the same database are never touched by apply or install.
pub(crate) const DATA_PREFIX: &str = "r.";

/// The longest keyspace name a write-set may name (fjall allows 255 bytes with the prefix).
pub(crate) const MAX_KEYSPACE_NAME: usize = 200;

/// True for a keyspace name a replica may create: non-empty, short, and made of the
/// characters celldb's own names use. Checked on apply (the bytes come from the network).
pub(crate) fn valid_keyspace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEYSPACE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'#' | b'$'))
}

/// A JSON value stored at `key` of `ks` (raft's small metadata: vote, log ids, membership);
/// `None` when absent. `what` names the store in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    ks: &fjall::Keyspace,
    key: &[u8],
    what: &str,
) -> std::io::Result<Option<T>> {
    let name = String::from_utf8_lossy(key);
    let Some(bytes) = ks
        .get(key)
        .map_err(|e| io_error(format!("reading {what} {name}"), e))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io_error(format!("decoding {what} {name}"), e))
}

/// An I/O error for openraft (every storage error it sees is an `io::Error`, and fatal).
pub(crate) fn io_error(
    context: impl std::fmt::Display,
    e: impl std::fmt::Display,
) -> std::io::Error {
    std::io::Error::other(format!("{context}: {e}"))
}

#[cfg(test)]
mod tests;
