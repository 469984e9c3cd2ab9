//! How expansions name the celldb runtime crate.
//!
//! Every generated path goes through [`celldb_path`], which asks `cell-resolver` how the crate
//! being compiled names celldb (hermetic builds, `docs/design.md`): `::celldb`, or `::store` after
//! `store = { package = "celldb" }`. The spec is qualified with this macro crate's own version
//! (celldb and celldb-macros are released together), so a consumer that depends on two versions
//! of celldb gets the runtime matching these macros.

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// The path of the `celldb` crate as the crate being compiled names it, and the resolver's
/// error when the manifest does not name it (then the path falls back to `::celldb` and the
/// caller emits the error next to its best-effort expansion).
pub(crate) fn celldb_path() -> (TokenStream, Option<syn::Error>) {
    let resolved = cell_resolver::resolve_from_env(concat!("celldb@", env!("CARGO_PKG_VERSION")));
    match resolved {
        // The name comes from a manifest: checked, not trusted (`Ident::new` would panic).
        Ok(r) => match syn::parse_str::<syn::Ident>(&r.extern_crate)
            .or_else(|_| syn::parse_str::<syn::Ident>(&format!("r#{}", r.extern_crate)))
        {
            Ok(ident) => (quote!(::#ident), None),
            Err(_) => (
                quote!(::celldb),
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
            quote!(::celldb),
            Some(syn::Error::new(
                Span::call_site(),
                format!(
                    "{e}\n  note: `#[DB::persist]` generates code that calls the `celldb` crate"
                ),
            )),
        ),
    }
}
