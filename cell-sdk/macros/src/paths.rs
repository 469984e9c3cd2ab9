//! Paths that macro expansions use to reach runtime crates.
//!
//! Expansions must keep working when the consumer renamed a dependency, so the extern crate
//! name is looked up from the consumer's manifest through `cell-resolver` (hermetic builds:
//! `docs/design.md`), never assumed.

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// The path of the `cell-sdk` facade as the crate being compiled names it: `::cell_sdk`, or
/// `::sdk` after `sdk = { package = "cell-sdk" }`. Inside cell-sdk itself (its tests and docs)
/// it is `::cell_sdk`, which `extern crate self as cell_sdk;` makes valid.
///
/// When the manifest does not name cell-sdk the path falls back to `::cell_sdk` and the error
/// explains what to add: the caller emits it next to its best-effort expansion.
pub(crate) fn cell_sdk() -> (TokenStream, Option<syn::Error>) {
    let resolved = cell_resolver::resolve_from_env("cell-sdk")
        .map_err(|e| e.to_string())
        .and_then(|r| crate_path(&r.extern_crate, Span::call_site()));
    match resolved {
        Ok(path) => (path, None),
        Err(e) => (
            quote!(::cell_sdk),
            Some(syn::Error::new(
                Span::call_site(),
                format!("{e}\n  note: Cell's macros expand to paths into `cell-sdk`"),
            )),
        ),
    }
}

/// `::name` for an extern crate name returned by the resolver (which read it from a manifest,
/// so it is checked rather than trusted: `syn::Ident::new` would panic on a bad name).
pub(crate) fn crate_path(extern_crate: &str, span: Span) -> Result<TokenStream, String> {
    let mut ident = syn::parse_str::<syn::Ident>(extern_crate)
        .or_else(|_| syn::parse_str::<syn::Ident>(&format!("r#{extern_crate}")))
        .map_err(|_| format!("`{extern_crate}` is not a valid crate name in Rust code"))?;
    ident.set_span(span);
    Ok(quote!(::#ident))
}
