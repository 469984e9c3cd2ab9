//! All cross-crate integration tests, in one binary (faster to build on two cores).
//!
//! Table of contents:
//! - `protein`: `#[protein]` round trips, fingerprints, and its compile errors (trybuild UI tests
//!   in `tests/ui/protein/`).
//! - `rpc`: typed RPC between real processes (the `rpc-probe-server` and `rpc-probe-client`
//!   binaries of this package): Unix sockets and authenticated TCP, SO_PEERCRED, many calls in
//!   flight, fingerprint mismatch, bad frames, panics, deadlines and cancellation, SIGKILL +
//!   restart + reconnect, stale sockets, a second server, graceful shutdown; and
//!   `#[service]`/`#[handler]` compile errors (`tests/ui/service/`).
//! - `rpc_handler`: the one-crate form (`#[service] struct` + `#[handler] impl`) through the
//!   test kit.

mod protein;
mod rpc;
mod rpc_handler;
