//! Server-to-client streams (protocol 5): a handler returns [`Streaming<T, E>`], the typed
//! client receives a [`CallStream<T, E>`], an async [`futures::Stream`] of
//! `Result<T, CallError<E>>`.
//!
//! On the wire a stream call is a `Request` (or `MetaRequest`) followed by a `Credit` frame
//! from the client, then any number of `StreamItem` frames from the server, ended by the
//! ordinary `Response` of the call: status `Ok` with an empty payload for a clean end, the
//! application error `E` (`AppError`), or any other failure status. Flow control is
//! credit-based: the server sends an item only against a credit the client granted (a window,
//! [`crate::SynapseConfig::stream_window`]); the client grants more as its consumer takes
//! items. So a slow consumer holds at most one window of items in the client, and the server
//! holds at most one produced item per stream: its producer is simply not polled without
//! credit. Dropping the [`CallStream`] sends `Cancel`; the server drops the stream, which stops
//! the producer (a [`StreamSender`] sees its `send` fail).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use crate::codec::{self, Bytes, EncodeError, Protein};
use crate::error::{CallError, Never};
use crate::fingerprint::{self, Fingerprint};

/// What a streaming handler returns: a stream of `T` that may end with the application error
/// `E`. `T` and `E` are proteins. The stream must be `'static` (it outlives the handler's
/// `&self`): move `Arc`s of the state it needs into it.
///
/// ```
/// use cell_runtime::Streaming;
/// // From values, from a `futures::Stream`, or from a channel a task fills:
/// let counted: Streaming<u64> = Streaming::iter(0..10u64);
/// let (sender, streamed): (_, Streaming<u64>) = Streaming::channel(8);
/// # drop((counted, sender, streamed));
/// ```
pub struct Streaming<T, E = Never> {
    inner: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
    /// How `E` is archived (a function, so `E = Never` needs no protein impl).
    encode_error: fn(&E, &mut Bytes) -> Result<(), EncodeError>,
    /// An item (or the end, `None`) polled from `inner` and not yet encoded.
    ready: Option<Option<Result<T, E>>>,
}

impl<T: Protein + Send + 'static> Streaming<T, Never> {
    /// A stream of `values` that cannot fail.
    pub fn values(values: impl Stream<Item = T> + Send + 'static) -> Streaming<T, Never> {
        use futures::StreamExt;
        Streaming::build(values.map(Ok), |never, _| match *never {})
    }

    /// A stream of the values of `iter`.
    pub fn iter<I>(iter: I) -> Streaming<T, Never>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Streaming::values(futures::stream::iter(iter))
    }

    /// A stream fed by a task through the returned [`StreamSender`], which holds up to
    /// `capacity` items (at least 1) before `send` waits for the client's credit. When the
    /// client drops its stream, `send` fails: the producer's signal to stop.
    pub fn channel(capacity: usize) -> (StreamSender<T, Never>, Streaming<T, Never>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (
            StreamSender { tx },
            Streaming::build(stream, |never, _| match *never {}),
        )
    }
}

impl<T: Protein + Send + 'static, E: Protein + Send + 'static> Streaming<T, E> {
    /// A stream of results: the first `Err(e)` ends the stream and reaches the client as
    /// [`CallError::App`]`(e)` (items after it are never polled).
    pub fn new(stream: impl Stream<Item = Result<T, E>> + Send + 'static) -> Streaming<T, E> {
        Streaming::build(stream, |e, out| codec::append(e, out))
    }

    /// As [`Streaming::channel`], for a stream that may end with an application error
    /// (`sender.send(Err(e))`).
    pub fn fallible_channel(capacity: usize) -> (StreamSender<T, E>, Streaming<T, E>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (StreamSender { tx }, Streaming::new(stream))
    }
}

impl<T, E> Streaming<T, E> {
    fn build(
        stream: impl Stream<Item = Result<T, E>> + Send + 'static,
        encode_error: fn(&E, &mut Bytes) -> Result<(), EncodeError>,
    ) -> Streaming<T, E> {
        Streaming {
            inner: Box::pin(stream),
            encode_error,
            ready: None,
        }
    }
}

impl<T, E> fmt::Debug for Streaming<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

/// The sending half of [`Streaming::channel`]. Cheap to clone; the stream ends cleanly when
/// every sender is dropped.
#[derive(Debug)]
pub struct StreamSender<T, E = Never> {
    tx: tokio::sync::mpsc::Sender<Result<T, E>>,
}

impl<T, E> Clone for StreamSender<T, E> {
    fn clone(&self) -> Self {
        StreamSender {
            tx: self.tx.clone(),
        }
    }
}

/// The client is gone (it dropped its stream, or the connection closed): stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's client is gone")]
pub struct StreamClosed;

impl<T, E> StreamSender<T, E> {
    /// Sends one item, waiting while the channel is full (the client has not taken enough).
    ///
    /// # Errors
    /// [`StreamClosed`] when the client dropped the stream or the connection closed.
    pub async fn send(&self, item: T) -> Result<(), StreamClosed> {
        self.tx.send(Ok(item)).await.map_err(|_| StreamClosed)
    }

    /// Ends the stream with the application error `error` (the client sees
    /// [`CallError::App`]).
    ///
    /// # Errors
    /// [`StreamClosed`] as for [`StreamSender::send`].
    pub async fn fail(&self, error: E) -> Result<(), StreamClosed> {
        self.tx.send(Err(error)).await.map_err(|_| StreamClosed)
    }

    /// Completes when the client is gone, so an idle producer notices too.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the client is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T: Fingerprint, E: Fingerprint> Fingerprint for Streaming<T, E> {
    // A stream of `T` is not a `T`: changing a method between unary and streaming changes the
    // service's fingerprint.
    const FINGERPRINT: u64 = fingerprint::mix_u64(
        fingerprint::mix_u64(
            fingerprint::mix_str(fingerprint::SEED, "stream"),
            T::FINGERPRINT,
        ),
        E::FINGERPRINT,
    );

    fn type_name() -> String {
        format!("Streaming<{}, {}>", T::type_name(), E::type_name())
    }
}

/// What the next frame of a stream is, once [`EncodedStream::encode_next`] appended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An item (`StreamItem` frame).
    Item,
    /// The stream ended cleanly; nothing was appended (the `Response` is empty).
    End,
    /// The stream ended with its application error, appended (an `AppError` response).
    Error,
}

/// A type-erased stream of encoded items: what the server (and an in-process client) pulls
/// from a [`Streaming`] reply. Implemented by [`Streaming`]; the runtime sees only this.
pub trait EncodedStream: Send {
    /// Polls the stream until its next item, or its end, is ready (kept until
    /// [`EncodedStream::encode_next`]). Nothing is polled without the client's credit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// Appends the ready item (or the error) to `out` and says which it was.
    ///
    /// # Errors
    /// When the item cannot be archived (the stream then ends with `EncodeFailed`).
    fn encode_next(&mut self, out: &mut Bytes) -> Result<Step, EncodeError>;
}

impl<T: Protein + Send, E: Send> EncodedStream for Streaming<T, E> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ready.is_some() {
            return Poll::Ready(());
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                self.ready = Some(item);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn encode_next(&mut self, out: &mut Bytes) -> Result<Step, EncodeError> {
        match self.ready.take() {
            Some(Some(Ok(item))) => codec::append(&item, out).map(|()| Step::Item),
            Some(Some(Err(error))) => (self.encode_error)(&error, out).map(|()| Step::Error),
            Some(None) => Ok(Step::End),
            None => Err(EncodeError {
                type_name: <T as Fingerprint>::type_name(),
                reason: "no stream item was ready".into(),
            }),
        }
    }
}

/// A boxed [`EncodedStream`], as `Service::into_stream` hands it to the runtime.
pub type BoxedStream = Box<dyn EncodedStream>;

/// How a client turns a stream's `AppError` payload into its error (a function, so a stream
/// without an application error needs no protein impl for `Never`).
pub(crate) type DecodeError<E> = fn(&[u8]) -> CallError<E>;

pub(crate) fn decode_app_error<E: Protein>(payload: &[u8]) -> CallError<E> {
    match codec::from_bytes::<E>(payload) {
        Ok(e) => CallError::App(e),
        Err(d) => CallError::Decode(d),
    }
}

pub(crate) fn no_app_error<E>(payload: &[u8]) -> CallError<E> {
    CallError::Remote {
        status: crate::frame::Status::AppError,
        message: format!(
            "an application error ({} bytes) from a stream that has none",
            payload.len()
        ),
    }
}

/// The client's end of a stream call: a [`futures::Stream`] of `Result<T, CallError<E>>`.
///
/// It yields the items in order, then ends (`None`) after the server's clean end, or yields
/// one `Err` — the application error ([`CallError::App`]), a lost connection
/// ([`CallError::Disconnected`]), a passed deadline ([`CallError::Timeout`]), a refusal — and
/// ends. Items already received are yielded before a failure. Dropping it before its end
/// cancels the call: the server drops the handler's stream.
pub struct CallStream<T, E = Never> {
    pub(crate) source: Source,
    pub(crate) decode_error: DecodeError<E>,
    pub(crate) done: bool,
    pub(crate) _types: std::marker::PhantomData<fn() -> (T, E)>,
}

/// Where a [`CallStream`]'s frames come from.
pub(crate) enum Source {
    /// A connection's slot (`synapse`).
    Remote(crate::synapse::RemoteStream),
    /// An in-process service (`Synapse::in_process`).
    Local(crate::local::LocalStream),
}

/// One frame of a stream as the client sees it.
pub(crate) enum Frame<'a> {
    /// An item's archive.
    Item(&'a [u8]),
    /// The call's final response.
    End(crate::frame::Status, &'a [u8]),
    /// A failure of the client's own side (lost connection, deadline).
    Failed(CallError),
}

impl<T, E> fmt::Debug for CallStream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T: Protein, E> Stream for CallStream<T, E> {
    type Item = Result<T, CallError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let decode_error = self.decode_error;
        let this = &mut *self;
        let mut finished = false;
        let polled = {
            let on_frame = |frame: Frame<'_>| -> Option<Result<T, CallError<E>>> {
                match frame {
                    Frame::Item(bytes) => Some(codec::from_bytes::<T>(bytes).map_err(|e| {
                        finished = true;
                        CallError::Decode(e)
                    })),
                    Frame::End(status, payload) => {
                        finished = true;
                        match status {
                            crate::frame::Status::Ok => None,
                            crate::frame::Status::AppError => Some(Err(decode_error(payload))),
                            other => Some(Err(CallError::widen(crate::synapse::remote_error(
                                other, payload,
                            )))),
                        }
                    }
                    Frame::Failed(e) => {
                        finished = true;
                        Some(Err(CallError::widen(e)))
                    }
                }
            };
            match &mut this.source {
                Source::Remote(remote) => remote.poll_frame(cx, on_frame),
                Source::Local(local) => local.poll_frame(cx, on_frame),
            }
        };
        match polled {
            Poll::Ready(item) => {
                if finished {
                    this.done = true;
                    match &mut this.source {
                        Source::Remote(remote) => remote.finish(),
                        Source::Local(local) => local.finish(),
                    }
                }
                Poll::Ready(item)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Protein, E> futures::stream::FusedStream for CallStream<T, E> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
