//! Raft's network between cluster nodes: openraft's [`RaftNetworkV2`] over Cell calls to the
//! peers' [`CellDbCluster`](super::wire::CellDbCluster) service (authenticated TCP).
//!
//! Each message is openraft's own request, bincode-encoded, in a [`PeerHeader`] envelope that
//! the receiver checks before raft sees anything (see [`super::identity`]); the reply carries
//! the responder's incarnation, which the sender checks in turn. A connection that fails is
//! dropped and made again on the next message; a peer that cannot be reached is reported
//! `Unreachable`, so openraft backs off instead of spinning.

use crate::raft::cluster::identity::Identity;
use crate::raft::cluster::wire::{CellDbClusterClient, PeerError, PeerReply};
use crate::raft::snapshot::{ChunkEncoder, SnapshotData};
use crate::raft::{CellRaft, Node};
use cell_sdk::{CallError, Endpoint, SynapseConfig};
use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type C = CellRaft;

/// The largest raft message body accepted (under the runtime's 16 MiB frame).
pub(crate) const MAX_BODY: u64 = 15 << 20;

/// Payload bytes of entries one AppendEntries message carries at most (one entry larger than
/// this goes alone; an entry is at most 12 MiB, under [`MAX_BODY`]).
const SPLIT_BYTES: usize = 4 << 20;

/// Splits an AppendEntries request into parts of at most [`SPLIT_BYTES`] of entries.
fn split(rpc: AppendEntriesRequest<C>) -> Vec<AppendEntriesRequest<C>> {
    let size = |e: &openraft::type_config::alias::EntryOf<C>| match &e.payload {
        openraft::EntryPayload::Normal(cmd) => cmd.0.len(),
        _ => 256,
    };
    if rpc.entries.iter().map(size).sum::<usize>() <= SPLIT_BYTES {
        return vec![rpc];
    }
    let AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries,
    } = rpc;
    let mut parts = Vec::new();
    let mut prev = prev_log_id;
    let mut current = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let n = size(&entry);
        if !current.is_empty() && bytes + n > SPLIT_BYTES {
            let done: Vec<_> = std::mem::take(&mut current);
            let next_prev = done
                .last()
                .map(|e: &openraft::type_config::alias::EntryOf<C>| e.log_id);
            parts.push(AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                // Never past this part's last entry: the follower's log beyond it may still
                // hold entries of an older term that the next part replaces.
                leader_commit: std::cmp::min(leader_commit, next_prev),
                entries: done,
            });
            prev = next_prev;
            bytes = 0;
        }
        bytes += n;
        current.push(entry);
    }
    parts.push(AppendEntriesRequest {
        vote,
        prev_log_id: prev,
        leader_commit,
        entries: current,
    });
    parts
}

/// A follower's answer openraft cannot take: a conflict with a request that starts at the
/// beginning of the log, where there is nothing to conflict with. openraft reports a conflict
/// "at the request's previous entry" and unwraps that entry, so passing this answer on would
/// panic the leader's replication task; it is the follower's error instead.
fn check_answer(from_the_start: bool, answer: &AppendEntriesResponse<C>) -> Result<(), String> {
    if from_the_start && matches!(answer, AppendEntriesResponse::Conflict) {
        return Err("answered a conflict before the first entry of the log".to_owned());
    }
    Ok(())
}

/// bincode of an openraft message (one encoding for every peer message, in one place).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    use bincode::Options as _;
    bincode::DefaultOptions::new()
        .with_limit(MAX_BODY)
        .serialize(value)
        .map_err(|e| format!("encoding a raft message: {e}"))
}

/// Decodes a peer's bytes: bounded, and an error (never a panic) for anything malformed.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    use bincode::Options as _;
    bincode::DefaultOptions::new()
        .with_limit(MAX_BODY)
        .deserialize(bytes)
        .map_err(|e| format!("decoding a raft message: {e}"))
}

/// Makes one [`Peer`] per target node.
#[derive(Clone)]
pub(crate) struct PeerNetwork {
    pub(crate) identity: Arc<Identity>,
    /// Addresses to dial instead of the ones in the membership (a fault proxy in tests, a
    /// tunnel or NAT in production): `celldb serve --dial 2=host:port`.
    pub(crate) dial: Arc<BTreeMap<u64, String>>,
    pub(crate) config: SynapseConfig,
    pub(crate) transfers: Arc<AtomicU64>,
}

impl std::fmt::Debug for PeerNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerNetwork")
            .field("node", &self.identity.node)
            .field("dial", &self.dial)
            .finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Node) -> Peer {
        let addr = self
            .dial
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        Peer {
            target,
            addr,
            net: self.clone(),
            client: None,
        }
    }
}

/// This node's client of one peer.
pub(crate) struct Peer {
    target: u64,
    addr: String,
    net: PeerNetwork,
    client: Option<CellDbClusterClient>,
}

/// A call's failure as openraft wants it: `Unreachable` (back off) when nothing could be sent
/// or the peer refused the envelope, a network error otherwise.
enum Failure {
    Unreachable(String),
    Network(String),
}

impl From<Failure> for RPCError<C> {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

impl From<Failure> for StreamingError<C> {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unreachable(m) => StreamingError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

enum Kind {
    Append,
    Vote,
    PreVote,
}

impl Peer {
    async fn client(&mut self) -> Result<CellDbClusterClient, Failure> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = CellDbClusterClient::connect_with(
            Endpoint::tcp(self.addr.clone()),
            self.net.config.clone(),
        )
        .await
        .map_err(|e| Failure::Unreachable(format!("node {} at {}: {e}", self.target, self.addr)))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Turns a call's result into the peer's answer, dropping the connection when it failed.
    fn answer(
        &mut self,
        result: Result<PeerReply, CallError<PeerError>>,
    ) -> Result<Vec<u8>, Failure> {
        let reply = match result {
            Ok(reply) => reply,
            Err(CallError::App(PeerError::Refused(reason))) => {
                self.net.identity.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node = self.net.identity.node,
                    peer = self.target,
                    "refused by the peer: {reason}"
                );
                return Err(Failure::Unreachable(format!(
                    "refused by node {}: {reason}",
                    self.target
                )));
            }
            Err(CallError::App(e)) => {
                return Err(Failure::Network(format!("node {}: {e:?}", self.target)));
            }
            Err(e) => {
                let sent = !matches!(e, CallError::NotSent(_) | CallError::Connect(_));
                self.client = None;
                let message = format!("node {} at {}: {e}", self.target, self.addr);
                return Err(if sent {
                    Failure::Network(message)
                } else {
                    Failure::Unreachable(message)
                });
            }
        };
        self.net
            .identity
            .check_reply(self.target, reply.incarnation)
            .map_err(Failure::Unreachable)?;
        Ok(reply.body)
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &mut self,
        kind: Kind,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        let body = encode(request).map_err(Failure::Network)?;
        // openraft's deadline is sized for heartbeats; a batch of large entries needs time to
        // cross the wire and be written (1 s plus 10 ms per 100 KB), or it would never fit.
        let ttl = ttl.max(Duration::from_millis(1000 + (body.len() / 10_000) as u64));
        let client = self.client().await?.with_timeout(ttl);
        let header = self.net.identity.header(self.target);
        let result = match kind {
            Kind::Append => client.append(header, body).await,
            Kind::Vote => client.vote(header, body).await,
            Kind::PreVote => client.pre_vote(header, body).await,
        };
        let bytes = self.answer(result)?;
        decode(&bytes).map_err(Failure::Network)
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = SnapshotData;

    /// Sends the entries in as many messages as keep each under [`SPLIT_BYTES`] (openraft
    /// batches up to `max_payload_entries` entries, and one entry may be 12 MiB): each part is
    /// an AppendEntries of its own, following the previous part's last entry. The first answer
    /// that is not a plain success is the answer; otherwise the last part's.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let ttl = option.hard_ttl();
        let from_the_start = rpc.prev_log_id.is_none();
        let parts = split(rpc);
        let last = parts.len().saturating_sub(1);
        let mut answer = None;
        for (i, part) in parts.into_iter().enumerate() {
            let response: AppendEntriesResponse<C> = self.call(Kind::Append, &part, ttl).await?;
            let success = matches!(response, AppendEntriesResponse::Success);
            if !success || i == last {
                answer = Some(response);
                break;
            }
        }
        let answer =
            answer.ok_or_else(|| Failure::Network("an empty AppendEntries split".into()))?;
        check_answer(from_the_start, &answer)
            .map_err(|e| Failure::Network(format!("node {}: {e}", self.target)))?;
        Ok(answer)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Ok(self.call(Kind::Vote, &rpc, option.hard_ttl()).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Ok(self.call(Kind::PreVote, &rpc, option.hard_ttl()).await?)
    }

    /// Streams the snapshot in chunks under the frame limit, then asks the peer to install
    /// it; checks for cancellation between chunks.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let SnapshotData::View(view) = snapshot.snapshot else {
            return Err(Failure::Network("a leader sends views".into()).into());
        };
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(crate::raft::snapshot::MAX_CHUNK_BYTES)
            .min(crate::raft::snapshot::MAX_CHUNK_BYTES);
        let mut encoder = ChunkEncoder::new(&snapshot.meta, view, chunk_bytes)
            .map_err(|e| Failure::Network(format!("reading the snapshot: {e}")))?;
        let transfer = self.net.transfers.fetch_add(1, Ordering::Relaxed);
        let mut cancel = std::pin::pin!(cancel);
        let ttl = option.hard_ttl().max(Duration::from_secs(10));
        let mut index = 0u64;
        loop {
            let next = encoder
                .next_chunk()
                .map_err(|e| Failure::Network(format!("reading the snapshot: {e}")))?;
            let Some(chunk) = next else { break };
            if futures::FutureExt::now_or_never(cancel.as_mut()).is_some() {
                return Err(StreamingError::Closed(ReplicationClosed::new("cancelled")));
            }
            let client = self.client().await?.with_timeout(ttl);
            let header = self.net.identity.header(self.target);
            let result = client.snapshot_chunk(header, transfer, index, chunk).await;
            self.answer(result)?;
            index += 1;
        }
        let body = encode(&(vote, snapshot.meta)).map_err(Failure::Network)?;
        let client = self.client().await?.with_timeout(ttl);
        let header = self.net.identity.header(self.target);
        let result = client.snapshot_install(header, transfer, body).await;
        let bytes = self.answer(result)?;
        Ok(decode(&bytes).map_err(Failure::Network)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_before_the_first_entry_is_the_followers_error() {
        assert!(check_answer(true, &AppendEntriesResponse::Conflict).is_err());
        assert!(check_answer(false, &AppendEntriesResponse::Conflict).is_ok());
        assert!(check_answer(true, &AppendEntriesResponse::Success).is_ok());
    }

    /// A command's bytes go over the wire as bytes (one copy, not one serde call per byte),
    /// in the same encoding as the sequence of `u8` earlier builds sent: either side reads the
    /// other's messages.
    #[test]
    fn commands_travel_as_bytes_in_the_encoding_of_earlier_builds() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct EarlierCmd(Vec<u8>);
        for bytes in [
            vec![],
            vec![0, 1, 255],
            (0..=255).cycle().take(5000).collect(),
        ] {
            let cmd = crate::raft::Cmd(bytes.clone());
            let now = encode(&cmd).unwrap();
            let earlier = encode(&EarlierCmd(bytes.clone())).unwrap();
            assert_eq!(now, earlier);
            assert_eq!(decode::<crate::raft::Cmd>(&earlier).unwrap(), cmd);
            assert_eq!(decode::<EarlierCmd>(&now).unwrap(), EarlierCmd(bytes));
        }
        // Cut short: an error, not a panic.
        let whole = encode(&crate::raft::Cmd(vec![7; 100])).unwrap();
        assert!(decode::<crate::raft::Cmd>(&whole[..50]).is_err());
    }
}
