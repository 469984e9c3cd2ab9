//! The protocol of a celldb cluster node (`celldb serve --cluster`): one Cell service for raft
//! traffic between nodes and for clients, on one authenticated TCP port.
//!
//! Raft messages travel as bincode bytes of openraft's own types inside a [`PeerHeader`]
//! envelope: the header carries the cluster id and the incarnations that every node checks
//! before it hands a message to raft (see `identity.rs`). Client calls carry names of
//! replicated keyspaces (`t.<table>`, `i.<table>.<index>`) and [`Cmd`](crate::raft::Cmd)
//! bytes, which every replica validates again when it applies them.

use crate::schema::TableMeta;
use crate::wire::WireBound;
use cell_sdk::{protein, service};

/// Who sends a raft message, to whom, in which cluster.
#[protein]
pub struct PeerHeader {
    /// The cluster id (`celldb serve --cluster-id`): a node of another cluster is refused.
    pub cluster: String,
    /// The sending node.
    pub from: u64,
    /// The sender's incarnation (random, made when its directory was created).
    pub from_incarnation: u64,
    /// The node the sender means to reach: a node with another id refuses the message.
    pub to: u64,
}

/// A raft reply: the responder's incarnation (the sender checks it) and openraft's answer.
#[protein]
pub struct PeerReply {
    /// The responding node's incarnation.
    pub incarnation: u64,
    /// bincode of openraft's response.
    pub body: Vec<u8>,
}

/// Why a node refused or failed a raft message.
#[protein]
pub enum PeerError {
    /// The envelope is wrong: another cluster, another node id, an incarnation the cluster
    /// does not know for that id. Logged on both sides; nothing reached raft.
    Refused(String),
    /// The body did not decode.
    BadMessage(String),
    /// This node's raft failed the request (it is shutting down, its storage failed).
    Raft(String),
}

/// Where a client's write or linearizable read must go instead.
#[protein]
pub struct Redirect {
    /// The leader's node id, when this node knows it.
    pub leader: Option<u64>,
    /// The leader's address, when known.
    pub addr: Option<String>,
}

/// A client call's failure.
#[protein]
pub enum ClusterError {
    /// This node is not the leader: try the one named.
    NotLeader(Redirect),
    /// The group cannot answer now (no quorum, an election in progress, shutting down).
    Unavailable(String),
    /// The client's session is not (or no longer) known to the group.
    SessionExpired,
    /// A malformed request (bad keyspace name, oversized command).
    BadRequest(String),
    /// The table's replicated schema differs from the client's type: `(table, what)`.
    SchemaMismatch(String, String),
    /// Storage failed on the node.
    Storage(String),
}

/// The outcome of a committed request, as the group decided it.
#[protein]
pub enum CommitReply {
    /// Applied at this log index.
    Committed(u64),
    /// A read check failed; nothing was written.
    Conflict,
    /// Every replica refused the bytes.
    Rejected(String),
}

/// A page of a range read.
#[protein]
pub struct RangePage {
    /// Keys and values in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The page was cut: ask again from after the last key.
    pub more: bool,
}

/// A node's view of the group (`celldb cluster status`).
#[protein]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// The cluster id.
    pub cluster: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Last applied index on this node.
    pub applied: Option<u64>,
    /// Voters: `(id, address)`.
    pub voters: Vec<(u64, String)>,
    /// Learners: `(id, address)`.
    pub learners: Vec<(u64, String)>,
    /// fsyncs of this node's raft journal since it started.
    pub fsyncs: u64,
    /// Raft messages refused at the envelope since it started.
    pub refused: u64,
}

/// The celldb cluster service (one per node).
#[service(name = "celldb-cluster")]
pub trait CellDbCluster {
    /// Raft: AppendEntries.
    async fn append(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError>;
    /// Raft: RequestVote.
    async fn vote(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError>;
    /// Raft: pre-vote.
    async fn pre_vote(&self, header: PeerHeader, body: Vec<u8>) -> Result<PeerReply, PeerError>;
    /// Raft: one chunk of snapshot transfer `transfer` (chunk 0 starts it).
    async fn snapshot_chunk(
        &self,
        header: PeerHeader,
        transfer: u64,
        index: u64,
        chunk: Vec<u8>,
    ) -> Result<PeerReply, PeerError>;
    /// Raft: installs transfer `transfer`; `body` is bincode of the vote and snapshot meta.
    async fn snapshot_install(
        &self,
        header: PeerHeader,
        transfer: u64,
        body: Vec<u8>,
    ) -> Result<PeerReply, PeerError>;

    /// This node's view of the group.
    async fn status(&self) -> NodeStatus;
    /// This node's applied index and the xxh3 digest of its replicated data (replicas that
    /// applied the same log agree). Reads every record: for tests and audits.
    async fn digest(&self) -> Result<(u64, u64), ClusterError>;
    /// Opens a client session (on the leader): requests carry its id and a sequence number,
    /// and a retried request gets its first outcome instead of being applied twice.
    async fn open_session(&self) -> Result<u64, ClusterError>;
    /// The leader's applied index after a read barrier: a follower that has applied this far
    /// serves a linearizable read.
    async fn read_index(&self) -> Result<u64, ClusterError>;
    /// Registers (or checks) a table's replicated schema.
    async fn open_table(&self, table: String, meta: TableMeta) -> Result<(), ClusterError>;
    /// A linearizable point read (on the leader, after a read barrier), or with `stale`, the
    /// value this node has applied (any node).
    async fn read(
        &self,
        keyspace: String,
        key: Vec<u8>,
        stale: bool,
    ) -> Result<Option<Vec<u8>>, ClusterError>;
    /// A linearizable range read, one page at a time.
    async fn range(
        &self,
        keyspace: String,
        start: WireBound,
        end: WireBound,
        stale: bool,
    ) -> Result<RangePage, ClusterError>;
    /// The number of entries of a keyspace (linearizable).
    async fn count(&self, keyspace: String) -> Result<u64, ClusterError>;
    /// Proposes a write-set (`Cmd` bytes naming its session and sequence number); answers
    /// once it is committed on a majority and applied here.
    async fn commit(&self, cmd: Vec<u8>) -> Result<CommitReply, ClusterError>;
    /// A read-only transaction's commit: after a read barrier, do all its reads still hold?
    async fn verify(&self, cmd: Vec<u8>) -> Result<bool, ClusterError>;
    /// Allocates a node id for a new node at `addr` and adds it as a learner; returns the id.
    async fn add_learner(&self, addr: String) -> Result<u64, ClusterError>;
    /// Makes learner `id` a voter (it must have caught up).
    async fn promote(&self, id: u64) -> Result<(), ClusterError>;
    /// Removes node `id` from the group.
    async fn remove(&self, id: u64) -> Result<(), ClusterError>;
}
