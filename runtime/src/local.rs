//! In-process calls: a [`crate::Synapse`] (and so a typed client) over a service in this
//! process, with no socket — a test double in the same call shape as a remote cell.
//!
//! A call still goes through the bytes: the arguments are archived, validated and decoded by
//! the service exactly as the server would (`Service::decode`), admission runs
//! (`Service::admit`), the handler runs with a [`CallContext`] (peer [`Peer::InProcess`], the
//! handle's metadata and deadline) and its panics are caught, and the reply is encoded and
//! validated by the client as it would be off the wire. So a fake that answers a typed client
//! here answers it the same way behind a socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;

use crate::codec::{self, Bytes};
use crate::context::{CallContext, Connection, ConnectionGuard, Peer};
use crate::frame::Status;
use crate::metadata::Metadata;
use crate::service::{DispatchError, Service};

/// A boxed reply: the status and the reply's bytes.
pub(crate) type LocalReply<'a> = Pin<Box<dyn Future<Output = (Status, Bytes)> + Send + 'a>>;

/// A service reachable by in-process calls (object-safe, so a `Synapse` holds any service).
pub(crate) trait LocalCall: Send + Sync {
    /// Runs one call from its archived arguments.
    fn call(
        &self,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> LocalReply<'_>;
}

/// One service and the in-process "connection" its calls come on (closed when dropped).
pub(crate) struct Local<S> {
    service: S,
    connection: Connection,
    _open: ConnectionGuard,
}

impl<S: Service> Local<S> {
    pub(crate) fn new(service: S) -> Local<S> {
        let (connection, guard) = Connection::open(Peer::InProcess {
            pid: std::process::id(),
        });
        Local {
            service,
            connection,
            _open: guard,
        }
    }
}

fn text(status: Status, message: &str) -> (Status, Bytes) {
    let mut out = Bytes::new();
    out.extend_from_slice(message.as_bytes());
    (status, out)
}

impl<S: Service> LocalCall for Local<S> {
    fn call(
        &self,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> LocalReply<'_> {
        Box::pin(async move {
            let call = match S::decode(method, &request) {
                Ok(call) => call,
                Err(DispatchError::UnknownMethod(m)) => {
                    return text(
                        Status::UnknownMethod,
                        &format!("`{}` has no method number {m}", S::NAME),
                    );
                }
                // The server would close the connection; here only the call fails.
                Err(DispatchError::Decode(e)) => return text(Status::EncodeFailed, &e.to_string()),
            };
            drop(request);
            let name = S::METHODS.get(method as usize).copied().unwrap_or("?");
            let context = CallContext::new(self.connection.clone(), 0, name, deadline, metadata);
            if let Err(reason) = self.service.admit(&context) {
                return text(Status::Refused, &reason);
            }
            let work =
                std::panic::AssertUnwindSafe(context.scope(self.service.call(call))).catch_unwind();
            let done = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                    Ok(done) => done,
                    Err(_) => {
                        return text(Status::DeadlineExceeded, "deadline exceeded in process");
                    }
                },
                None => work.await,
            };
            match done {
                Ok(reply) => {
                    let mut out = Bytes::new();
                    match S::encode(&reply, &mut out) {
                        Ok(status) => (status, out),
                        Err(e) => text(Status::EncodeFailed, &e.to_string()),
                    }
                }
                Err(panic) => {
                    let message = if let Some(s) = panic.downcast_ref::<&str>() {
                        (*s).to_string()
                    } else if let Some(s) = panic.downcast_ref::<String>() {
                        s.clone()
                    } else {
                        "a non-string panic payload".to_string()
                    };
                    text(Status::Panicked, &message)
                }
            }
        })
    }
}

/// Archives `request` for an in-process call.
pub(crate) fn archive<Req: crate::Protein>(request: &Req) -> Result<Bytes, codec::EncodeError> {
    let mut out = Bytes::new();
    codec::append(request, &mut out)?;
    Ok(out)
}

/// Shared handle type.
pub(crate) type Shared = Arc<dyn LocalCall>;
