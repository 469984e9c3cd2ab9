//! The handshake: the first frames each way on every connection.
//!
//! The client speaks first with a `Hello`: magic, protocol version, service name, the service's
//! structural fingerprint, a nonce (TCP) and its frame limit. On a Unix socket the server —
//! which has already checked the peer's uid (`SO_PEERCRED`) — answers `Welcome` or `Reject`
//! with a reason. On TCP both sides first prove that they know the shared secret, without ever
//! sending it (protocol 3):
//!
//! ```text
//! client                                     server
//!   Hello { …, client nonce }             ──▶
//!                                         ◀──  Challenge { server nonce }
//!   Proof { HMAC(secret, client label‖T) } ──▶  checked in constant time; if wrong, the
//!                                              connection closes, nothing more is sent
//!                                         ◀──  Welcome { …, HMAC(secret, server label‖T) }
//!   checked in constant time; if wrong or      (or Reject, once the client has proven
//!   missing: ServerNotAuthenticated            the secret)
//! ```
//!
//! Both nonces are [`NONCE_LEN`] (32) bytes from the operating system's random source.
//! `T`, the transcript both proofs cover, is: client nonce length (u16) and bytes, server
//! nonce, protocol version of the hello (u16), fingerprint (u64), service name length (u16) and
//! bytes; integers little endian. The two labels ([`crate::auth::CLIENT_PROOF_LABEL`],
//! [`crate::auth::SERVER_PROOF_LABEL`]) keep one side's proof from being reflected as the other's. Fresh
//! nonces on both sides make every proof good for one connection only: a recorded hello and
//! proof replayed to the server fail against its new nonce, and a recorded challenge and
//! welcome replayed to a client fail against the client's new nonce. A peer that fails gets
//! a `Challenge` (which tells it only that a cell server listens) and nothing else: no
//! version, name, fingerprint or limits. What this does *not* give: confidentiality or
//! integrity of the frames after the handshake (an active man-in-the-middle can relay an
//! honest handshake and then read or alter the traffic), nor protection of a weak secret
//! against offline guessing from a recorded handshake — see `docs/threat-model.md`.
//!
//! The handshake is a fixed little-endian layout, not an rkyv archive, on purpose: it must be
//! readable by *any* version of the protocol so that a version mismatch is reported as one,
//! never misread. Payloads, after the 16-byte frame header of [`crate::frame`] (byte ranges;
//! integers little endian):
//!
//! - `Hello` (kind 1): `0..4` magic `CELL`, `4..6` version, `6..8` zero, `8..16` fingerprint,
//!   `16..18` name length `n`, `18..20` nonce length `k` (32 on TCP, 0 on Unix sockets), then
//!   the name (`n` bytes, UTF-8), the nonce (`k` bytes) and the client's frame limit (u32).
//! - `Challenge` (kind 8): `0..4` magic `CELL`, `4..36` server nonce. Exactly 36 bytes.
//! - `Proof` (kind 9): `0..32` HMAC-SHA256. Exactly 32 bytes.
//! - `Welcome` (kind 2): `0..4` magic `CELL`, `4..6` version, `6..8` zero, `8..16`
//!   fingerprint, `16..20` largest request payload, `20..24` most calls in flight; on TCP
//!   `24..56` the server's proof. 24 or 56 bytes.
//! - `Reject` (kind 3): `0` a [`RejectCode`], then a UTF-8 reason.
//!
//! The nonce field of the `Hello` sits where protocols 1 and 2 carried the secret itself; it
//! is empty on Unix sockets. Every version from 3 on keeps the `Hello`/`Challenge`/`Proof`
//! exchange above (with the hello's own version in `T`), so a server checks the proof of a
//! client of *another* version and then tells it about the mismatch. A TCP client of protocol
//! 1 or 2 still sends its secret in clear: the server compares it (constant time) only to
//! decide whether to answer with a version mismatch or with nothing.

use crate::frame::{Header, Kind};

/// Version of the wire protocol (frames, handshake, statuses). Bumped on any change.
///
/// 2: the `Hello` ends with the client's largest accepted reply (`max_frame_len`).
/// 3: TCP authentication by challenge-response: the `Hello` carries a client nonce where it
/// carried the secret, the server answers with a `Challenge` (its nonce), the client with a
/// `Proof` (HMAC-SHA256 keyed by the secret), and the `Welcome` ends with the server's own
/// proof. The secret never crosses the network.
/// 4: per-call metadata (`MetaRequest`/`MetaResponse` frames: a bounded metadata block before
/// the archive; W3C `traceparent` travels in it) and a structured `Reject` (the server's
/// version in the frame header's `method` field, its fingerprint in the payload: a client
/// never parses the reason text). The hello, challenge, proof and welcome are unchanged.
/// 5: server-to-client streams (`StreamItem` and `Credit` frames: a stream call's items,
/// sent against the client's credit, end with the call's ordinary `Response`) and reply
/// metadata sent by servers. Handshake frames unchanged.
pub const PROTOCOL_VERSION: u16 = 5;

/// The first version whose `Reject` is structured (see [`reject_frame`]).
pub const STRUCTURED_REJECT_SINCE: u16 = 4;

/// First bytes of every `Hello`, `Challenge` and `Welcome` payload.
pub const MAGIC: [u8; 4] = *b"CELL";

/// Longest service name or nonce accepted in a `Hello` (and longest shared secret).
pub const MAX_FIELD_LEN: usize = 1024;

/// Length of a nonce (client's and server's), in bytes.
pub const NONCE_LEN: usize = 32;

/// Length of a proof (an HMAC-SHA256 tag), in bytes.
pub const PROOF_LEN: usize = 32;

/// The client's opening frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// Name of the service the client wants.
    pub service: String,
    /// Structural fingerprint of the client's view of the service.
    pub fingerprint: u64,
    /// The client's fresh random nonce ([`NONCE_LEN`] bytes) on TCP; empty on Unix sockets.
    /// In a hello of protocol 1 or 2 this field held the shared secret itself.
    pub nonce: Vec<u8>,
    /// Largest reply payload the client accepts: the server answers a longer reply with
    /// `EncodeFailed` instead of sending a frame that would make the client drop the
    /// connection (and every call on it). `u32::MAX` in a hello of protocol version 1.
    pub max_frame_len: u32,
}

/// The server's answer to a TCP hello: its nonce, which the client's proof must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The server's fresh random nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// The client's answer to a challenge: HMAC-SHA256 keyed by the shared secret over
/// [`crate::auth::CLIENT_PROOF_LABEL`] and the transcript (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

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
    /// On TCP, the server's proof that it knows the shared secret; `None` on Unix sockets.
    pub proof: Option<[u8; PROOF_LEN]>,
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
        let mut payload = Vec::with_capacity(24 + self.service.len() + self.nonce.len());
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&self.version.to_le_bytes());
        payload.extend_from_slice(&0u16.to_le_bytes());
        payload.extend_from_slice(&self.fingerprint.to_le_bytes());
        // A length field is a u16: longer fields are cut so that the frame stays well formed
        // (the server then refuses them as too long or wrong).
        let service = &self.service.as_bytes()[..self.service.len().min(u16::MAX as usize)];
        let nonce = &self.nonce[..self.nonce.len().min(u16::MAX as usize)];
        payload.extend_from_slice(&(service.len() as u16).to_le_bytes());
        payload.extend_from_slice(&(nonce.len() as u16).to_le_bytes());
        payload.extend_from_slice(service);
        payload.extend_from_slice(nonce);
        payload.extend_from_slice(&self.max_frame_len.to_le_bytes());
        frame(Kind::Hello, &payload)
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
        let nonce_len = r.u16()? as usize;
        if name_len > MAX_FIELD_LEN || nonce_len > MAX_FIELD_LEN {
            return Err(HandshakeError("field too long"));
        }
        let service = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| HandshakeError("service name is not UTF-8"))?
            .to_string();
        let nonce = r.take(nonce_len)?.to_vec();
        // Version 1 had no limit field: such a hello still parses, so that its sender is
        // told about the version mismatch.
        let max_frame_len = if version >= 2 { r.u32()? } else { u32::MAX };
        Ok(Hello {
            version,
            service,
            fingerprint,
            nonce,
            max_frame_len,
        })
    }

    /// Reads only the protocol version of a hello payload, when the rest does not parse.
    pub fn peek_version(payload: &[u8]) -> Option<u16> {
        let bytes = payload.get(4..6)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }
}

impl Challenge {
    /// A challenge with a fresh nonce from the operating system's random source.
    ///
    /// # Errors
    /// The OS has no random numbers to give (the connection cannot be authenticated).
    pub fn random() -> std::io::Result<Challenge> {
        Ok(Challenge {
            nonce: random_nonce()?,
        })
    }

    /// Encodes the challenge as a complete frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(4 + NONCE_LEN);
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&self.nonce);
        frame(Kind::Challenge, &payload)
    }

    /// Parses a challenge payload: exactly the magic and a nonce.
    ///
    /// # Errors
    /// Wrong magic or length.
    pub fn parse(payload: &[u8]) -> Result<Challenge, HandshakeError> {
        let mut r = Reader(payload);
        if r.take(4)? != MAGIC {
            return Err(HandshakeError("not a cell server (bad magic)"));
        }
        let nonce = r.array::<NONCE_LEN>()?;
        r.end()?;
        Ok(Challenge { nonce })
    }
}

impl Proof {
    /// Encodes the proof as a complete frame.
    pub fn to_frame(&self) -> Vec<u8> {
        frame(Kind::Proof, &self.0)
    }

    /// Parses a proof payload: exactly [`PROOF_LEN`] bytes.
    ///
    /// # Errors
    /// Any other length.
    pub fn parse(payload: &[u8]) -> Result<Proof, HandshakeError> {
        let mut r = Reader(payload);
        let proof = r.array::<PROOF_LEN>()?;
        r.end()?;
        Ok(Proof(proof))
    }
}

impl Welcome {
    /// Encodes the welcome as a complete frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(24 + PROOF_LEN);
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&self.version.to_le_bytes());
        payload.extend_from_slice(&0u16.to_le_bytes());
        payload.extend_from_slice(&self.fingerprint.to_le_bytes());
        payload.extend_from_slice(&self.max_frame_len.to_le_bytes());
        payload.extend_from_slice(&self.max_in_flight.to_le_bytes());
        if let Some(proof) = &self.proof {
            payload.extend_from_slice(proof);
        }
        frame(Kind::Welcome, &payload)
    }

    /// Parses a welcome payload. Its fixed part is read first, so that a welcome of another
    /// version still yields that version; after it comes either nothing or a proof.
    ///
    /// # Errors
    /// Wrong magic, truncated, or trailing bytes that are not a proof.
    pub fn parse(payload: &[u8]) -> Result<Welcome, HandshakeError> {
        let mut r = Reader(payload);
        if r.take(4)? != MAGIC {
            return Err(HandshakeError("not a cell server (bad magic)"));
        }
        let version = r.u16()?;
        let _reserved = r.u16()?;
        let fingerprint = r.u64()?;
        let max_frame_len = r.u32()?;
        let max_in_flight = r.u32()?;
        let proof = match r.0.len() {
            0 => None,
            PROOF_LEN => Some(r.array::<PROOF_LEN>()?),
            _ => return Err(HandshakeError("a welcome ends with a proof or nothing")),
        };
        Ok(Welcome {
            version,
            fingerprint,
            max_frame_len,
            max_in_flight,
            proof,
        })
    }
}

/// Encodes a reject frame for a client that speaks `client_version`.
///
/// From protocol 4 on it is structured: the frame header's `method` field carries the server's
/// [`PROTOCOL_VERSION`], and the payload is `0` the [`RejectCode`], `1..8` zero, `8..16` the
/// server's service fingerprint (u64), then the reason (UTF-8, only to be shown). A client of
/// protocol 3 or older gets the layout it reads: the code, then the reason, whose text still
/// ends with "server speaks N" for the version.
pub fn reject_frame(
    code: RejectCode,
    reason: &str,
    fingerprint: u64,
    client_version: u16,
) -> Vec<u8> {
    let mut header = Header::new(Kind::Reject);
    let mut payload = vec![code as u8];
    if client_version >= STRUCTURED_REJECT_SINCE {
        header.method = PROTOCOL_VERSION;
        payload.extend_from_slice(&[0u8; 7]);
        payload.extend_from_slice(&fingerprint.to_le_bytes());
    }
    payload.extend_from_slice(reason.as_bytes());
    let mut frame = Vec::new();
    crate::frame::encode_frame(&mut frame, header, &payload);
    frame
}

/// A server's refusal, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The [`RejectCode`] byte (an unknown byte stays as it is).
    pub code: u8,
    /// The server's protocol version; `None` from a server of protocol 3 or older, which does
    /// not state it structurally.
    pub server_version: Option<u16>,
    /// The server's service fingerprint (structured rejects only).
    pub server_fingerprint: Option<u64>,
    /// The human-readable reason (lossy UTF-8: it is only shown).
    pub reason: String,
}

/// Parses a reject frame (its header and payload). Never fails: whatever a server sends is
/// shown as its reason.
pub fn parse_reject(header: &Header, payload: &[u8]) -> Reject {
    let code = payload.first().copied().unwrap_or(0);
    if header.method >= STRUCTURED_REJECT_SINCE
        && let Some(fixed) = payload.first_chunk::<16>()
    {
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&fixed[8..16]);
        return Reject {
            code,
            server_version: Some(header.method),
            server_fingerprint: Some(u64::from_le_bytes(fingerprint)),
            reason: String::from_utf8_lossy(&payload[16..]).into_owned(),
        };
    }
    Reject {
        code,
        server_version: None,
        server_fingerprint: None,
        reason: String::from_utf8_lossy(payload.get(1..).unwrap_or_default()).into_owned(),
    }
}

/// A fresh nonce from the operating system's random source (`getrandom`).
///
/// # Errors
/// The OS has no random numbers to give.
pub fn random_nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| std::io::Error::other(format!("no random numbers from the OS: {e}")))?;
    Ok(nonce)
}

fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    crate::frame::encode_frame(&mut frame, Header::new(kind), payload);
    frame
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

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HandshakeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Nothing may follow: a longer payload is malformed.
    fn end(&self) -> Result<(), HandshakeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(HandshakeError("trailing bytes"))
        }
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
    use crate::auth::{Role, Secret, prove, verify};
    use proptest::prelude::*;

    fn hello(nonce: Vec<u8>) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            service: "users".into(),
            fingerprint: 42,
            nonce,
            max_frame_len: 1 << 20,
        }
    }

    fn payload_of(frame: &[u8], kind: Kind) -> Vec<u8> {
        let (header, payload, used) = crate::frame::decode(frame, 4096).unwrap().unwrap();
        assert_eq!((header.kind, used), (kind, frame.len()));
        frame[payload].to_vec()
    }

    #[test]
    fn hello_round_trips_and_truncations_are_errors() {
        let hello = hello(vec![7; NONCE_LEN]);
        let payload = payload_of(&hello.to_frame(), Kind::Hello);
        assert_eq!(Hello::parse(&payload).unwrap(), hello);
        for cut in 0..payload.len() {
            assert!(Hello::parse(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_version_1_hello_still_parses_so_its_sender_hears_of_the_mismatch() {
        let hello = Hello {
            version: 1,
            nonce: Vec::new(),
            max_frame_len: 0,
            ..hello(Vec::new())
        };
        let payload = payload_of(&hello.to_frame(), Kind::Hello);
        // Version 1 ended after the secret: no limit field.
        let v1 = &payload[..payload.len() - 4];
        let parsed = Hello::parse(v1).unwrap();
        assert_eq!((parsed.version, parsed.max_frame_len), (1, u32::MAX));
    }

    #[test]
    fn challenge_proof_and_welcome_round_trip_and_truncations_are_errors() {
        let challenge = Challenge {
            nonce: [9; NONCE_LEN],
        };
        let payload = payload_of(&challenge.to_frame(), Kind::Challenge);
        assert_eq!(payload.len(), 4 + NONCE_LEN);
        assert_eq!(Challenge::parse(&payload).unwrap(), challenge);
        for cut in 0..payload.len() {
            assert!(Challenge::parse(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(Challenge::parse(&longer).is_err());

        let proof = Proof([3; PROOF_LEN]);
        let payload = payload_of(&proof.to_frame(), Kind::Proof);
        assert_eq!(Proof::parse(&payload).unwrap(), proof);
        for cut in 0..payload.len() {
            assert!(Proof::parse(&payload[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Proof::parse(&[0; PROOF_LEN + 1]).is_err());

        for proof in [None, Some([5; PROOF_LEN])] {
            let welcome = Welcome {
                version: PROTOCOL_VERSION,
                fingerprint: 42,
                max_frame_len: 1 << 20,
                max_in_flight: 64,
                proof,
            };
            let payload = payload_of(&welcome.to_frame(), Kind::Welcome);
            assert_eq!(Welcome::parse(&payload).unwrap(), welcome);
            // Cut anywhere but right after the fixed part, a welcome is malformed.
            for cut in (0..payload.len()).filter(|&c| c != 24) {
                assert!(Welcome::parse(&payload[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn the_secret_never_appears_in_any_handshake_frame() {
        let secret = Secret::new("correct horse battery staple");
        let hello = hello(random_nonce().unwrap().to_vec());
        let challenge = Challenge::random().unwrap();
        let proof = prove(&secret, Role::Client, &hello, &challenge);
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            fingerprint: 42,
            max_frame_len: 1 << 20,
            max_in_flight: 64,
            proof: Some(prove(&secret, Role::Server, &hello, &challenge).0),
        };
        let wire = [
            hello.to_frame(),
            challenge.to_frame(),
            proof.to_frame(),
            welcome.to_frame(),
        ]
        .concat();
        assert!(
            !wire
                .windows(secret.bytes().len())
                .any(|w| w == secret.bytes())
        );
    }

    #[test]
    fn proofs_verify_only_for_their_secret_role_and_transcript() {
        let secret = Secret::new("s3cret");
        let hello = hello(vec![1; NONCE_LEN]);
        let challenge = Challenge {
            nonce: [2; NONCE_LEN],
        };
        let client = prove(&secret, Role::Client, &hello, &challenge);
        let server = prove(&secret, Role::Server, &hello, &challenge);
        assert!(verify(&secret, Role::Client, &hello, &challenge, &client.0));
        assert!(verify(&secret, Role::Server, &hello, &challenge, &server.0));
        // The labels differ: neither proof can be reflected as the other.
        assert_ne!(client, server);
        assert!(!verify(
            &secret,
            Role::Server,
            &hello,
            &challenge,
            &client.0
        ));
        assert!(!verify(
            &secret,
            Role::Client,
            &hello,
            &challenge,
            &server.0
        ));
        // Another secret, or any change to the transcript, and the proof is wrong.
        assert!(!verify(
            &Secret::new("s3creT"),
            Role::Client,
            &hello,
            &challenge,
            &client.0
        ));
        let other_nonce = Challenge {
            nonce: [3; NONCE_LEN],
        };
        assert!(!verify(
            &secret,
            Role::Client,
            &hello,
            &other_nonce,
            &client.0
        ));
        let changes = [
            Hello {
                nonce: vec![9; NONCE_LEN],
                ..hello.clone()
            },
            Hello {
                version: PROTOCOL_VERSION + 1,
                ..hello.clone()
            },
            Hello {
                fingerprint: 43,
                ..hello.clone()
            },
            Hello {
                service: "user".into(),
                ..hello.clone()
            },
        ];
        for changed in &changes {
            assert!(
                !verify(&secret, Role::Client, changed, &challenge, &client.0),
                "{changed:?}"
            );
        }
        // Truncated or extended proofs are wrong, never a panic.
        assert!(!verify(
            &secret,
            Role::Client,
            &hello,
            &challenge,
            &client.0[..31]
        ));
        assert!(!verify(&secret, Role::Client, &hello, &challenge, &[]));
        assert!(!verify(
            &secret,
            Role::Client,
            &hello,
            &challenge,
            &[client.0, client.0].concat()
        ));
    }

    #[test]
    fn proofs_match_a_known_vector() {
        // HMAC-SHA256 of the documented transcript, computed independently with Python's
        // `hmac` module: guards the layout against accidental change.
        let secret = Secret::new("key");
        let hello = Hello {
            version: 3,
            service: "svc".into(),
            fingerprint: 0x0102_0304_0506_0708,
            nonce: vec![0xaa; NONCE_LEN],
            max_frame_len: 0,
        };
        let challenge = Challenge {
            nonce: [0xbb; NONCE_LEN],
        };
        let hex = |p: Proof| p.0.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(prove(&secret, Role::Client, &hello, &challenge)),
            CLIENT_VECTOR
        );
        assert_eq!(
            hex(prove(&secret, Role::Server, &hello, &challenge)),
            SERVER_VECTOR
        );
    }

    #[test]
    fn rejects_are_structured_for_new_clients_and_text_for_old_ones() {
        let frame = reject_frame(RejectCode::Fingerprint, "differs", 0xabcd, PROTOCOL_VERSION);
        let (header, payload) = split_frame(&frame);
        let reject = parse_reject(&header, &payload);
        assert_eq!(reject.code, RejectCode::Fingerprint as u8);
        assert_eq!(reject.server_version, Some(PROTOCOL_VERSION));
        assert_eq!(reject.server_fingerprint, Some(0xabcd));
        assert_eq!(reject.reason, "differs");
        // A protocol-3 client reads `code, reason` with the version in the text.
        let old = reject_frame(RejectCode::Version, "server speaks 4", 1, 3);
        let (header, payload) = split_frame(&old);
        assert_eq!(header.method, 0);
        assert_eq!(payload[0], RejectCode::Version as u8);
        assert_eq!(&payload[1..], b"server speaks 4");
        let reject = parse_reject(&header, &payload);
        assert_eq!(
            (reject.server_version, reject.reason.as_str()),
            (None, "server speaks 4")
        );
    }

    fn split_frame(frame: &[u8]) -> (Header, Vec<u8>) {
        let (header, range, _) = crate::frame::decode(frame, 1 << 16).unwrap().unwrap();
        (header, frame[range].to_vec())
    }

    const CLIENT_VECTOR: &str = "b1d6dfa2d4904bda96b63165b8fb94197d04f23a3e0af5e00d0002d3ee783d44";
    const SERVER_VECTOR: &str = "4b64e0929808412d3529e34a6750f20d931ab507fad94b1d0070caf6b62587f8";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic a handshake parser, and what parses re-encodes to
        /// the same payload (challenge, proof, welcome: exact layouts).
        #[test]
        fn handshake_parsers_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            server_version in any::<u16>(),
        ) {
            let _ = Hello::parse(&bytes);
            let _ = Hello::peek_version(&bytes);
            let mut header = Header::new(Kind::Reject);
            header.method = server_version;
            let _ = parse_reject(&header, &bytes);
            if let Ok(challenge) = Challenge::parse(&bytes) {
                prop_assert_eq!(payload_of(&challenge.to_frame(), Kind::Challenge), bytes.clone());
            }
            if let Ok(proof) = Proof::parse(&bytes) {
                prop_assert_eq!(payload_of(&proof.to_frame(), Kind::Proof), bytes.clone());
            }
            if let Ok(welcome) = Welcome::parse(&bytes) {
                // The reserved field is not kept: compare all but it.
                let again = payload_of(&welcome.to_frame(), Kind::Welcome);
                prop_assert_eq!(again.len(), bytes.len());
                prop_assert_eq!(&again[..6], &bytes[..6]);
                prop_assert_eq!(&again[8..], &bytes[8..]);
            }
        }

        /// Valid handshake frames, cut short or with a byte changed, are refused or parse to
        /// something else — never a panic; a changed proof never verifies.
        #[test]
        fn damaged_challenges_and_proofs_are_refused(
            nonce in any::<[u8; NONCE_LEN]>(),
            cut in 0usize..36,
            flip in 0usize..36,
            bit in 0u8..8,
        ) {
            let challenge = Challenge { nonce };
            let payload = payload_of(&challenge.to_frame(), Kind::Challenge);
            prop_assert!(Challenge::parse(&payload[..cut]).is_err());
            let mut damaged = payload.clone();
            damaged[flip] ^= 1 << bit;
            match Challenge::parse(&damaged) {
                Ok(parsed) => prop_assert_ne!(parsed, challenge),
                Err(_) => prop_assert!(flip < 4, "only the magic makes a challenge unreadable"),
            }
            let secret = Secret::new("s3cret");
            let hello = hello(vec![1; NONCE_LEN]);
            let proof = prove(&secret, Role::Client, &hello, &challenge);
            let cut = cut.min(PROOF_LEN - 1);
            prop_assert!(Proof::parse(&proof.0[..cut]).is_err());
            prop_assert!(!verify(&secret, Role::Client, &hello, &challenge, &proof.0[..cut]));
            let mut damaged = proof.0;
            damaged[flip % PROOF_LEN] ^= 1 << bit;
            prop_assert!(!verify(&secret, Role::Client, &hello, &challenge, &damaged));
        }
    }
}
