//! `cell-sdk`: the facade a cell depends on.
//!
//! It re-exports the runtime ([`codec`], [`Fingerprint`], [`Protein`]) and the macros
//! ([`protein`]; for provider cells [`export!`] and [`cell_remote!`]), and typed RPC between
//! cells: [`service`] / [`handler`] generate a service's protocol, dispatch and typed client;
//! [`serve`] runs a service; [`CallError`] is what a call can fail with; [`testkit`] serves a
//! service in-process for tests (see `docs/rpc.md`). Capabilities such as a database are *not*
//! here: they come from provider cells that export their own macros under an alias the
//! consumer picks (`cell_remote!(DB = "celldb")`).
//!
//! # Example
//! ```
//! use cell_sdk::{protein, Fingerprint};
//!
//! #[protein]
//! pub enum Shape {
//!     Circle { radius: f64 },
//!     Square(f64),
//! }
//!
//! let bytes = cell_sdk::codec::to_bytes(&Shape::Square(2.0)).unwrap();
//! assert_eq!(cell_sdk::codec::from_bytes::<Shape>(&bytes).unwrap(), Shape::Square(2.0));
//! assert_eq!(Shape::describe(), "enum { Circle { radius: f64 }, Square(0: f64) }");
//! ```

// Lets our own macros' `::cell_sdk::…` paths resolve inside this crate's tests and docs too.
extern crate self as cell_sdk;

pub use cell_runtime::codec::Archived;
pub use cell_runtime::{Fingerprint, Protein, codec, fingerprint, metadata};
pub use cell_sdk_macros::{cell_remote, export, protein};

// Typed RPC: the macros, the runtime types their expansions and users name, and the entry
// points.
pub use cell_runtime::{
    Admission, Authenticated, CallContext, CallError, CallOutcome, CallStream, ConnectError,
    Connection, ConnectionId, DispatchError, Endpoint, Membrane, MembraneConfig, Metadata,
    MetadataError, Never, Peer, Protocol, Secret, ServeError, Service, ServiceClient, Shutdown,
    Status, StreamClosed, StreamSender, Streaming, Synapse, SynapseConfig, TraceParent,
    TypedClient, serve, serve_at, shutdown_signal, socket_dir, testkit,
};
pub use cell_sdk_macros::{handler, service};

/// Re-exports used by macro expansions. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use cell_runtime as runtime;
    pub use cell_runtime::__private::*;
    pub use cell_runtime::ServiceName;
}
