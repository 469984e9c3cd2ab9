//! celldb as a group of processes: `celldb serve --cluster` nodes that replicate through
//! openraft over the Cell runtime, and the client that reaches them with the same `DB::` API
//! (`CELLDB_URL=raft://host:port,host:port,…`). The user's guide is `docs/replication.md`.
//!
//! - [`wire`]: the one service every node serves (raft traffic and client calls).
//! - `identity`: cluster id, node id, incarnations — who may talk to whom.
//! - `peer`: openraft's network over that service.
//! - [`server`]: a node, and the service's handlers.
//! - [`client`]: a [`Db`](crate::Db) whose engine is a group: it finds the leader, follows
//!   redirects, and retries a commit whose answer was lost with the same request id.

pub mod client;
pub(crate) mod identity;
pub(crate) mod peer;
pub mod server;
pub mod wire;

pub use server::{ClusterConfig, ClusterNode, Handler};
