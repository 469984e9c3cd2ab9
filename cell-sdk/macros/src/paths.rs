//! Paths that macro expansions use to reach runtime crates.
//!
//! Expansions must keep working when the consumer renamed a dependency, so the extern crate
//! name is looked up from the consumer's manifest (DESIGN decision 1), never assumed.

use proc_macro2::TokenStream;
use quote::quote;

/// The path of the `cell-sdk` facade as the crate being compiled names it.
pub(crate) fn cell_sdk() -> TokenStream {
    quote!(::cell_sdk)
}
