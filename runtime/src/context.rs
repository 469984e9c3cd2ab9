//! The context of a call, for the handler that serves it: which connection it came on (an id
//! unique in this process, the peer's identity, a close notification) and the call's own
//! request id, method and deadline.
//!
//! The server ([`crate::Membrane`]) sets it as a task-local around every handler future, so a
//! handler — or any function it calls, on the same task — reads it with
//! [`CallContext::current`] or [`CallContext::with_current`]. A handler that never asks pays
//! for one reference-count increment per call and a thread-local swap per poll (measured in
//! `cell-bench rpc`, docs/benchmarks.md). Work the handler spawns onto another task does not
//! inherit it: pass the [`CallContext`] (it is `Clone + Send`) along.
//!
//! ```
//! use cell_runtime::{CallContext, Peer};
//!
//! // Outside a call there is no context.
//! assert!(CallContext::current().is_none());
//! // Inside a handler:
//! fn who_calls() -> String {
//!     CallContext::with_current(|ctx| match ctx.map(|c| c.connection().peer()) {
//!         Some(Peer::Unix { uid, .. }) => format!("uid {uid}"),
//!         Some(peer) => peer.to_string(),
//!         None => "not in a call".into(),
//!     })
//! }
//! assert_eq!(who_calls(), "not in a call");
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::metadata::{Metadata, TraceParent};

tokio::task_local! {
    static CURRENT: CallContext;
}

/// What a handler can know about the call it serves. Cheap to clone (one reference count).
#[derive(Clone)]
pub struct CallContext {
    connection: Connection,
    request_id: u32,
    method: &'static str,
    deadline: Option<Instant>,
    /// The request's metadata (protocol 4); `None` for a plain `Request`.
    metadata: Option<Arc<Metadata>>,
    /// The caller's trace (a valid `traceparent` in the metadata) and this call's own span id
    /// in it, which outgoing calls made while serving it send as their parent.
    trace: Option<(TraceParent, [u8; 8])>,
}

impl CallContext {
    /// The context of the call being served on this task, if any (a clone).
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(CallContext::clone).ok()
    }

    /// Runs `f` with the context of the call being served on this task (`None` outside a
    /// call), without cloning it.
    pub fn with_current<R>(f: impl FnOnce(Option<&CallContext>) -> R) -> R {
        let mut f = Some(f);
        match CURRENT.try_with(|ctx| f.take().map(|f| f(Some(ctx)))) {
            Ok(Some(r)) => r,
            // Not inside a call: `f` was not taken.
            _ => match f.take() {
                Some(f) => f(None),
                None => unreachable!("`try_with` returned an error after calling `f`"),
            },
        }
    }

    /// The connection the call came on.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The request id the client gave the call. Unique among the connection's calls in flight,
    /// reused after the call ends: pair it with [`Connection::id`] for logs.
    pub fn request_id(&self) -> u32 {
        self.request_id
    }

    /// The method's name.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// When the caller stops waiting (its budget, received with the request, counted from the
    /// moment the server read it); `None` when the caller set no deadline. The runtime ends the
    /// handler at that point anyway; a handler reads it to give up earlier or to pass a shorter
    /// budget on.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The metadata the caller sent with the request (empty when none).
    pub fn metadata(&self) -> &Metadata {
        static EMPTY: Metadata = Metadata::EMPTY;
        self.metadata.as_deref().unwrap_or(&EMPTY)
    }

    /// The caller's trace context (W3C `traceparent` from the metadata), if it sent a valid
    /// one. Calls this handler makes through any [`crate::Synapse`] on the same task continue
    /// this trace with [`CallContext::span_id`] as their parent.
    pub fn trace(&self) -> Option<TraceParent> {
        self.trace.map(|(t, _)| t)
    }

    /// This call's span id in the caller's trace (random, made when the request carried a
    /// trace); `None` without a trace.
    pub fn span_id(&self) -> Option<[u8; 8]> {
        self.trace.map(|(_, s)| s)
    }

    /// Sets the metadata sent back with this call's reply (protocol 5; replaces what was set
    /// before; bounded like any [`Metadata`]). The caller reads it with
    /// [`crate::metadata::capture_reply`]. For a unary call; a stream's reply carries none.
    ///
    /// ```
    /// # async fn handler() {
    /// use cell_runtime::{CallContext, Metadata};
    /// let mut md = Metadata::new();
    /// md.insert("x-served-by", b"replica-2").unwrap();
    /// if let Some(ctx) = CallContext::current() {
    ///     ctx.set_reply_metadata(md);
    /// }
    /// # }
    /// ```
    pub fn set_reply_metadata(&self, metadata: Metadata) {
        self.connection
            .set_reply_metadata(self.request_id, metadata);
    }

    /// Runs `future` with `self` as the current context (what the server does around every
    /// handler). For test doubles and layers that call a handler themselves.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    pub(crate) fn new(
        connection: Connection,
        request_id: u32,
        method: &'static str,
        deadline: Option<Instant>,
        metadata: Option<Metadata>,
    ) -> CallContext {
        let trace = metadata
            .as_ref()
            .and_then(Metadata::traceparent)
            .map(|t| (t, crate::metadata::new_span_id()));
        CallContext {
            connection,
            request_id,
            method,
            deadline,
            metadata: metadata.map(Arc::new),
            trace,
        }
    }
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("connection", &self.connection.id())
            .field("peer", self.connection.peer())
            .field("request_id", &self.request_id)
            .field("method", &self.method)
            .field("deadline", &self.deadline)
            .field("metadata", &self.metadata)
            .field("trace", &self.trace())
            .finish()
    }
}

/// A connection's id: unique among the connections of this process for its lifetime (a
/// counter from 1), the same for every call of one connection. Not a secret and not
/// meaningful across processes or restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    fn next() -> ConnectionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnectionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// Who is at the other end of a connection, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A process on this machine, by the kernel's SO_PEERCRED (taken when the connection was
    /// accepted). The server serves only its own uid, so `uid` is always the server's own.
    Unix {
        /// The peer's user id.
        uid: u32,
        /// The peer's group id.
        gid: u32,
        /// The peer's process id, when the kernel reports it (Linux does).
        pid: Option<i32>,
    },
    /// The caller is in this process: a typed client built over the service itself
    /// (`testkit::double`), with no socket.
    InProcess {
        /// This process's id.
        pid: u32,
    },
    /// A TCP peer that completed the challenge-response handshake.
    Tcp {
        /// The peer's address, as accepted.
        addr: SocketAddr,
        /// What it proved.
        authenticated: Authenticated,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Unix { uid, pid, .. } => match pid {
                Some(pid) => write!(f, "uid {uid} pid {pid}"),
                None => write!(f, "uid {uid}"),
            },
            Peer::Tcp { addr, .. } => write!(f, "{addr}"),
            Peer::InProcess { pid } => write!(f, "in-process (pid {pid})"),
        }
    }
}

/// How a TCP peer authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authenticated {
    /// It proved it knows the server's shared secret (every holder of the secret looks alike).
    SharedSecret,
}

/// A served connection, as handlers see it. Cheap to clone; a clone held after the connection
/// closed still answers (and [`Connection::closed`] completes at once).
#[derive(Clone)]
pub struct Connection(Arc<ConnectionInner>);

struct ConnectionInner {
    id: ConnectionId,
    peer: Peer,
    closed: watch::Sender<bool>,
    /// `None` once the connection closed (the callbacks ran).
    on_close: Mutex<Option<Vec<CloseCallback>>>,
    /// Reply metadata set by handlers (`CallContext::set_reply_metadata`), by request id,
    /// until the server sends their replies. `replying` counts the entries, so a call whose
    /// handler set none costs one relaxed atomic load.
    replies: Mutex<Vec<(u32, Metadata)>>,
    replying: std::sync::atomic::AtomicUsize,
}

type CloseCallback = Box<dyn FnOnce() + Send>;

impl Connection {
    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.0.id
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.0.peer
    }

    /// Whether the connection has closed (its task ended: the client went away, sent a bad
    /// frame, or the server shut down).
    pub fn is_closed(&self) -> bool {
        *self.0.closed.borrow()
    }

    /// Completes when the connection closes; at once if it already has. The future holds no
    /// borrow of `self`, so it can be moved into a spawned task.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.0.closed.subscribe();
        async move {
            // An error means the sender is gone, which happens only after it sent `true`.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    /// Runs `f` once when the connection closes, after its running calls were dropped — at once
    /// (on this thread) if it already has. For freeing what a connection holds (sessions, locks)
    /// without a task per connection. `f` runs on the connection's task as it ends: it must be
    /// quick and must not block; a panic in it is caught and logged.
    pub fn on_close(&self, f: impl FnOnce() + Send + 'static) {
        let mut callbacks = self.0.lock_callbacks();
        match callbacks.as_mut() {
            Some(list) => list.push(Box::new(f)),
            None => {
                drop(callbacks);
                run_close_callback(Box::new(f));
            }
        }
    }

    /// The reply metadata a handler set for request `id`, taken (the server sends it with the
    /// reply).
    pub(crate) fn take_reply_metadata(&self, id: u32) -> Option<Metadata> {
        if self.0.replying.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut replies = self.0.replies.lock().unwrap_or_else(|p| p.into_inner());
        let at = replies.iter().position(|(r, _)| *r == id)?;
        self.0.replying.fetch_sub(1, Ordering::Relaxed);
        Some(replies.swap_remove(at).1)
    }

    fn set_reply_metadata(&self, id: u32, metadata: Metadata) {
        let mut replies = self.0.replies.lock().unwrap_or_else(|p| p.into_inner());
        match replies.iter_mut().find(|(r, _)| *r == id) {
            Some(entry) => entry.1 = metadata,
            None => {
                replies.push((id, metadata));
                self.0.replying.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn open(peer: Peer) -> (Connection, ConnectionGuard) {
        let (closed, _) = watch::channel(false);
        let connection = Connection(Arc::new(ConnectionInner {
            id: ConnectionId::next(),
            peer,
            closed,
            on_close: Mutex::new(Some(Vec::new())),
            replies: Mutex::new(Vec::new()),
            replying: std::sync::atomic::AtomicUsize::new(0),
        }));
        let guard = ConnectionGuard(connection.clone());
        (connection, guard)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.0.id)
            .field("peer", &self.0.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ConnectionInner {
    fn lock_callbacks(&self) -> std::sync::MutexGuard<'_, Option<Vec<CloseCallback>>> {
        self.on_close.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Held by the connection's task: dropping it (however the task ends, also when the server
/// drops it at the drain timeout) marks the connection closed and runs its close callbacks.
pub(crate) struct ConnectionGuard(Connection);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let inner = &self.0.0;
        inner.closed.send_replace(true);
        let callbacks = inner.lock_callbacks().take().unwrap_or_default();
        for callback in callbacks {
            run_close_callback(callback);
        }
    }
}

fn run_close_callback(callback: CloseCallback) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).is_err() {
        tracing::error!("a connection-close callback panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn unix_peer() -> Peer {
        Peer::Unix {
            uid: 1,
            gid: 1,
            pid: Some(2),
        }
    }

    #[test]
    fn ids_are_unique_and_close_callbacks_run_once() {
        let (a, guard_a) = Connection::open(unix_peer());
        let (b, _guard_b) = Connection::open(unix_peer());
        assert_ne!(a.id(), b.id());
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        a.on_close(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!a.is_closed());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        drop(guard_a);
        assert!(a.is_closed());
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        // Registered after the close: runs at once.
        let counter = ran.clone();
        a.on_close(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert!(!b.is_closed());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_context_is_set_only_inside_its_scope() {
        let (conn, guard) = Connection::open(unix_peer());
        let ctx = CallContext::new(conn.clone(), 7, "echo", None, None);
        assert!(CallContext::current().is_none());
        let seen = ctx
            .scope(async {
                tokio::task::yield_now().await;
                CallContext::with_current(|c| c.map(|c| (c.request_id(), c.method())))
            })
            .await;
        assert_eq!(seen, Some((7, "echo")));
        assert!(CallContext::current().is_none());
        let closed = conn.closed();
        drop(guard);
        closed.await;
    }
}
