//! `cell-runtime`: the minimal core every cell links.
//!
//! It provides
//! - [`Fingerprint`]: a compile-time structural fingerprint of a type (field names, field types,
//!   nested types included), so a changed type is detected at a handshake or when a table is
//!   opened, never misread;
//! - [`Protein`] and the [`codec`] functions: rkyv 0.8 archives that are *always validated*
//!   (bytecheck) before use;
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

pub mod codec;
mod endpoint;
mod error;
pub mod fingerprint;
pub mod frame;
pub mod handshake;
mod io;
mod membrane;
mod service;
mod synapse;
pub mod testkit;

pub use codec::{DecodeError, EncodeError, Protein};
pub use endpoint::{Endpoint, SECRET_ENV, SOCKET_DIR_ENV, Secret, current_uid, socket_dir};
pub use error::{CallError, ConnectError, Never, ServeError};
pub use fingerprint::Fingerprint;
pub use frame::Status;
pub use membrane::{Membrane, MembraneConfig, Shutdown};
pub use service::{DispatchError, Protocol, Service};
pub use synapse::{Synapse, SynapseConfig};

/// Re-exports used by macro expansions. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use rkyv;
}
