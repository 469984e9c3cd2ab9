//! How expansions name the cell-postgres runtime crate.
//!
//! Every generated path goes through [`runtime_path`], which asks `cell-resolver` how the crate
//! being compiled names cell-postgres (a consumer may rename it): `::cell_postgres`, or `::pg` after
//! `pg = { package = "cell-postgres" }`. The spec is qualified with this macro crate's own
//! version (the two crates are released together), so a consumer that depends on two versions
//! gets the runtime matching these macros.

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// The path of the `cell-postgres` crate as the crate being compiled names it, and the resolver's
/// error when the manifest does not name it (then the path falls back to `::cell_postgres` and the
/// caller emits the error next to its best-effort expansion).
pub(crate) fn runtime_path() -> (TokenStream, Option<syn::Error>) {
    let resolved =
        cell_resolver::resolve_from_env(concat!("cell-postgres@", env!("CARGO_PKG_VERSION")));
    match resolved {
        // The name comes from a manifest: checked, not trusted (`Ident::new` would panic).
        Ok(r) => match syn::parse_str::<syn::Ident>(&r.extern_crate)
            .or_else(|_| syn::parse_str::<syn::Ident>(&format!("r#{}", r.extern_crate)))
        {
            Ok(ident) => (quote!(::#ident), None),
            Err(_) => (
                quote!(::cell_postgres),
                Some(syn::Error::new(
                    Span::call_site(),
                    format!(
                        "`{}` is not a valid crate name in Rust code",
                        r.extern_crate
                    ),
                )),
            ),
        },
        Err(e) => (
            quote!(::cell_postgres),
            Some(syn::Error::new(
                Span::call_site(),
                format!(
                    "{e}\n  note: `#[Postgres::table]` generates code that calls the `cell-postgres` crate"
                ),
            )),
        ),
    }
}
