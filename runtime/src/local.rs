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
use std::task::{Context, Poll};

use futures::FutureExt;

use crate::codec::{self, Bytes};
use crate::context::{CallContext, Connection, ConnectionGuard, Peer};
use crate::frame::Status;
use crate::metadata::Metadata;
use crate::service::{DispatchError, Service};
use crate::stream::{BoxedStream, Frame, Step};

/// A boxed reply: the status, the reply's bytes, and the metadata the handler set for it.
pub(crate) type LocalReply<'a> =
    Pin<Box<dyn Future<Output = (Status, Bytes, Option<Metadata>)> + Send + 'a>>;

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

    /// Runs the handler of a streaming call and returns its stream, or the failure that
    /// ends the call at once (refused, panicked, past its deadline…).
    fn open_stream(
        self: Arc<Self>,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> LocalStart;
}

/// The start of an in-process stream: its handler's run.
pub(crate) type LocalStart =
    Pin<Box<dyn Future<Output = Result<BoxedStream, (Status, Bytes)>> + Send>>;

/// One service and the in-process "connection" its calls come on (closed when dropped).
pub(crate) struct Local<S> {
    service: S,
    connection: Connection,
    _open: ConnectionGuard,
    /// Request ids of in-process calls: unique among the calls in flight, as on a connection.
    next_id: std::sync::atomic::AtomicU32,
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
            next_id: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

fn text(status: Status, message: &str) -> (Status, Bytes) {
    let mut out = Bytes::new();
    out.extend_from_slice(message.as_bytes());
    (status, out)
}

impl<S: Service> Local<S> {
    /// Decodes, admits and runs one call: the handler's reply, or the response that ends the
    /// call instead.
    async fn run(
        &self,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> Result<(S::Reply, Option<Metadata>), (Status, Bytes)> {
        let call = match S::decode(method, &request) {
            Ok(call) => call,
            Err(DispatchError::UnknownMethod(m)) => {
                return Err(text(
                    Status::UnknownMethod,
                    &format!("`{}` has no method number {m}", S::NAME),
                ));
            }
            // The server would close the connection; here only the call fails.
            Err(DispatchError::Decode(e)) => {
                return Err(text(Status::EncodeFailed, &e.to_string()));
            }
        };
        drop(request);
        let name = S::METHODS.get(method as usize).copied().unwrap_or("?");
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let context = CallContext::new(self.connection.clone(), id, name, deadline, metadata);
        if let Err(reason) = self.service.admit(&context) {
            return Err(text(Status::Refused, &reason));
        }
        let work =
            std::panic::AssertUnwindSafe(context.scope(self.service.call(call))).catch_unwind();
        let done = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(done) => done,
                Err(_) => {
                    return Err(text(
                        Status::DeadlineExceeded,
                        "deadline exceeded in process",
                    ));
                }
            },
            None => work.await,
        };
        let reply_metadata = self.connection.take_reply_metadata(id);
        done.map(|reply| (reply, reply_metadata))
            .map_err(|panic| text(Status::Panicked, &panic_message(panic.as_ref())))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

impl<S: Service> LocalCall for Local<S> {
    fn open_stream(
        self: Arc<Self>,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> LocalStart {
        Box::pin(async move {
            let (reply, _) = self.run(method, request, metadata, deadline).await?;
            match S::into_stream(reply) {
                Ok(stream) => Ok(stream),
                // A client asked a unary method for a stream: its one reply ends it.
                Err(reply) => {
                    let mut out = Bytes::new();
                    match S::encode(&reply, &mut out) {
                        Ok(status) => Err((status, out)),
                        Err(e) => Err(text(Status::EncodeFailed, &e.to_string())),
                    }
                }
            }
        })
    }

    fn call(
        &self,
        method: u16,
        request: Bytes,
        metadata: Option<Metadata>,
        deadline: Option<std::time::Instant>,
    ) -> LocalReply<'_> {
        Box::pin(async move {
            match self.run(method, request, metadata, deadline).await {
                Ok((reply, reply_metadata)) => {
                    let mut out = Bytes::new();
                    match S::encode(&reply, &mut out) {
                        Ok(status) => (status, out, reply_metadata),
                        Err(e) => {
                            let (status, out) = text(Status::EncodeFailed, &e.to_string());
                            (status, out, None)
                        }
                    }
                }
                Err((status, out)) => (status, out, None),
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

/// An in-process stream, as a [`crate::CallStream`] pulls it: no credit is needed, since the
/// consumer polls the handler's stream itself (one item at a time, through its archive).
pub(crate) struct LocalStream {
    state: LocalState,
    /// The current item's archive (reused).
    buffer: Bytes,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum LocalState {
    Starting(LocalStart),
    Streaming(BoxedStream),
    Ended,
}

impl LocalStream {
    pub(crate) fn new(start: LocalStart, deadline: Option<tokio::time::Instant>) -> LocalStream {
        LocalStream {
            state: LocalState::Starting(start),
            buffer: Bytes::new(),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }

    /// Hands the stream's next frame to `on_frame`.
    pub(crate) fn poll_frame<R>(
        &mut self,
        cx: &mut Context<'_>,
        on_frame: impl FnOnce(Frame<'_>) -> Option<R>,
    ) -> Poll<Option<R>> {
        if !matches!(self.state, LocalState::Ended)
            && let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.state = LocalState::Ended;
            return Poll::Ready(on_frame(Frame::Failed(crate::CallError::Timeout)));
        }
        loop {
            match &mut self.state {
                LocalState::Ended => return Poll::Ready(None),
                LocalState::Starting(start) => match start.as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => self.state = LocalState::Streaming(stream),
                    Poll::Ready(Err((status, bytes))) => {
                        self.state = LocalState::Ended;
                        self.buffer = bytes;
                        return Poll::Ready(on_frame(Frame::End(status, &self.buffer)));
                    }
                    Poll::Pending => break,
                },
                LocalState::Streaming(stream) => {
                    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        stream.poll_ready(cx)
                    }));
                    match polled {
                        Ok(Poll::Pending) => break,
                        Ok(Poll::Ready(())) => {}
                        Err(panic) => {
                            self.state = LocalState::Ended;
                            let (status, bytes) =
                                text(Status::Panicked, &panic_message(panic.as_ref()));
                            self.buffer = bytes;
                            return Poll::Ready(on_frame(Frame::End(status, &self.buffer)));
                        }
                    }
                    self.buffer.clear();
                    let frame = match stream.encode_next(&mut self.buffer) {
                        Ok(Step::Item) => return Poll::Ready(on_frame(Frame::Item(&self.buffer))),
                        Ok(Step::End) => Frame::End(Status::Ok, &[]),
                        Ok(Step::Error) => Frame::End(Status::AppError, &self.buffer),
                        Err(e) => {
                            self.buffer.clear();
                            self.buffer.extend_from_slice(e.to_string().as_bytes());
                            Frame::End(Status::EncodeFailed, &self.buffer)
                        }
                    };
                    let result = on_frame(frame);
                    self.state = LocalState::Ended;
                    return Poll::Ready(result);
                }
            }
        }
        Poll::Pending
    }

    /// Drops the handler's stream (its producer stops).
    pub(crate) fn finish(&mut self) {
        self.state = LocalState::Ended;
    }
}
