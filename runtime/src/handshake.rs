//! The handshake: the first frame each way on every connection.
//!
//! The client speaks first with a `Hello`: magic, protocol version, service name, the service's
//! structural fingerprint and (on TCP) the shared secret. The server answers `Welcome` or
//! `Reject` with a reason — except to a peer that fails authentication, which gets nothing at
//! all: the server closes without writing a byte.
//!
//! The handshake is a fixed little-endian layout, not an rkyv archive, on purpose: it must be
//! readable by *any* version of the protocol so that a version mismatch is reported as one,
//! never misread.

use crate::frame::{Header, Kind};

/// Version of the wire protocol (frames, handshake, statuses). Bumped on any change.
///
/// 2: the `Hello` ends with the client's largest accepted reply (`max_frame_len`).
pub const PROTOCOL_VERSION: u16 = 2;

/// First bytes of every `Hello` and `Welcome` payload.
pub const MAGIC: [u8; 4] = *b"CELL";

/// Longest service name or secret accepted in a `Hello`.
pub const MAX_FIELD_LEN: usize = 1024;

/// The client's opening frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// Name of the service the client wants.
    pub service: String,
    /// Structural fingerprint of the client's view of the service.
    pub fingerprint: u64,
    /// Shared secret (TCP); empty on Unix sockets.
    pub secret: Vec<u8>,
    /// Largest reply payload the client accepts: the server answers a longer reply with
    /// `EncodeFailed` instead of sending a frame that would make the client drop the
    /// connection (and every call on it). `u32::MAX` in a hello of protocol version 1.
    pub max_frame_len: u32,
}

/// The server's acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version the server speaks (equal to the client's).
    pub version: u16,
    /// The server's service fingerprint (equal to the client's).
    pub fingerprint: u64,
    /// Largest payload the server accepts.
    pub max_frame_len: u32,
    /// Most requests the server runs at once for this connection.
    pub max_in_flight: u32,
}

/// Why a server refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectCode {
    /// The protocol versions differ.
    Version = 1,
    /// The service at this address is another one.
    WrongService = 2,
    /// Same service name, different structural fingerprint.
    Fingerprint = 3,
    /// The server is shutting down.
    ShuttingDown = 4,
    /// Anything else (a malformed hello).
    Malformed = 5,
}

/// A malformed handshake payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed handshake: {0}")]
pub struct HandshakeError(pub &'static str);

impl Hello {
    /// Encodes the hello as a complete frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(20 + self.service.len() + self.secret.len());
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&self.version.to_le_bytes());
        payload.extend_from_slice(&0u16.to_le_bytes());
        payload.extend_from_slice(&self.fingerprint.to_le_bytes());
        // A length field is a u16: longer fields are cut so that the frame stays well formed
        // (the server then refuses them as too long or wrong; bind and connect refuse such
        // secrets before anything is sent).
        let service = &self.service.as_bytes()[..self.service.len().min(u16::MAX as usize)];
        let secret = &self.secret[..self.secret.len().min(u16::MAX as usize)];
        payload.extend_from_slice(&(service.len() as u16).to_le_bytes());
        payload.extend_from_slice(&(secret.len() as u16).to_le_bytes());
        payload.extend_from_slice(service);
        payload.extend_from_slice(secret);
        payload.extend_from_slice(&self.max_frame_len.to_le_bytes());
        let mut frame = Vec::new();
        crate::frame::encode_frame(&mut frame, Header::new(Kind::Hello), &payload);
        frame
    }

    /// Parses a hello payload. The version is read before anything else, so a peer of another
    /// version is told so even if the rest of its hello looks different.
    ///
    /// # Errors
    /// Wrong magic, truncated fields, names that are not UTF-8 or too long.
    pub fn parse(payload: &[u8]) -> Result<Hello, HandshakeError> {
        let mut r = Reader(payload);
        if r.take(4)? != MAGIC {
            return Err(HandshakeError("not a cell client (bad magic)"));
        }
        let version = r.u16()?;
        let _reserved = r.u16()?;
        let fingerprint = r.u64()?;
        let name_len = r.u16()? as usize;
        let secret_len = r.u16()? as usize;
        if name_len > MAX_FIELD_LEN || secret_len > MAX_FIELD_LEN {
            return Err(HandshakeError("field too long"));
        }
        let service = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| HandshakeError("service name is not UTF-8"))?
            .to_string();
        let secret = r.take(secret_len)?.to_vec();
        // Version 1 had no limit field: such a hello still parses, so that its sender is
        // told about the version mismatch.
        let max_frame_len = if version >= 2 { r.u32()? } else { u32::MAX };
        Ok(Hello {
            version,
            service,
            fingerprint,
            secret,
            max_frame_len,
        })
    }

    /// Reads only the protocol version of a hello payload, when the rest does not parse.
    pub fn peek_version(payload: &[u8]) -> Option<u16> {
        let bytes = payload.get(4..6)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }
}

impl Welcome {
    /// Encodes the welcome as a complete frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(24);
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&self.version.to_le_bytes());
        payload.extend_from_slice(&0u16.to_le_bytes());
        payload.extend_from_slice(&self.fingerprint.to_le_bytes());
        payload.extend_from_slice(&self.max_frame_len.to_le_bytes());
        payload.extend_from_slice(&self.max_in_flight.to_le_bytes());
        let mut frame = Vec::new();
        crate::frame::encode_frame(&mut frame, Header::new(Kind::Welcome), &payload);
        frame
    }

    /// Parses a welcome payload.
    ///
    /// # Errors
    /// Wrong magic or truncated.
    pub fn parse(payload: &[u8]) -> Result<Welcome, HandshakeError> {
        let mut r = Reader(payload);
        if r.take(4)? != MAGIC {
            return Err(HandshakeError("not a cell server (bad magic)"));
        }
        let version = r.u16()?;
        let _reserved = r.u16()?;
        Ok(Welcome {
            version,
            fingerprint: r.u64()?,
            max_frame_len: r.u32()?,
            max_in_flight: r.u32()?,
        })
    }
}

/// Encodes a reject frame: a code and a human-readable reason.
pub fn reject_frame(code: RejectCode, reason: &str) -> Vec<u8> {
    let mut payload = vec![code as u8];
    payload.extend_from_slice(reason.as_bytes());
    let mut frame = Vec::new();
    crate::frame::encode_frame(&mut frame, Header::new(Kind::Reject), &payload);
    frame
}

/// Parses a reject payload into its code byte and reason (lossy UTF-8: it is only shown).
pub fn parse_reject(payload: &[u8]) -> (u8, String) {
    match payload.split_first() {
        Some((code, reason)) => (*code, String::from_utf8_lossy(reason).into_owned()),
        None => (0, String::new()),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.0.len() < n {
            return Err(HandshakeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, HandshakeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, HandshakeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, HandshakeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_truncations_are_errors() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            service: "users".into(),
            fingerprint: 42,
            secret: b"s3cret".to_vec(),
            max_frame_len: 1 << 20,
        };
        let frame = hello.to_frame();
        let (header, payload, _) = crate::frame::decode(&frame, 4096).unwrap().unwrap();
        assert_eq!(header.kind, Kind::Hello);
        let payload = &frame[payload];
        assert_eq!(Hello::parse(payload).unwrap(), hello);
        for cut in 0..payload.len() {
            assert!(Hello::parse(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_version_1_hello_still_parses_so_its_sender_hears_of_the_mismatch() {
        let hello = Hello {
            version: 1,
            service: "users".into(),
            fingerprint: 42,
            secret: Vec::new(),
            max_frame_len: 0,
        };
        let frame = hello.to_frame();
        let (_, payload, _) = crate::frame::decode(&frame, 4096).unwrap().unwrap();
        // Version 1 ended after the secret: no limit field.
        let v1 = &frame[payload.start..payload.end - 4];
        let parsed = Hello::parse(v1).unwrap();
        assert_eq!((parsed.version, parsed.max_frame_len), (1, u32::MAX));
    }
}
