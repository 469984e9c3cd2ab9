//! `cell-resolver`: cell name (+ optional version qualifier) → the consumer's extern crate name.
//!
//! Work in progress: see the macro-index issue.
