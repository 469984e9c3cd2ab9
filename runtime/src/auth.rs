//! Authentication on TCP: the shared [`Secret`] and the challenge-response proofs of it.
//!
//! Both sides prove they know the secret without sending it: each proof is HMAC-SHA256 keyed by
//! the secret over a per-side label ([`CLIENT_PROOF_LABEL`], [`SERVER_PROOF_LABEL`]) and the
//! transcript of the connection's handshake (both nonces, the hello's version, fingerprint and
//! service name; see [`crate::handshake`] for the frames that carry them). Proofs are checked in
//! constant time. Kept apart from `endpoint` (where a service is) and `handshake` (the frames'
//! byte layouts), so neither needs the other.
//!
//! ```
//! use cell_runtime::auth::{Role, Secret, prove, verify};
//! use cell_runtime::handshake::{Challenge, Hello, PROTOCOL_VERSION};
//!
//! let secret = Secret::new("correct horse");
//! let hello = Hello {
//!     version: PROTOCOL_VERSION,
//!     service: "users".into(),
//!     fingerprint: 42,
//!     nonce: vec![1; 32],
//!     max_frame_len: 1 << 20,
//! };
//! let challenge = Challenge { nonce: [2; 32] };
//! let proof = prove(&secret, Role::Client, &hello, &challenge);
//! assert!(verify(&secret, Role::Client, &hello, &challenge, &proof.0));
//! assert!(!verify(&secret, Role::Server, &hello, &challenge, &proof.0));
//! ```

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::handshake::{Challenge, Hello, PROOF_LEN, Proof};

/// Environment variable holding the shared secret for TCP connections.
pub const SECRET_ENV: &str = "CELL_SECRET";

/// Domain-separation label of the client's proof.
pub const CLIENT_PROOF_LABEL: &[u8] = b"cell/tcp-auth/v3/client-proof";

/// Domain-separation label of the server's proof (same length as the client's, other bytes).
pub const SERVER_PROOF_LABEL: &[u8] = b"cell/tcp-auth/v3/server-proof";

/// Which side a proof speaks for: each has its own label, so that neither proof can be
/// reflected back as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client's proof, in the `Proof` frame.
    Client,
    /// The server's proof, at the end of the `Welcome`.
    Server,
}

/// A shared secret for TCP connections: both sides prove they know it (HMAC-SHA256 over fresh
/// nonces, see [`crate::handshake`]); it never crosses the network. Its `Debug` output never
/// shows the bytes. Use a long random value (32 random bytes): a recorded handshake lets an
/// eavesdropper test guesses offline.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from bytes. It must be 1 to
    /// [`MAX_FIELD_LEN`](crate::handshake::MAX_FIELD_LEN) bytes long: binding or connecting
    /// with any other secret is an error.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret in `$CELL_SECRET`, if set and non-empty.
    pub fn from_env() -> Option<Secret> {
        std::env::var_os(SECRET_ENV)
            .filter(|s| !s.is_empty())
            .map(|s| Secret(s.into_encoded_bytes()))
    }

    /// Constant-time comparison with bytes a peer presented as the secret itself. Only clients
    /// of protocol 1 or 2 do that (the server then only decides whether to tell them about
    /// the version mismatch); protocol 3 proves the secret by challenge-response instead.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        // `ct_eq` on slices of different lengths is false without comparing contents; the
        // length of the secret is not what we protect.
        self.0.as_slice().ct_eq(presented).into()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Why this secret cannot be used, if it cannot: an empty secret would let a client
    /// that has none (and so sends an empty one) in — authentication silently off — and one
    /// longer than the handshake's field limit could never match.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("the shared secret is empty".into());
        }
        let max = crate::handshake::MAX_FIELD_LEN;
        if self.0.len() > max {
            return Err(format!(
                "the shared secret is {} bytes long; at most {max} are allowed",
                self.0.len()
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The proof of `role` for the connection that began with `hello` and `challenge`:
/// HMAC-SHA256 keyed by `secret` over the role's label and the transcript.
pub fn prove(secret: &Secret, role: Role, hello: &Hello, challenge: &Challenge) -> Proof {
    let mac = transcript_mac(secret, role, hello, challenge);
    let mut proof = [0u8; PROOF_LEN];
    proof.copy_from_slice(&mac.finalize().into_bytes());
    Proof(proof)
}

/// Whether `presented` is the proof of `role` for this connection, compared in constant
/// time. Any length other than [`PROOF_LEN`] is simply wrong.
pub fn verify(
    secret: &Secret,
    role: Role,
    hello: &Hello,
    challenge: &Challenge,
    presented: &[u8],
) -> bool {
    transcript_mac(secret, role, hello, challenge)
        .verify_slice(presented)
        .is_ok()
}

/// The keyed MAC over the role's label and the transcript, ready to finalize or verify.
fn transcript_mac(secret: &Secret, role: Role, hello: &Hello, challenge: &Challenge) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed): this never fails, and the key
    // is our own configuration, not peer bytes. Never fall back to another key.
    #[expect(clippy::expect_used, reason = "HMAC accepts keys of every length")]
    let mut mac = HmacSha256::new_from_slice(secret.bytes()).expect("HMAC takes any key length");
    mac.update(match role {
        Role::Client => CLIENT_PROOF_LABEL,
        Role::Server => SERVER_PROOF_LABEL,
    });
    // Both variable-length fields carry their length, so no two transcripts share bytes.
    let nonce = &hello.nonce[..hello.nonce.len().min(u16::MAX as usize)];
    mac.update(&(nonce.len() as u16).to_le_bytes());
    mac.update(nonce);
    mac.update(&challenge.nonce);
    mac.update(&hello.version.to_le_bytes());
    mac.update(&hello.fingerprint.to_le_bytes());
    let service = &hello.service.as_bytes()[..hello.service.len().min(u16::MAX as usize)];
    mac.update(&(service.len() as u16).to_le_bytes());
    mac.update(service);
    mac
}

type HmacSha256 = Hmac<Sha256>;
