//! Shared helpers for the integration tests in `tests/integration/` (one binary, see its
//! `main.rs` for the table of contents).
