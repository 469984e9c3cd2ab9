//! All cross-crate integration tests, in one binary (faster to build on two cores).
//!
//! Table of contents:
//! - `protein`: `#[protein]` round trips, fingerprints, and its compile errors (trybuild UI tests
//!   in `tests/ui/protein/`).
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
