//! Handler layers: wrap every call of a service — or of one method — before, after or instead
//! of its handler, in tower's `Layer`/`Service` shapes, so existing tower middleware (timeouts,
//! concurrency and rate limits) works on a cell unchanged.
//!
//! A layered service is an ordinary [`Service`] ([`Layered`]): the server decodes a request,
//! sets the [`CallContext`], and hands a [`CallRequest`] (the context and the decoded call)
//! to the stack; the innermost service ([`Handler`]) runs the handler with the request's
//! context. Layers compose in tower's order: with `ServiceBuilder::new().layer(a).layer(b)`,
//! `a` is outermost — `a` before, `b` before, handler, `b` after, `a` after. A layer that
//! answers *instead* returns without calling its inner service: an error of type [`Refusal`]
//! reaches the caller as `CallError::Refused` (nothing ran), tower's timeout error as
//! `CallError::Timeout`, any other error as `Status::LayerFailed`. [`for_method`] applies a
//! layer to one method only.
//!
//! ```
//! use std::time::Duration;
//! use cell_runtime::layer::{Handler, Layered};
//! # fn wrap<S: cell_runtime::Service>(service: S) -> impl cell_runtime::Service {
//! // tower's own middleware, used as it is.
//! let stack = tower::ServiceBuilder::new()
//!     .layer(tower::limit::ConcurrencyLimitLayer::new(64))
//!     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(2)));
//! Layered::new(service, stack)
//! # }
//! ```
//!
//! Cost: a layered call boxes its future and clones the stack (most middleware clones cheaply);
//! a service without layers pays nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, ServiceExt};

use crate::codec::{Bytes, EncodeError};
use crate::context::CallContext;
use crate::frame::Status;
use crate::service::{DispatchError, Protocol, Service, ServiceClient};

/// The error type tower middleware returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a layer stack receives: the call's context and the decoded call.
#[derive(Debug)]
pub struct CallRequest<C> {
    /// The call's context (also the task-local `CallContext::current()` of the handler).
    pub context: CallContext,
    /// The decoded call (the service's `Call`: which method, with its arguments).
    pub call: C,
}

/// A layer's answer *instead* of the call: it reaches the caller as `CallError::Refused` with
/// this reason, and counts as refused before the handler ran (safe to retry).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The innermost service of a stack: runs the cell service's handler, with the request's
/// context as the task-local context.
pub struct Handler<S> {
    service: Arc<S>,
}

impl<S> std::fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        Handler {
            service: self.service.clone(),
        }
    }
}

/// A boxed call future (layered calls only).
pub type CallFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S: Service> tower::Service<CallRequest<S::Call>> for Handler<S> {
    type Response = S::Reply;
    type Error = BoxError;
    type Future = CallFuture<S::Reply>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CallRequest<S::Call>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            let CallRequest { context, call } = request;
            Ok(context.scope(service.call(call)).await)
        })
    }
}

/// A service wrapped in a tower layer stack; itself a [`Service`] the server runs as any
/// other, with the same protocol (name, fingerprint, methods) and client.
pub struct Layered<S, T> {
    service: Arc<S>,
    stack: T,
}

impl<S, T> std::fmt::Debug for Layered<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layered").finish_non_exhaustive()
    }
}

impl<S: Service> Layered<S, Handler<S>> {
    /// Wraps `service` in `layer` (a single layer or a `tower::ServiceBuilder`).
    pub fn new<L: Layer<Handler<S>>>(service: S, layer: L) -> Layered<S, L::Service> {
        let service = Arc::new(service);
        let stack = layer.layer(Handler {
            service: service.clone(),
        });
        Layered { service, stack }
    }
}

impl<S: Protocol, T> Protocol for Layered<S, T> {
    const NAME: &'static str = S::NAME;
    const FINGERPRINT: u64 = S::FINGERPRINT;
    const METHODS: &'static [&'static str] = S::METHODS;
}

/// How a layered call ended without the handler's reply: a status and a message for the
/// caller.
#[derive(Debug)]
pub struct LayerError {
    status: Status,
    message: String,
}

impl LayerError {
    fn from_box(error: BoxError) -> LayerError {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return LayerError {
                status: Status::Refused,
                message: refusal.0.clone(),
            };
        }
        if error.is::<tower::timeout::error::Elapsed>() {
            return LayerError {
                status: Status::DeadlineExceeded,
                message: format!("a layer's timeout: {error}"),
            };
        }
        LayerError {
            status: Status::LayerFailed,
            message: error.to_string(),
        }
    }
}

impl<S, T> Service for Layered<S, T>
where
    S: Service,
    T: tower::Service<CallRequest<S::Call>, Response = S::Reply> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
{
    type Call = S::Call;
    type Reply = Result<S::Reply, LayerError>;

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
        let stack = self.stack.clone();
        async move {
            let Some(context) = CallContext::current() else {
                return Err(LayerError {
                    status: Status::LayerFailed,
                    message: "a layered service was called outside a call context".into(),
                });
            };
            stack
                .oneshot(CallRequest { context, call })
                .await
                .map_err(|e| LayerError::from_box(e.into()))
        }
    }

    fn admit(&self, context: &CallContext) -> Result<(), String> {
        self.service.admit(context)
    }

    fn encode(reply: &Self::Reply, out: &mut Bytes) -> Result<Status, EncodeError> {
        match reply {
            Ok(reply) => S::encode(reply, out),
            Err(e) => {
                out.extend_from_slice(e.message.as_bytes());
                Ok(e.status)
            }
        }
    }

    fn into_stream(reply: Self::Reply) -> Result<crate::stream::BoxedStream, Self::Reply> {
        match reply {
            Ok(reply) => S::into_stream(reply).map_err(Ok),
            Err(e) => Err(Err(e)),
        }
    }
}

impl<S, T> ServiceClient for Layered<S, T>
where
    S: ServiceClient,
    Layered<S, T>: Service,
{
    type Client = S::Client;
}

/// Applies `layer` to calls of `method` only; other calls go straight to the inner service.
pub fn for_method<L>(method: &'static str, layer: L) -> ForMethod<L> {
    ForMethod { method, layer }
}

/// See [`for_method`].
#[derive(Debug, Clone)]
pub struct ForMethod<L> {
    method: &'static str,
    layer: L,
}

impl<L: Layer<T>, T: Clone> Layer<T> for ForMethod<L> {
    type Service = ForMethodService<L::Service, T>;

    fn layer(&self, inner: T) -> Self::Service {
        ForMethodService {
            method: self.method,
            wrapped: self.layer.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// The service [`ForMethod`] makes.
#[derive(Debug, Clone)]
pub struct ForMethodService<W, T> {
    method: &'static str,
    wrapped: W,
    plain: T,
}

impl<C, R, W, T> tower::Service<CallRequest<C>> for ForMethodService<W, T>
where
    C: Send + 'static,
    W: tower::Service<CallRequest<C>, Response = R> + Clone + Send + 'static,
    W::Error: Into<BoxError>,
    W::Future: Send,
    T: tower::Service<CallRequest<C>, Response = R> + Clone + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
{
    type Response = R;
    type Error = BoxError;
    type Future = CallFuture<R>;

    /// Always ready: readiness is awaited on the branch a call takes (so a concurrency limit on
    /// one method takes no permit for the others).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CallRequest<C>) -> Self::Future {
        if request.context.method() == self.method {
            let wrapped = self.wrapped.clone();
            Box::pin(async move { wrapped.oneshot(request).await.map_err(Into::into) })
        } else {
            let plain = self.plain.clone();
            Box::pin(async move { plain.oneshot(request).await.map_err(Into::into) })
        }
    }
}
