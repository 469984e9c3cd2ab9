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
//! - `remote`: `cell_remote!` aliases reaching providers' macros and API, and its compile errors
//!   with problem codes (trybuild UI tests in `tests/ui/remote/`).
//! - `providers`: the `validate` provider (not a database) through `#[Val::schema]`.
//! - `resolver`: a consumer workspace outside this one built with real cargo
//!   (`tests/fixtures/workspace`): two versions of one provider, same macro name from two
//!   providers, renamed providers and cell-sdk; the resolver and export parser on the same files.

mod protein;
mod providers;
mod remote;
mod resolver;
mod rpc;
mod rpc_handler;
