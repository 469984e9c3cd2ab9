//! What a raft entry carries: a write-set whose keyspaces go by **name** (replicas number
//! their fjall keyspaces differently), encoded as a validated archive, and the [`Outcome`]
//! every replica computes for it.

use crate::raft::valid_keyspace_name;
use cell_sdk::{codec, protein};
use std::fmt;
use std::ops::Bound;

/// Bounds on one command, so that any entry fits a runtime frame with room to spare
/// (AppendEntries carries entries in frames of at most 16 MiB).
pub(crate) const MAX_CMD_BYTES: usize = 12 << 20;

/// An encoded write-set: the payload of a normal raft entry. The bytes are an archive of the
/// write-set (checked when applied: a replica never trusts them).
///
/// Serialized as bytes (`serde_bytes`): bincode then copies them whole, where a `Vec<u8>`'s
/// derived form made one serde call per byte, twice per follower on the leader (size, then
/// write) and once per byte on each follower. The encoding is the same, so nodes of earlier
/// builds read it (`peer`'s tests check both ways).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cmd(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({} bytes)", self.0.len())
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write-set of {} bytes", self.0.len())
    }
}

/// What applying a [`Cmd`] decided. Every replica decides the same, from the log alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Applied at this log index.
    Committed {
        /// The entry's log index.
        index: u64,
    },
    /// A read check failed: something the transaction read changed before its entry. Nothing
    /// was written; re-run the transaction.
    Conflict,
    /// The bytes are not a valid write-set (or name an invalid keyspace). Nothing was written.
    Rejected(String),
    /// The request names a client session the group does not hold (it expired, or it never
    /// existed). Nothing was written *by this entry*; whether an earlier attempt of the same
    /// request was applied is unknown (the session's answers expired with it).
    SessionExpired,
}

/// A command that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// A keyspace name a replica would refuse.
    #[error(
        "invalid keyspace name {0:?}: 1 to 200 bytes of ASCII letters, digits, `.`, `_`, `-`, `#`, `$`"
    )]
    KeyspaceName(String),
    /// The encoded write-set is over the limit of one raft entry.
    #[error(
        "the write-set encodes to {0} bytes, over the limit of {MAX_CMD_BYTES} for one raft entry"
    )]
    TooLarge(usize),
    /// Encoding failed.
    #[error("encoding the write-set: {0}")]
    Encode(String),
}

/// A point read to re-check: `key` in `keyspace` held `seen` (`None`: absent).
#[protein]
pub(crate) struct PointCheck {
    pub(crate) keyspace: String,
    pub(crate) key: Vec<u8>,
    pub(crate) seen: Option<Vec<u8>>,
}

/// A range read to re-check: the entries of `[start, end)` hashed to `digest` (see
/// `RangeDigest`). Bounds are `(kind, key)`: 0 unbounded, 1 included, 2 excluded.
#[protein]
pub(crate) struct RangeCheck {
    pub(crate) keyspace: String,
    pub(crate) start: (u8, Vec<u8>),
    pub(crate) end: (u8, Vec<u8>),
    pub(crate) digest: u64,
}

/// One write: `value: None` deletes.
#[protein]
pub(crate) struct NamedWrite {
    pub(crate) keyspace: String,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

/// The archived form of a [`Cmd`].
#[protein]
pub(crate) struct CmdBody {
    /// The applied index of the state the transaction read (for diagnostics and, later,
    /// a deterministic fast path).
    pub(crate) read_index: u64,
    /// The client session the request belongs to (0: none, no deduplication), or, with
    /// `open_session`, nothing (the new session's id is this entry's index).
    pub(crate) session: u64,
    /// The request's number in its session: a retry carries the same number and gets the
    /// first attempt's outcome instead of being applied again.
    pub(crate) seq: u64,
    /// Every request of the session numbered below this has its answer: their outcomes may be
    /// forgotten.
    pub(crate) done_below: u64,
    /// This entry opens a client session (and carries nothing else).
    pub(crate) open_session: bool,
    pub(crate) points: Vec<PointCheck>,
    pub(crate) ranges: Vec<RangeCheck>,
    pub(crate) writes: Vec<NamedWrite>,
}

pub(crate) fn bound_to_wire(bound: &Bound<Vec<u8>>) -> (u8, Vec<u8>) {
    match bound {
        Bound::Unbounded => (0, Vec::new()),
        Bound::Included(k) => (1, k.clone()),
        Bound::Excluded(k) => (2, k.clone()),
    }
}

pub(crate) fn bound_from_wire((kind, key): &(u8, Vec<u8>)) -> Option<Bound<Vec<u8>>> {
    match kind {
        0 => Some(Bound::Unbounded),
        1 => Some(Bound::Included(key.clone())),
        2 => Some(Bound::Excluded(key.clone())),
        _ => None,
    }
}

/// The first keyspace name a replica would refuse, among a write-set's checks and writes.
fn invalid_name<'a>(
    points: &'a [PointCheck],
    ranges: &'a [RangeCheck],
    writes: &'a [NamedWrite],
) -> Option<&'a str> {
    points
        .iter()
        .map(|p| p.keyspace.as_str())
        .chain(ranges.iter().map(|r| r.keyspace.as_str()))
        .chain(writes.iter().map(|w| w.keyspace.as_str()))
        .find(|name| !valid_keyspace_name(name))
}

impl Cmd {
    /// Decodes and validates the archive; every keyspace name must be one a replica accepts.
    pub(crate) fn decode(&self) -> Result<CmdBody, String> {
        let body = codec::from_bytes::<CmdBody>(&self.0).map_err(|e| e.to_string())?;
        if let Some(name) = invalid_name(&body.points, &body.ranges, &body.writes) {
            return Err(format!("invalid keyspace name {name:?}"));
        }
        for range in &body.ranges {
            if bound_from_wire(&range.start).is_none() || bound_from_wire(&range.end).is_none() {
                return Err(format!(
                    "invalid range bound in keyspace {:?}",
                    range.keyspace
                ));
            }
        }
        Ok(body)
    }
}

/// Builds a [`Cmd`] from reads and writes named by keyspace.
///
/// # Examples
/// ```
/// let mut cmd = celldb::raft::CmdBuilder::new(0);
/// cmd.check("t.users", b"1", None); // the transaction saw no user 1
/// cmd.put("t.users", b"1", b"ada");
/// let cmd = cmd.finish().unwrap();
/// assert!(!cmd.0.is_empty());
/// ```
#[derive(Debug)]
pub struct CmdBuilder {
    read_index: u64,
    session: u64,
    seq: u64,
    done_below: u64,
    open_session: bool,
    points: Vec<PointCheck>,
    ranges: Vec<RangeCheck>,
    writes: Vec<NamedWrite>,
}

impl CmdBuilder {
    /// A write-set whose reads were taken at applied index `read_index`.
    pub fn new(read_index: u64) -> Self {
        Self {
            read_index,
            session: 0,
            seq: 0,
            done_below: 0,
            open_session: false,
            points: Vec::new(),
            ranges: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// The entry that opens a client session; its outcome's index is the session id.
    pub fn open_session() -> Self {
        let mut cmd = Self::new(0);
        cmd.open_session = true;
        cmd
    }

    /// Makes this write-set request `seq` of client session `session`: applied at most once
    /// (a retry gets the first attempt's [`Outcome`]). `done_below`: every request numbered
    /// below it has been answered, so the group may forget those outcomes.
    pub fn request(&mut self, session: u64, seq: u64, done_below: u64) -> &mut Self {
        self.session = session;
        self.seq = seq;
        self.done_below = done_below;
        self
    }

    /// Re-check at apply that `key` in `keyspace` still holds `seen`.
    pub fn check(&mut self, keyspace: &str, key: &[u8], seen: Option<&[u8]>) -> &mut Self {
        self.points.push(PointCheck {
            keyspace: keyspace.to_string(),
            key: key.to_vec(),
            seen: seen.map(<[u8]>::to_vec),
        });
        self
    }

    /// Re-check at apply that the entries of `range` in `keyspace` still hash to `digest`
    /// (compute it with [`range_digest`](crate::raft::snapshot::range_digest)).
    pub fn check_range(
        &mut self,
        keyspace: &str,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        digest: u64,
    ) -> &mut Self {
        self.ranges.push(RangeCheck {
            keyspace: keyspace.to_string(),
            start: bound_to_wire(&start),
            end: bound_to_wire(&end),
            digest,
        });
        self
    }

    /// Write `value` at `key`.
    pub fn put(&mut self, keyspace: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.writes.push(NamedWrite {
            keyspace: keyspace.to_string(),
            key: key.to_vec(),
            value: Some(value.to_vec()),
        });
        self
    }

    /// Delete `key`.
    pub fn delete(&mut self, keyspace: &str, key: &[u8]) -> &mut Self {
        self.writes.push(NamedWrite {
            keyspace: keyspace.to_string(),
            key: key.to_vec(),
            value: None,
        });
        self
    }

    /// Encodes the write-set.
    ///
    /// # Errors
    /// [`CmdError::KeyspaceName`] for a name replicas refuse, [`CmdError::TooLarge`] over
    /// 12 MiB.
    pub fn finish(&self) -> Result<Cmd, CmdError> {
        if let Some(name) = invalid_name(&self.points, &self.ranges, &self.writes) {
            return Err(CmdError::KeyspaceName(name.to_string()));
        }
        let body = CmdBody {
            read_index: self.read_index,
            session: self.session,
            seq: self.seq,
            done_below: self.done_below,
            open_session: self.open_session,
            points: self.points.clone(),
            ranges: self.ranges.clone(),
            writes: self.writes.clone(),
        };
        let bytes = codec::to_bytes(&body).map_err(|e| CmdError::Encode(e.to_string()))?;
        if bytes.len() > MAX_CMD_BYTES {
            return Err(CmdError::TooLarge(bytes.len()));
        }
        Ok(Cmd(bytes.to_vec()))
    }
}
