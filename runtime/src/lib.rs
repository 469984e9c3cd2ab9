//! `cell-runtime`: the minimal core every cell links.
//!
//! It provides
//! - [`Fingerprint`]: a compile-time structural fingerprint of a type (field names, field types,
//!   nested types included), so a changed type is detected at a handshake or when a table is
//!   opened, never misread;
//! - [`Protein`] and the [`codec`] functions: rkyv 0.8 archives that are *always validated*
//!   (bytecheck) before use;
//! - typed RPC between cells: [`frame`]s (16-byte header, 16-byte aligned payloads, length
//!   checked before allocating), a [`handshake`] (protocol version + service fingerprint),
//!   the server [`Membrane`] and the client [`Synapse`] over Unix sockets
//!   (`$CELL_SOCKET_DIR/<cell>.sock`) or TCP (both sides authenticated by challenge-response on
//!   a shared secret that never crosses the wire), with many calls in flight per
//!   connection, deadlines, cancellation, backpressure and graceful shutdown; the traits
//!   [`Protocol`] / [`Service`] that `#[service]` implements; a [`testkit`];
//! - server-to-client streams: a handler returns [`Streaming`], the client gets a
//!   [`CallStream`] (a `futures::Stream`), with credit-based backpressure and cancellation
//!   when the client drops it;
//! - [`CallContext`]: what a handler can know about its call (the [`Connection`] with its id,
//!   [`Peer`] and close notification; the request id, method and deadline).
//!
//! Key design decision: one I/O task per connection on each side and no task per call. The
//! server runs a connection's calls concurrently inside its connection task and writes every
//! reply finished in one wake-up with one syscall; the client's callers encode straight into
//! the connection's write buffer and wait on reusable slots. The steady state allocates
//! (almost) nothing, which is what small-message latency is made of.
//!
//! What it is not: a service mesh or a discovery system; it does not replay calls after a
//! reconnect (it cannot know whether a method is idempotent).
//!
//! The runtime knows nothing about databases, authentication or tooling: capabilities come
//! from provider cells (see the workspace's `ARCHITECTURE.md`).
//!
//! # Example
//! ```
//! use cell_runtime::{codec, Fingerprint};
//!
//! let bytes = codec::to_bytes(&vec![1u32, 2, 3]).unwrap();
//! let back: Vec<u32> = codec::from_bytes(&bytes).unwrap();
//! assert_eq!(back, vec![1, 2, 3]);
//! assert_ne!(<Vec<u32> as Fingerprint>::FINGERPRINT, <Vec<u64> as Fingerprint>::FINGERPRINT);
//! ```

pub mod auth;
pub mod codec;
mod context;
mod endpoint;
mod error;
pub mod fingerprint;
pub mod frame;
pub mod handshake;
mod io;
pub mod layer;
mod local;
mod membrane;
pub mod metadata;
mod service;
pub mod stream;
mod synapse;
pub mod testkit;

#[cfg(test)]
mod e2e_tests;

pub use auth::{SECRET_ENV, Secret};
pub use codec::{DecodeError, EncodeError, Protein};
pub use context::{Authenticated, CallContext, Connection, ConnectionId, Peer};
pub use endpoint::{Endpoint, SOCKET_DIR_ENV, current_uid, socket_dir};
pub use error::{CallError, CallOutcome, ConnectError, Never, ServeError};
pub use fingerprint::Fingerprint;
pub use frame::Status;
pub use membrane::{Membrane, MembraneConfig, Shutdown};
pub use metadata::{Metadata, MetadataError, TraceParent};
pub use service::{
    Admission, DispatchError, Protocol, Service, ServiceClient, ServiceName, TypedClient,
};
pub use stream::{CallStream, StreamClosed, StreamSender, Streaming};
pub use synapse::{ALLOW_SERVER_UIDS_ENV, Synapse, SynapseConfig};

/// Re-exports used by macro expansions. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use rkyv;
}

/// Serves `service` on its default socket, `$CELL_SOCKET_DIR/<name>.sock`, until SIGINT or
/// SIGTERM, then shuts down gracefully (in-flight calls finish).
///
/// # Errors
/// When the socket cannot be bound; see [`ServeError`].
pub async fn serve<S: Service>(service: S) -> Result<(), ServeError> {
    serve_at(
        Endpoint::for_cell(S::NAME),
        service,
        MembraneConfig::default(),
    )
    .await
}

/// Serves `service` at `endpoint` until SIGINT or SIGTERM, then shuts down gracefully.
///
/// # Errors
/// When the endpoint cannot be bound; see [`ServeError`].
pub async fn serve_at<S: Service>(
    endpoint: Endpoint,
    service: S,
    config: MembraneConfig,
) -> Result<(), ServeError> {
    let membrane = Membrane::bind(endpoint, service, config)?;
    let shutdown = membrane.shutdown_handle();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.shutdown();
    });
    let result = membrane.serve().await;
    signals.abort();
    result
}

/// Completes when the process receives SIGTERM or SIGINT.
///
/// Servers await this to start a graceful shutdown. If the signal handlers cannot be
/// installed, it never completes: the process then stops only by being killed, which is
/// what it would do without handlers anyway, rather than shutting down at once.
///
/// ```no_run
/// # async fn run() {
/// cell_runtime::shutdown_signal().await;
/// println!("stopping");
/// # }
/// ```
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
