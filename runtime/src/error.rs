//! Errors of the RPC layer: what a caller sees ([`CallError`], [`ConnectError`]) and what a
//! server reports ([`ServeError`]).
//!
//! A call's result is `Result<T, CallError<E>>`, where `E` is the method's own application
//! error (a protein) and every other variant is a failure of the transport or the server around
//! the handler (`docs/rpc.md`, "What a call returns").

use std::fmt;
use std::io;

use crate::codec::{DecodeError, EncodeError};
use crate::frame::Status;

/// The application error type of methods that cannot fail: it has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// `Never` is part of a stream's type (`Streaming<T>` is `Streaming<T, Never>`), so it has a
/// fingerprint; it is never archived.
impl crate::Fingerprint for Never {
    const FINGERPRINT: u64 = crate::fingerprint::mix_str(crate::fingerprint::SEED, "never");

    fn type_name() -> String {
        "Never".into()
    }
}

/// Why a call did not return the method's value.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E = Never> {
    /// The method returned its application error `Err(e)`.
    #[error("the service returned an error: {0:?}")]
    App(E),
    /// The call's deadline passed after its request was sent (or the server stopped the
    /// handler at the deadline): the server was told to stop, but the call may have run, in
    /// part or in full. [`CallOutcome::Unknown`].
    #[error("the call timed out")]
    Timeout,
    /// The connection broke after the request was sent and before its reply arrived: the call
    /// may or may not have run. [`CallOutcome::Unknown`].
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The request never left this process (the connection died before it was written, or
    /// the deadline passed while the call waited for a connection or a free slot): the
    /// server did nothing. [`CallOutcome::NotSent`].
    #[error("the call was never sent: {0}")]
    NotSent(String),
    /// The server refused the call before its handler ran (an admission check such as
    /// authentication), with its reason. [`CallOutcome::Refused`].
    #[error("the server refused the call: {0}")]
    Refused(String),
    /// No connection could be made (server down, handshake refused, version or fingerprint
    /// mismatch).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The handler panicked; the server caught it and keeps serving.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// The server answered with another failure status (unknown method, shutting down, reply
    /// not encodable, deadline exceeded on the server).
    #[error("the server failed the call ({status:?}): {message}")]
    Remote {
        /// The response status.
        status: Status,
        /// What the server said.
        message: String,
    },
    /// The arguments could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The reply did not validate as the expected type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Which case a failed call was: what the caller may conclude about the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The request never reached the server: nothing ran. Always safe to retry.
    NotSent,
    /// The request was sent and no reply came (the connection dropped, the deadline passed):
    /// the handler may have run, in part or in full. Retry only a method that is idempotent,
    /// or one the server deduplicates (an id in the arguments or metadata).
    Unknown,
    /// The server answered that it did not run the handler (a refusal by an admission check,
    /// an unknown method, a server shutting down): nothing ran. Safe to retry once the cause
    /// is gone (`ShuttingDown`: at once — the next call reconnects).
    Refused,
    /// The handler ran and failed: its application error, a panic, or a reply that could not
    /// be encoded or decoded. Whether to retry is the application's decision.
    Failed,
}

impl<E> CallError<E> {
    /// The application error, if that is what this is.
    pub fn app(self) -> Option<E> {
        match self {
            CallError::App(e) => Some(e),
            _ => None,
        }
    }

    /// Which case this failure is (see [`CallOutcome`] for what each allows).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            CallError::App(_) | CallError::Panicked(_) | CallError::Decode(_) => {
                CallOutcome::Failed
            }
            CallError::Timeout | CallError::Disconnected(_) => CallOutcome::Unknown,
            CallError::NotSent(_) | CallError::Connect(_) | CallError::Encode(_) => {
                CallOutcome::NotSent
            }
            CallError::Refused(_) => CallOutcome::Refused,
            CallError::Remote { status, .. } => match status {
                Status::UnknownMethod | Status::ShuttingDown | Status::Refused => {
                    CallOutcome::Refused
                }
                // A layer's own failure may come before or after the handler ran.
                Status::DeadlineExceeded | Status::LayerFailed => CallOutcome::Unknown,
                _ => CallOutcome::Failed,
            },
        }
    }

    /// Whether retrying can never run the handler twice: the call was not sent, or refused
    /// before its handler ran. (A [`CallOutcome::Unknown`] call may be retried only when the
    /// method is idempotent or deduplicated; that is the caller's knowledge, not ours.)
    pub fn is_safe_to_retry(&self) -> bool {
        matches!(self.outcome(), CallOutcome::NotSent | CallOutcome::Refused)
    }

    /// Converts a call error of a method that cannot fail into any other call error type.
    pub fn widen(err: CallError<Never>) -> CallError<E> {
        match err {
            CallError::App(never) => match never {},
            CallError::Timeout => CallError::Timeout,
            CallError::Disconnected(m) => CallError::Disconnected(m),
            CallError::NotSent(m) => CallError::NotSent(m),
            CallError::Refused(m) => CallError::Refused(m),
            CallError::Connect(c) => CallError::Connect(c),
            CallError::Panicked(m) => CallError::Panicked(m),
            CallError::Remote { status, message } => CallError::Remote { status, message },
            CallError::Encode(e) => CallError::Encode(e),
            CallError::Decode(e) => CallError::Decode(e),
        }
    }
}

/// Why a client could not connect, or was refused at the handshake.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be reached (no server, permission denied, …).
    #[error("cannot reach {endpoint}: {source}")]
    Io {
        /// Where we tried.
        endpoint: String,
        /// What the OS said.
        source: io::Error,
    },
    /// Client and server speak different protocol versions.
    #[error(
        "protocol version mismatch: this client speaks {client}, the server {}; upgrade the \
         older side",
        server.map_or_else(|| "an older one (3 or before)".to_string(), |v| v.to_string())
    )]
    VersionMismatch {
        /// Our version.
        client: u16,
        /// The server's, as it stated it (`None`: a server of protocol 3 or older, which
        /// does not state it structurally).
        server: Option<u16>,
    },
    /// The service's structural fingerprint differs: one side was built from another version
    /// of the protocol. Rebuild both from the same api crate.
    #[error(
        "service `{service}` has changed: this client was built for fingerprint {client}, \
         the server has {server}; rebuild both from the same protocol"
    )]
    FingerprintMismatch {
        /// Service name.
        service: String,
        /// Our fingerprint (hex).
        client: String,
        /// The server's fingerprint (hex).
        server: String,
    },
    /// The server refused for another reason (wrong service at this address, shutting down).
    #[error("the server refused the connection: {0}")]
    Rejected(String),
    /// The server closed the connection during the handshake without a word: on TCP this is
    /// how a client that fails to prove the shared secret is answered (the secrets differ, or
    /// the server is of protocol 2 or older), on a Unix socket a client of another user.
    #[error(
        "the server closed the connection during the handshake (TCP: wrong or missing secret \
         — ours differs from the server's; Unix socket: the server only serves its own user)"
    )]
    ClosedDuringHandshake,
    /// On TCP, the server did not prove that it knows the shared secret: it is not the server
    /// the client meant to reach (a wrong address, or someone impersonating it). The client
    /// refuses it and sends it nothing but the handshake, which does not reveal the secret.
    #[error(
        "refusing the server at {endpoint}: it did not prove it knows the shared secret \
         ({reason}); it is not the server you meant (wrong address, or an impostor)"
    )]
    ServerNotAuthenticated {
        /// Where we connected.
        endpoint: String,
        /// What was wrong with its side of the handshake.
        reason: String,
    },
    /// On a Unix socket, the server runs as another user than this client and that uid is not
    /// allowed ([`crate::SynapseConfig::allowed_server_uids`]): the client sent it nothing. A
    /// socket path in a shared directory may be served by someone else's relay.
    #[error(
        "refusing the server at {endpoint}: it runs as uid {uid}, not as this user; if that is \
         intended, allow it with `SynapseConfig::allowed_server_uids` or `$CELL_ALLOW_SERVER_UIDS`"
    )]
    UntrustedServer {
        /// Where we connected.
        endpoint: String,
        /// The server's uid (SO_PEERCRED).
        uid: u32,
    },
    /// The server's answer was not a valid handshake.
    #[error("invalid handshake from the server: {0}")]
    Protocol(String),
    /// The handshake did not complete in time.
    #[error("the handshake timed out")]
    Timeout,
    /// A TCP endpoint needs a shared secret and none was configured.
    #[error("a TCP endpoint needs a shared secret: set `CELL_SECRET` or configure one")]
    MissingSecret,
    /// The configured secret cannot be used (empty, or longer than the handshake allows).
    #[error("invalid shared secret: {0}")]
    InvalidSecret(String),
}

impl ConnectError {
    /// A copy for callers that share one failed attempt (an `io::Error` keeps its kind and
    /// message, not its source chain).
    pub(crate) fn clone_lossy(&self) -> ConnectError {
        match self {
            ConnectError::Io { endpoint, source } => ConnectError::Io {
                endpoint: endpoint.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            ConnectError::VersionMismatch { client, server } => ConnectError::VersionMismatch {
                client: *client,
                server: *server,
            },
            ConnectError::FingerprintMismatch {
                service,
                client,
                server,
            } => ConnectError::FingerprintMismatch {
                service: service.clone(),
                client: client.clone(),
                server: server.clone(),
            },
            ConnectError::Rejected(m) => ConnectError::Rejected(m.clone()),
            ConnectError::ClosedDuringHandshake => ConnectError::ClosedDuringHandshake,
            ConnectError::ServerNotAuthenticated { endpoint, reason } => {
                ConnectError::ServerNotAuthenticated {
                    endpoint: endpoint.clone(),
                    reason: reason.clone(),
                }
            }
            ConnectError::UntrustedServer { endpoint, uid } => ConnectError::UntrustedServer {
                endpoint: endpoint.clone(),
                uid: *uid,
            },
            ConnectError::Protocol(m) => ConnectError::Protocol(m.clone()),
            ConnectError::Timeout => ConnectError::Timeout,
            ConnectError::MissingSecret => ConnectError::MissingSecret,
            ConnectError::InvalidSecret(m) => ConnectError::InvalidSecret(m.clone()),
        }
    }
}

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another live server already serves this name.
    #[error("another server is already serving `{name}` at {path} (lock {lock} is held)")]
    AlreadyServing {
        /// The cell name.
        name: String,
        /// The socket path.
        path: String,
        /// The lock file held by the other server.
        lock: String,
    },
    /// Binding or accepting failed.
    #[error("cannot listen on {endpoint}: {source}")]
    Io {
        /// Where.
        endpoint: String,
        /// What the OS said.
        source: io::Error,
    },
    /// A TCP endpoint needs a shared secret (config or `$CELL_SECRET`).
    #[error("a TCP endpoint needs a shared secret: set `CELL_SECRET` or configure one")]
    MissingSecret,
    /// The configured secret cannot be used (empty, or longer than the handshake allows).
    #[error("invalid shared secret: {0}")]
    InvalidSecret(String),
}
