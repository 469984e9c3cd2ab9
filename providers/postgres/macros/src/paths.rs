//! How expansions name the cell-postgres runtime crate.
//!
//! Every generated path goes through [`runtime_path`], which asks `cell-resolver` how the crate
//! being compiled names cell-postgres (a consumer may rename it): `::cell_postgres`, or `::pg` after
//! `pg = { package = "cell-postgres" }`. The spec is qualified with this macro crate's own
//! version (the two crates are released together), so a consumer that depends on two versions
//! gets the runtime matching these macros.

use proc_macro2::TokenStream;

/// The path of the `cell-postgres` crate as the crate being compiled names it, and the resolver's
/// error when the manifest does not name it (then the path falls back to `::cell_postgres` and the
/// caller emits the error next to its best-effort expansion).
pub(crate) fn runtime_path() -> (TokenStream, Option<syn::Error>) {
    cell_export::attr::runtime_path(
        concat!("cell-postgres@", env!("CARGO_PKG_VERSION")),
        "cell_postgres",
        "`#[Postgres::table]`",
    )
}
