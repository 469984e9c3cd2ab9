//! What a service is to the runtime. `#[service]` / `#[handler]` implement these traits; the
//! runtime's server ([`crate::Membrane`]) and client ([`crate::Synapse`]) only see them.

use std::future::Future;

use crate::codec::{Bytes, DecodeError, EncodeError};
use crate::frame::Status;

/// The wire identity of a service: what both sides compare at the handshake. Implemented for
/// the protocol (client side) and, through [`Service`], for the server.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a cell service protocol",
    note = "put `#[service]` on the definition of `{Self}`"
)]
pub trait Protocol {
    /// The service's name; its default socket is `<socket dir>/<NAME>.sock`.
    const NAME: &'static str;
    /// Structural hash of every method's name, argument and return fingerprints.
    const FINGERPRINT: u64;
    /// Method names, indexed by method number (for logs and spans).
    const METHODS: &'static [&'static str];
}

/// Why a request frame could not become a call.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No method has this number (the client was built from another protocol version).
    #[error("unknown method {0}")]
    UnknownMethod(u16),
    /// The arguments did not validate as the method's argument types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The server side of a service: decodes requests, runs handlers, encodes replies.
///
/// Decoding is synchronous and separate from running, so the bytes of a request can be
/// validated in place in the connection's read buffer and released before the handler runs.
pub trait Service: Protocol + Send + Sync + 'static {
    /// A decoded request: which method, with its owned arguments.
    type Call: Send + 'static;
    /// A finished call's return value.
    type Reply: Send + 'static;

    /// Validates and decodes the arguments of `method` from `payload` (16-byte aligned).
    ///
    /// # Errors
    /// Unknown method, or arguments that are not a valid archive of the method's types.
    fn decode(method: u16, payload: &[u8]) -> Result<Self::Call, DispatchError>;

    /// As [`Service::decode`], for a request whose bytes the server hands over: `frame` owns
    /// them and `payload` is the range of the arguments in it (16-byte aligned). A service
    /// whose handler borrows its argument as an archive keeps `frame` instead of copying the
    /// bytes (zero-copy); the default decodes from the slice.
    ///
    /// # Errors
    /// As [`Service::decode`].
    fn decode_owned(
        method: u16,
        frame: Bytes,
        payload: std::ops::Range<usize>,
    ) -> Result<Self::Call, DispatchError> {
        match frame.get(payload) {
            Some(bytes) => Self::decode(method, bytes),
            None => Err(DispatchError::Decode(crate::codec::DecodeError {
                type_name: "request".into(),
                len: frame.len(),
                reason: "payload range outside the frame".into(),
            })),
        }
    }

    /// Runs the handler.
    fn call(&self, call: Self::Call) -> impl Future<Output = Self::Reply> + Send + '_;

    /// Decides, before the handler runs, whether the call may run at all (credentials in
    /// its metadata, the peer). `Err(reason)` answers [`Status::Refused`] with the reason
    /// and the handler never runs: the caller sees `CallError::Refused`, a call that is
    /// safe to retry. The default admits every call; see [`Admission`] to add a check to
    /// a generated service.
    fn admit(&self, context: &crate::CallContext) -> Result<(), String> {
        let _ = context;
        Ok(())
    }

    /// Appends the reply's archive to `out` and says whether it is the value or the
    /// application error.
    ///
    /// # Errors
    /// When the reply cannot be encoded.
    fn encode(reply: &Self::Reply, out: &mut Bytes) -> Result<Status, EncodeError>;

    /// The stream a streaming method's handler returned ([`crate::Streaming`]), which the
    /// runtime sends item by item against the client's credit; `Err(reply)` for a reply
    /// that is one value ([`Service::encode`]). The default: no method streams.
    fn into_stream(reply: Self::Reply) -> Result<crate::stream::BoxedStream, Self::Reply> {
        Err(reply)
    }
}

/// A generated typed client (`UsersClient`): a thin wrapper over a [`crate::Synapse`].
pub trait TypedClient: Protocol + Sized {
    /// Wraps a connected synapse (which must have been connected for this protocol).
    fn from_synapse(synapse: crate::Synapse) -> Self;
    /// The underlying connection.
    fn synapse(&self) -> &crate::Synapse;
}

/// A service whose typed client is known: lets the test kit and `serve` hand out clients.
pub trait ServiceClient: Service {
    /// The generated client of this service.
    type Client: TypedClient;
}

/// The name `#[service]` gives a service struct; `#[handler]` reads it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a service",
    label = "`#[handler]` needs a `#[service]` struct",
    note = "add `#[service]` to the definition of `{Self}`: `#[service] pub struct {Self};`"
)]
pub trait ServiceName {
    /// The service's name.
    const NAME: &'static str;
    /// `#[service(strict)]`: a request is served only when its payload is exactly the archive
    /// of the method's arguments ([`crate::codec::check_exact`]); anything else is a decode
    /// error, which closes the connection.
    const STRICT: bool = false;
}

/// `service` with an admission check run before every call (see [`Service::admit`]): a refusal
/// is answered with [`Status::Refused`] and the reason, and the handler never runs.
///
/// ```
/// use cell_runtime::{Admission, CallContext};
/// # fn wrap<S: cell_runtime::Service>(service: S) -> impl cell_runtime::Service {
/// Admission::new(service, |ctx: &CallContext| match ctx.metadata().get("authorization") {
///     Some(b"token 42") => Ok(()),
///     _ => Err("a valid `authorization` is required".into()),
/// })
/// # }
/// ```
pub struct Admission<S, F> {
    service: S,
    check: F,
}

impl<S, F> std::fmt::Debug for Admission<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl<S, F> Admission<S, F>
where
    S: Service,
    F: Fn(&crate::CallContext) -> Result<(), String> + Send + Sync + 'static,
{
    /// Wraps `service`; `check` runs before every call, after `service`'s own admission.
    pub fn new(service: S, check: F) -> Admission<S, F> {
        Admission { service, check }
    }
}

impl<S: Protocol, F> Protocol for Admission<S, F> {
    const NAME: &'static str = S::NAME;
    const FINGERPRINT: u64 = S::FINGERPRINT;
    const METHODS: &'static [&'static str] = S::METHODS;
}

impl<S, F> Service for Admission<S, F>
where
    S: Service,
    F: Fn(&crate::CallContext) -> Result<(), String> + Send + Sync + 'static,
{
    type Call = S::Call;
    type Reply = S::Reply;

    fn decode(method: u16, payload: &[u8]) -> Result<Self::Call, DispatchError> {
        S::decode(method, payload)
    }

    fn decode_owned(
        method: u16,
        frame: Bytes,
        payload: std::ops::Range<usize>,
    ) -> Result<Self::Call, DispatchError> {
        S::decode_owned(method, frame, payload)
    }

    fn call(&self, call: Self::Call) -> impl Future<Output = Self::Reply> + Send + '_ {
        self.service.call(call)
    }

    fn admit(&self, context: &crate::CallContext) -> Result<(), String> {
        self.service.admit(context)?;
        (self.check)(context)
    }

    fn encode(reply: &Self::Reply, out: &mut Bytes) -> Result<Status, EncodeError> {
        S::encode(reply, out)
    }

    fn into_stream(reply: Self::Reply) -> Result<crate::stream::BoxedStream, Self::Reply> {
        S::into_stream(reply)
    }
}
