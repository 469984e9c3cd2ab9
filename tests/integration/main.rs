//! All cross-crate integration tests, in one binary (faster to build on two cores).
//!
//! Table of contents:
//! - `protein`: `#[protein]` round trips, fingerprints, and its compile errors (trybuild UI tests
//!   in `tests/ui/protein/`).
//! - `index`: `cell-macro-index` with real `cargo metadata --offline` on the fixture workspaces
//!   of `tests/fixtures/lsp/` (copied to a temp dir first), one test per problem code, the
//!   snapshot, incremental updates and the watcher, and the index of this repository itself.

mod index;
mod protein;
