//! Per-call metadata (protocol 4): opaque, bounded key/value pairs that travel with a request
//! (and may travel with a response), outside the typed arguments. For credentials, and for
//! trace context: the W3C `traceparent` ([`TraceParent`]) under the key [`TRACEPARENT`].
//!
//! On the wire a `MetaRequest`/`MetaResponse` frame's payload starts with a metadata block,
//! padded to 16 bytes so that the archive after it stays aligned (integers little endian):
//!
//! | bytes | field |
//! |---|---|
//! | `0..4` | block length `n` (bytes after this field, unpadded) |
//! | then, per entry | key length (u8, ≥ 1), key (visible ASCII), value length (u16), value |
//! | `4+n..` | zeros up to a multiple of 16, then the archive |
//!
//! Bounds ([`MAX_METADATA_LEN`] bytes per block, [`MAX_ENTRIES`] entries) are checked before
//! anything is allocated; a block beyond them, or malformed, closes the connection that sent it
//! (like any bad frame). A call without metadata sends a plain `Request` and pays nothing.
//!
//! ```
//! use cell_runtime::Metadata;
//!
//! let mut md = Metadata::new();
//! md.insert("authorization", b"token 42").unwrap();
//! assert_eq!(md.get("authorization"), Some(&b"token 42"[..]));
//! assert!(md.insert("", b"no empty keys").is_err());
//! ```

use std::fmt;

use crate::frame::{ALIGN, padded};

/// Most bytes of one frame's metadata block (keys, values and their lengths).
pub const MAX_METADATA_LEN: usize = 4096;

/// Most entries in one frame's metadata.
pub const MAX_ENTRIES: usize = 32;

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Ordered key/value pairs; a key appears at most once (inserting replaces).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, Vec<u8>)>,
}

/// Why metadata was refused: built too large, or received malformed or over the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata: {0}")]
pub struct MetadataError(pub String);

impl Metadata {
    /// No entries (usable in statics).
    pub const EMPTY: Metadata = Metadata {
        entries: Vec::new(),
    };

    /// No entries.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Sets `key` to `value` (replacing an earlier value).
    ///
    /// # Errors
    /// An empty key, a key that is not visible ASCII or longer than 255 bytes, or metadata
    /// that would exceed [`MAX_METADATA_LEN`] or [`MAX_ENTRIES`].
    pub fn insert(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        if key.is_empty() || key.len() > u8::MAX as usize {
            return Err(MetadataError(format!(
                "a key must be 1 to 255 bytes, `{key}` is {}",
                key.len()
            )));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MetadataError(format!("key `{key}` is not visible ASCII")));
        }
        let mut next = self.clone();
        next.entries.retain(|(k, _)| k != key);
        next.entries.push((key.to_string(), value.to_vec()));
        if next.entries.len() > MAX_ENTRIES {
            return Err(MetadataError(format!("more than {MAX_ENTRIES} entries")));
        }
        if next.block_len() > MAX_METADATA_LEN {
            return Err(MetadataError(format!(
                "more than {MAX_METADATA_LEN} bytes (with `{key}`: {})",
                next.block_len()
            )));
        }
        *self = next;
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The W3C trace context, when a valid `traceparent` is present.
    pub fn traceparent(&self) -> Option<TraceParent> {
        TraceParent::parse(self.get(TRACEPARENT)?)
    }

    /// Encoded entries, without the length field and padding.
    fn block_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| 3 + k.len() + v.len())
            .sum()
    }

    /// Appends the block (length, entries, padding to 16) to `out`, whose length must be a
    /// multiple of 16 relative to the archive's alignment.
    pub(crate) fn encode(&self, out: &mut crate::codec::Bytes) {
        let start = out.len();
        out.extend_from_slice(&(self.block_len() as u32).to_le_bytes());
        for (k, v) in &self.entries {
            out.push(k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v);
        }
        let used = out.len() - start;
        out.resize(start + padded(used), 0);
    }

    /// Splits a `MetaRequest`/`MetaResponse` payload into its metadata and the archive after
    /// it (16-byte aligned when the payload is). Never panics, whatever the bytes.
    ///
    /// # Errors
    /// A block longer than [`MAX_METADATA_LEN`] or the payload, more than [`MAX_ENTRIES`]
    /// entries, an empty or non-ASCII key, truncated entries, non-zero padding.
    pub fn split(payload: &[u8]) -> Result<(Metadata, &[u8]), MetadataError> {
        let Some(len) = payload.first_chunk::<4>() else {
            return Err(MetadataError("truncated block length".into()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_METADATA_LEN {
            return Err(MetadataError(format!(
                "a {len}-byte block exceeds the {MAX_METADATA_LEN}-byte limit"
            )));
        }
        let total = padded(4 + len);
        let Some(block) = payload.get(4..4 + len) else {
            return Err(MetadataError("block longer than the frame".into()));
        };
        let Some(padding) = payload.get(4 + len..total) else {
            return Err(MetadataError("block padding missing".into()));
        };
        if padding.iter().any(|b| *b != 0) {
            return Err(MetadataError("non-zero padding after the block".into()));
        }
        let mut entries = Vec::new();
        let mut rest = block;
        while !rest.is_empty() {
            if entries.len() == MAX_ENTRIES {
                return Err(MetadataError(format!("more than {MAX_ENTRIES} entries")));
            }
            let (&klen, tail) = rest
                .split_first()
                .ok_or(MetadataError("truncated".into()))?;
            let klen = klen as usize;
            let key = tail
                .get(..klen)
                .ok_or_else(|| MetadataError("truncated key".into()))?;
            if key.is_empty() || !key.iter().all(|b| b.is_ascii_graphic()) {
                return Err(MetadataError("a key is empty or not visible ASCII".into()));
            }
            let tail = &tail[klen..];
            let vlen = tail
                .first_chunk::<2>()
                .map(|b| u16::from_le_bytes(*b) as usize)
                .ok_or_else(|| MetadataError("truncated value length".into()))?;
            let value = tail
                .get(2..2 + vlen)
                .ok_or_else(|| MetadataError("truncated value".into()))?;
            // Visible ASCII is valid UTF-8.
            let key = String::from_utf8_lossy(key).into_owned();
            entries.push((key, value.to_vec()));
            rest = &tail[2 + vlen..];
        }
        debug_assert!(total.is_multiple_of(ALIGN));
        Ok((Metadata { entries }, &payload[total..]))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be credentials: show their sizes, not their bytes.
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (k, format!("<{} bytes>", v.len()))),
            )
            .finish()
    }
}

/// A W3C trace context (`traceparent`, version 00): the trace a call belongs to and the span
/// that made it. The runtime carries it across processes; it does not sample or export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id (never all zeros).
    pub trace_id: [u8; 16],
    /// The calling span's id (never all zeros).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// A new trace with a random id, started by a random span id.
    ///
    /// # Errors
    /// The OS has no random numbers to give.
    pub fn new_root() -> std::io::Result<TraceParent> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| std::io::Error::other(format!("no random numbers from the OS: {e}")))?;
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&bytes[..16]);
        let mut parent_id = [0u8; 8];
        parent_id.copy_from_slice(&bytes[16..]);
        // All zeros is invalid in W3C; the chance is nil, but never send one.
        trace_id[15] |= (trace_id == [0; 16]) as u8;
        parent_id[7] |= (parent_id == [0; 8]) as u8;
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags: 1,
        })
    }

    /// The same trace, continued by the span `span_id` (what a callee's outgoing calls send).
    pub fn child(&self, span_id: [u8; 8]) -> TraceParent {
        TraceParent {
            parent_id: span_id,
            ..*self
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (other versions included) is
    /// `None` and the call simply has no trace.
    pub fn parse(text: &[u8]) -> Option<TraceParent> {
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex_array(trace)?;
        let parent_id: [u8; 8] = hex_array(parent)?;
        let [flags] = hex_array::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent span id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

/// A fresh span id for an outgoing call (random; never zero).
pub(crate) fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    if getrandom::fill(&mut id).is_err() {
        // No OS randomness: a process-unique counter still keeps span ids distinct here.
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        id = NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    }
    id[7] |= (id == [0; 8]) as u8;
    id
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

tokio::task_local! {
    static REPLY: std::cell::RefCell<Option<Metadata>>;
}

/// Runs `future` and returns its output with the metadata the server sent with the last reply
/// received inside it (protocol 5; `None` when that reply carried none). A handler sets it with
/// [`crate::CallContext::set_reply_metadata`].
///
/// ```no_run
/// # async fn run(client: cell_runtime::Synapse) {
/// let (reply, metadata) =
///     cell_runtime::metadata::capture_reply(client.call_infallible::<u64, u64>(0, &1)).await;
/// let served_by = metadata.as_ref().and_then(|md| md.get("x-served-by"));
/// # let _ = (reply, served_by);
/// # }
/// ```
pub async fn capture_reply<F: Future>(future: F) -> (F::Output, Option<Metadata>) {
    REPLY
        .scope(std::cell::RefCell::new(None), async move {
            let output = future.await;
            let metadata = REPLY.with(|slot| slot.borrow_mut().take());
            (output, metadata)
        })
        .await
}

/// Hands a reply's metadata to the [`capture_reply`] around the caller, if any.
pub(crate) fn deliver_reply(metadata: Option<Metadata>) {
    let _ = REPLY.try_with(|slot| *slot.borrow_mut() = metadata);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_round_trip_and_keep_the_archive_aligned() {
        let mut md = Metadata::new();
        md.insert("traceparent", b"00-x").unwrap();
        md.insert("k", &[0u8; 100]).unwrap();
        md.insert("k", b"replaced").unwrap();
        let mut out = crate::codec::Bytes::new();
        md.encode(&mut out);
        assert!(out.len().is_multiple_of(16));
        out.extend_from_slice(b"archive");
        let (back, rest) = Metadata::split(&out).unwrap();
        assert_eq!(back, md);
        assert_eq!(back.get("k"), Some(&b"replaced"[..]));
        assert_eq!(rest, b"archive");
    }

    #[test]
    fn oversized_and_malformed_blocks_are_errors() {
        let mut md = Metadata::new();
        assert!(md.insert("big", &vec![0u8; MAX_METADATA_LEN]).is_err());
        for i in 0..MAX_ENTRIES {
            md.insert(&format!("k{i}"), b"").unwrap();
        }
        assert!(md.insert("one-more", b"").is_err());
        let huge = ((MAX_METADATA_LEN + 1) as u32).to_le_bytes();
        let mut wire = huge.to_vec();
        wire.resize(8192, 0);
        assert!(Metadata::split(&wire).unwrap_err().0.contains("limit"));
        assert!(Metadata::split(&[3, 0, 0, 0, 0, 0]).is_err(), "truncated");
        assert!(Metadata::split(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn traceparents_parse_and_print() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text.as_bytes()).unwrap();
        assert_eq!(tp.to_string(), text);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(
            TraceParent::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .is_none()
        );
        assert!(
            TraceParent::parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01")
                .is_none()
        );
        let child = tp.child(new_span_id());
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
        let root = TraceParent::new_root().unwrap();
        assert_eq!(TraceParent::parse(root.to_string().as_bytes()), Some(root));
    }

    proptest! {
        #[test]
        fn split_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Metadata::split(&bytes);
        }

        #[test]
        fn encoded_metadata_splits_back(
            entries in proptest::collection::vec(("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..64)), 0..10)
        ) {
            let mut md = Metadata::new();
            for (k, v) in &entries {
                md.insert(k, v).unwrap();
            }
            let mut out = crate::codec::Bytes::new();
            md.encode(&mut out);
            let (back, rest) = Metadata::split(&out).unwrap();
            prop_assert_eq!(back, md);
            prop_assert!(rest.is_empty());
        }
    }
}
