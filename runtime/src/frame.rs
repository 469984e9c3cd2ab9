//! Framing: how messages are cut out of a byte stream.
//!
//! Every frame is a 16-byte header followed by a payload padded with zeros to a multiple of 16:
//!
//! | bytes  | field      | meaning                                                    |
//! |--------|------------|------------------------------------------------------------|
//! | 0..4   | `len`      | payload length without padding (u32, little endian)        |
//! | 4      | `kind`     | [`Kind`]                                                   |
//! | 5      | `status`   | [`Status`] of a response, 0 otherwise                      |
//! | 6..8   | `method`   | method index of a request                                  |
//! | 8..12  | `id`       | request id, chosen by the client, echoed by the server     |
//! | 12..16 | `budget`   | a request's remaining deadline in milliseconds (0 = none); a `Credit`'s item count |
//!
//! Why this shape: rkyv archives must start 16-byte aligned and end exactly where the data
//! ends. A 16-byte header plus padding keeps every payload at a 16-aligned offset of the
//! (aligned) read buffer, so many frames read with one syscall are validated and read *in
//! place*, without a copy; the unpadded `len` gives the exact end. The length is checked
//! against the connection's maximum *before* any buffer grows for it.

use std::fmt;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// Payloads are padded to this alignment on the wire.
pub const ALIGN: usize = 16;

/// Default maximum payload length of a frame (16 MiB).
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first frame: magic, protocol version, service name and fingerprint,
    /// the client's nonce on TCP.
    Hello = 1,
    /// Server → client: the handshake succeeded.
    Welcome = 2,
    /// Server → client: the handshake failed; the payload says why. The server closes next.
    Reject = 3,
    /// Client → server: call `method` with the archived arguments.
    Request = 4,
    /// Server → client: the outcome of request `id`.
    Response = 5,
    /// Client → server: the caller of request `id` is gone; stop working on it.
    Cancel = 6,
    /// Server → client: the server is draining; send new calls elsewhere (reconnect).
    Goodbye = 7,
    /// Server → client on TCP, answering a hello: the server's nonce (protocol 3).
    Challenge = 8,
    /// Client → server on TCP, answering a challenge: the client's proof that it knows the
    /// shared secret (protocol 3).
    Proof = 9,
    /// Client → server: a `Request` whose payload starts with a metadata block
    /// ([`crate::Metadata`], padded to 16 bytes), then the archived arguments (protocol 4).
    MetaRequest = 10,
    /// Server → client: a `Response` whose payload starts with a metadata block (protocol 4).
    MetaResponse = 11,
    /// Server → client: one item of the stream that request `id` returns; the payload is the
    /// item's archive. Sent only against the client's credit (protocol 5).
    StreamItem = 12,
    /// Client → server: the caller of stream `id` takes `budget` more items (the header's
    /// `budget` field carries the count; no payload). Protocol 5.
    Credit = 13,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Request,
            5 => Kind::Response,
            6 => Kind::Cancel,
            7 => Kind::Goodbye,
            8 => Kind::Challenge,
            9 => Kind::Proof,
            10 => Kind::MetaRequest,
            11 => Kind::MetaResponse,
            12 => Kind::StreamItem,
            13 => Kind::Credit,
            _ => return None,
        })
    }
}

/// The outcome carried by a response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The payload is the method's return value.
    Ok = 0,
    /// The payload is the method's application error `E` (a protein).
    AppError = 1,
    /// The handler panicked; the payload is a UTF-8 message.
    Panicked = 2,
    /// The deadline the client sent passed before the handler finished.
    DeadlineExceeded = 3,
    /// The method index is unknown to this server.
    UnknownMethod = 4,
    /// The server is shutting down and did not start the call.
    ShuttingDown = 5,
    /// The server could not encode the reply; the payload is a UTF-8 message.
    EncodeFailed = 6,
    /// The server refused the call before its handler ran (an admission check such as
    /// authentication); the payload is the reason (UTF-8). Protocol 4.
    Refused = 7,
    /// A handler layer failed the call (an error of a layer's own, not the handler's); the
    /// payload is a UTF-8 message. Protocol 4.
    LayerFailed = 8,
}

impl Status {
    fn from_u8(byte: u8) -> Option<Status> {
        Some(match byte {
            0 => Status::Ok,
            1 => Status::AppError,
            2 => Status::Panicked,
            3 => Status::DeadlineExceeded,
            4 => Status::UnknownMethod,
            5 => Status::ShuttingDown,
            6 => Status::EncodeFailed,
            7 => Status::Refused,
            8 => Status::LayerFailed,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length, without padding.
    pub len: u32,
    /// What the frame carries.
    pub kind: Kind,
    /// Outcome of a response ([`Status::Ok`] on other kinds).
    pub status: Status,
    /// Method index of a request.
    pub method: u16,
    /// Request id.
    pub id: u32,
    /// Remaining deadline of a request in milliseconds; 0 means none.
    pub budget_ms: u32,
}

impl Header {
    /// A header of `kind` with every other field zero.
    pub fn new(kind: Kind) -> Header {
        Header {
            len: 0,
            kind,
            status: Status::Ok,
            method: 0,
            id: 0,
            budget_ms: 0,
        }
    }

    /// The header's wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4] = self.kind as u8;
        out[5] = self.status as u8;
        out[6..8].copy_from_slice(&self.method.to_le_bytes());
        out[8..12].copy_from_slice(&self.id.to_le_bytes());
        out[12..16].copy_from_slice(&self.budget_ms.to_le_bytes());
        out
    }

    /// Parses a header and checks it against `max_len` — before anything is allocated for
    /// the payload.
    ///
    /// # Errors
    /// Unknown kind or status, or a payload longer than `max_len`.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_len: u32) -> Result<Header, FrameError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if len > max_len {
            return Err(FrameError::TooLong { len, max: max_len });
        }
        let kind = Kind::from_u8(bytes[4]).ok_or(FrameError::UnknownKind(bytes[4]))?;
        let status = Status::from_u8(bytes[5]).ok_or(FrameError::UnknownStatus(bytes[5]))?;
        Ok(Header {
            len,
            kind,
            status,
            method: u16::from_le_bytes([bytes[6], bytes[7]]),
            id: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            budget_ms: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        })
    }

    /// Bytes this frame occupies on the wire: header plus padded payload.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + padded(self.len as usize)
    }
}

/// The unpadded payload length of the frame that starts at `frame[0]` (its header's first four
/// bytes), or `None` when fewer than four bytes are there. The one place besides
/// [`Header::parse`] that reads a length: senders check what they just wrote with it.
pub fn payload_len(frame: &[u8]) -> Option<u32> {
    frame.first_chunk::<4>().map(|len| u32::from_le_bytes(*len))
}

/// `len` rounded up to the payload alignment.
pub const fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// A frame that cannot be accepted. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announces a payload longer than the connection allows.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLong {
        /// Announced length.
        len: u32,
        /// The connection's maximum.
        max: u32,
    },
    /// The kind byte is not a [`Kind`].
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The status byte is not a [`Status`].
    #[error("unknown response status {0}")]
    UnknownStatus(u8),
    /// The padding after a payload is not zero (a sender out of step with the framing).
    #[error("non-zero padding after a payload")]
    BadPadding,
}

/// Splits the frames out of a byte slice (a stateless decoder over whatever has been read).
///
/// Returns the first frame's header and payload range and the number of bytes it occupies,
/// `Ok(None)` when `bytes` holds only part of a frame, or an error for a frame that must close
/// the connection. Never panics, whatever the bytes (fuzzed and property-tested).
///
/// # Errors
/// See [`FrameError`].
///
/// # Examples
/// ```
/// use cell_runtime::frame::{decode, encode_frame, Header, Kind};
/// let mut wire = Vec::new();
/// let mut header = Header::new(Kind::Request);
/// header.id = 7;
/// encode_frame(&mut wire, header, b"abc");
/// let (parsed, payload, used) = decode(&wire, 1024).unwrap().unwrap();
/// assert_eq!((parsed.id, &wire[payload], used), (7, &b"abc"[..], 32));
/// assert!(decode(&wire[..20], 1024).unwrap().is_none());
/// ```
#[allow(
    clippy::type_complexity,
    reason = "the parsed header, the payload's range and the bytes used: named where used"
)]
pub fn decode(
    bytes: &[u8],
    max_len: u32,
) -> Result<Option<(Header, std::ops::Range<usize>, usize)>, FrameError> {
    let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = Header::parse(head, max_len)?;
    let total = header.wire_len();
    if bytes.len() < total {
        return Ok(None);
    }
    let end = HEADER_LEN + header.len as usize;
    if bytes[end..total].iter().any(|b| *b != 0) {
        return Err(FrameError::BadPadding);
    }
    Ok(Some((header, HEADER_LEN..end, total)))
}

/// Appends one frame (header, payload, padding) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, mut header: Header, payload: &[u8]) {
    header.len = payload.len() as u32;
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + padded(payload.len()) - payload.len(), 0);
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_header() -> impl Strategy<Value = Header> {
        (
            0u32..200,
            1u8..=13,
            0u8..=8,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(len, kind, status, method, id, budget_ms)| Header {
                len,
                kind: Kind::from_u8(kind).unwrap(),
                status: Status::from_u8(status).unwrap(),
                method,
                id,
                budget_ms,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the decoder, and whatever it accepts lies in bounds.
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                max in 0u32..400) {
            if let Ok(Some((header, payload, used))) = decode(&bytes, max) {
                prop_assert!(header.len <= max);
                prop_assert!(payload.end <= used && used <= bytes.len());
                prop_assert_eq!(used % ALIGN, 0);
            }
        }

        /// A stream of frames, cut at arbitrary points, decodes to the same frames.
        #[test]
        fn frames_survive_any_split(
            frames in proptest::collection::vec(
                (any_header(), proptest::collection::vec(any::<u8>(), 0..100)), 1..8),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut wire = Vec::new();
            for (header, payload) in &frames {
                encode_frame(&mut wire, *header, payload);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(wire.len());
            // Feed the wire in chunks as a socket would, decoding whatever is complete.
            let mut buffer = Vec::new();
            let mut decoded = Vec::new();
            let mut fed = 0;
            for cut in cuts {
                buffer.extend_from_slice(&wire[fed..cut]);
                fed = cut;
                while let Some((header, payload, used)) = decode(&buffer, 1 << 20).unwrap() {
                    decoded.push((header, buffer[payload].to_vec()));
                    buffer.drain(..used);
                }
            }
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(decoded.len(), frames.len());
            for ((header, payload), (want, want_payload)) in decoded.iter().zip(&frames) {
                prop_assert_eq!(header.id, want.id);
                prop_assert_eq!(header.kind, want.kind);
                prop_assert_eq!(header.method, want.method);
                prop_assert_eq!(header.budget_ms, want.budget_ms);
                prop_assert_eq!(payload, want_payload);
            }
        }
    }

    #[test]
    fn oversized_frames_are_rejected_from_the_header_alone() {
        let mut header = Header::new(Kind::Request);
        header.len = 1 << 30;
        // Only the header is present: the length is refused before any payload arrives.
        assert_eq!(
            decode(&header.to_bytes(), 1024),
            Err(FrameError::TooLong {
                len: 1 << 30,
                max: 1024
            })
        );
    }

    #[test]
    fn unknown_kinds_and_dirty_padding_are_errors() {
        let mut bytes = Header::new(Kind::Request).to_bytes();
        bytes[4] = 99;
        assert_eq!(decode(&bytes, 1024), Err(FrameError::UnknownKind(99)));
        let mut wire = Vec::new();
        encode_frame(&mut wire, Header::new(Kind::Request), b"x");
        wire[20] = 1;
        assert_eq!(decode(&wire, 1024), Err(FrameError::BadPadding));
    }
}
