//! How expansions name the celldb runtime crate.
//!
//! Every generated path goes through [`celldb_path`], which asks `cell-resolver` how the crate
//! being compiled names celldb (hermetic builds, `docs/design.md`): `::celldb`, or `::store` after
//! `store = { package = "celldb" }`. The spec is qualified with this macro crate's own version
//! (celldb and celldb-macros are released together), so a consumer that depends on two versions
//! of celldb gets the runtime matching these macros.

use proc_macro2::TokenStream;

/// The path of the `celldb` crate as the crate being compiled names it, and the resolver's
/// error when the manifest does not name it (then the path falls back to `::celldb` and the
/// caller emits the error next to its best-effort expansion).
pub(crate) fn celldb_path() -> (TokenStream, Option<syn::Error>) {
    cell_export::attr::runtime_path(
        concat!("celldb@", env!("CARGO_PKG_VERSION")),
        "celldb",
        "`#[DB::persist]`",
    )
}
