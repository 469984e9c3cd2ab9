//! Who a node is, and who it has met: the cluster id, the node id and the incarnation of its
//! directory, and the incarnation of every peer it has exchanged raft messages with.
//!
//! An incarnation is a random number made when a directory first becomes a cluster node. A
//! node's raft state (its vote, its log) belongs to that directory: the same node id on a
//! wiped or copied directory is another incarnation, and raft's safety would break if the
//! group took it for the old one (it could vote twice in a term, or forget acknowledged
//! entries). So every raft message carries the sender's incarnation, every reply the
//! responder's, and a node remembers the first incarnation it saw for each peer id (on disk):
//! a different one later is refused, with a log line naming the cause and the remedy. Ids are
//! never reused: `celldb cluster add` allocates them from a replicated counter.

use crate::raft::NodeError;
use crate::raft::cluster::wire::PeerHeader;
use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The local keyspace of the node's identity (never replicated).
const KEYSPACE: &str = "celldb.cluster";

/// A node's identity and its memory of its peers'.
pub(crate) struct Identity {
    /// The cluster id.
    pub(crate) cluster: String,
    /// This node's id.
    pub(crate) node: u64,
    /// This directory's incarnation.
    pub(crate) incarnation: u64,
    db: fjall::Database,
    ks: Keyspace,
    peers: Mutex<HashMap<u64, u64>>,
    /// Messages refused at the envelope.
    pub(crate) refused: AtomicU64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

fn storage(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Raft(format!("{what}: {e}"))
}

impl Identity {
    /// The identity stored in `db`, or a new one (cluster `cluster`, node `node`, a fresh
    /// incarnation) for a directory that never was a cluster node. A directory of another
    /// cluster or another node id is refused.
    pub(crate) fn load_or_create(
        db: &fjall::Database,
        cluster: &str,
        node: u64,
    ) -> Result<Self, NodeError> {
        let ks = db
            .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(|e| storage("opening the node identity", e))?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, NodeError> {
            Ok(ks
                .get(key)
                .map_err(|e| storage("reading the node identity", e))?
                .map(|v| v.to_vec()))
        };
        let stored_cluster = get("cluster")?;
        let incarnation = match stored_cluster {
            Some(stored) => {
                let stored = String::from_utf8_lossy(&stored).into_owned();
                if stored != cluster {
                    return Err(NodeError::Raft(format!(
                        "this directory belongs to cluster {stored:?}, not {cluster:?} \
                         (--cluster-id): a node keeps its cluster for life"
                    )));
                }
                let stored_node = get("node")?
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                if stored_node != Some(node) {
                    return Err(NodeError::Raft(format!(
                        "this directory is node {} of cluster {cluster:?}, not node {node} \
                         (--node-id)",
                        stored_node.map_or("?".to_string(), |n| n.to_string())
                    )));
                }
                get("incarnation")?
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| NodeError::Raft("the node identity has no incarnation".into()))?
            }
            None => {
                let incarnation = getrandom::u64()
                    .map_err(|e| storage("no random numbers from the OS", e))?
                    .max(1);
                ks.insert("node", node.to_be_bytes())
                    .and_then(|()| ks.insert("incarnation", incarnation.to_be_bytes()))
                    // Last: a crash before it leaves a directory that is still "new".
                    .and_then(|()| ks.insert("cluster", cluster.as_bytes()))
                    .map_err(|e| storage("writing the node identity", e))?;
                db.persist(PersistMode::SyncAll)
                    .map_err(|e| storage("syncing the node identity", e))?;
                incarnation
            }
        };
        let mut peers = HashMap::new();
        for guard in ks.prefix("peer/") {
            let (k, v) = guard
                .into_inner()
                .map_err(|e| storage("reading known peers", e))?;
            let id = std::str::from_utf8(&k["peer/".len()..])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            let inc = <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes);
            if let (Some(id), Some(inc)) = (id, inc) {
                peers.insert(id, inc);
            }
        }
        Ok(Self {
            cluster: cluster.to_string(),
            node,
            incarnation,
            db: db.clone(),
            ks,
            peers: Mutex::new(peers),
            refused: AtomicU64::new(0),
        })
    }

    /// The envelope of a message to node `to`.
    pub(crate) fn header(&self, to: u64) -> PeerHeader {
        PeerHeader {
            cluster: self.cluster.clone(),
            from: self.node,
            from_incarnation: self.incarnation,
            to,
        }
    }

    /// Checks a received envelope; `Err(reason)` refuses the message (and is logged here).
    pub(crate) fn admit(&self, header: &PeerHeader) -> Result<(), String> {
        let result = if header.cluster != self.cluster {
            Err(format!(
                "a message from node {} of cluster {:?} reached node {} of cluster {:?}: refused \
                 (check --cluster and --cluster-id)",
                header.from, header.cluster, self.node, self.cluster
            ))
        } else if header.to != self.node {
            Err(format!(
                "a message for node {} reached node {} (from node {}): refused; two nodes share \
                 an address, or the sender's address list is wrong",
                header.to, self.node, header.from
            ))
        } else if header.from == self.node {
            Err(format!(
                "a message claims to come from node {}, this node's own id: refused; two \
                 processes use one node id",
                self.node
            ))
        } else {
            self.meet(header.from, header.from_incarnation)
        };
        if let Err(reason) = &result {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = self.node, "{reason}");
        }
        result
    }

    /// Checks the incarnation in a reply from `peer`.
    pub(crate) fn check_reply(&self, peer: u64, incarnation: u64) -> Result<(), String> {
        let result = self.meet(peer, incarnation);
        if let Err(reason) = &result {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = self.node, "{reason}");
        }
        result
    }

    /// Remembers `peer`'s incarnation the first time, and compares it afterwards.
    fn meet(&self, peer: u64, incarnation: u64) -> Result<(), String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get(&peer) {
            Some(&known) if known == incarnation => Ok(()),
            Some(&known) => Err(format!(
                "node {peer} presents incarnation {incarnation:016x}, but this cluster knows node \
                 {peer} as incarnation {known:016x}: its directory was wiped, replaced or copied. \
                 Refused: a node must not rejoin with its old id. Remove it \
                 (`celldb cluster remove {peer}`) and add it again (`celldb cluster add`), which \
                 gives it a new id"
            )),
            None => {
                let key = format!("peer/{peer}");
                self.ks
                    .insert(key, incarnation.to_be_bytes())
                    .and_then(|()| self.db.persist(PersistMode::SyncAll))
                    .map_err(|e| format!("recording node {peer}'s incarnation: {e}"))?;
                peers.insert(peer, incarnation);
                Ok(())
            }
        }
    }
}
