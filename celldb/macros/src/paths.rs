//! How expansions name the celldb runtime crate.
//!
//! Every generated path goes through [`celldb_path`]. Today it is `::celldb`; when
//! `cell-resolver` lands it becomes `cell_resolver::resolve_from_env("celldb")`, so expansions
//! keep working when a consumer renames the dependency (DESIGN decision 1).

use proc_macro2::TokenStream;
use quote::quote;

/// The path of the `celldb` crate as the crate being compiled names it.
pub(crate) fn celldb_path() -> TokenStream {
    quote!(::celldb)
}
