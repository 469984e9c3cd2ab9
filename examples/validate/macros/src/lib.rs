//! Procedural macros of the `validate` provider cell. Use them through an alias:
//! `cell_sdk::cell_remote!(Val = "validate");` then `#[Val::schema]`.
//!
//! `#[schema]` consumes the field helpers `#[Val::email]`, `#[Val::non_empty]`,
//! `#[Val::range(..)]`, `#[Val::length(min = .., max = ..)]` and `#[Val::custom(f)]` and
//! generates `validate()`. The generated code calls the runtime crate `validate` through the
//! name `cell-resolver` finds in the consumer's manifest, so renaming the dependency works.
//!
//! It follows Cell's macro rules: hermetic (only the input tokens and the consumer's manifest),
//! and best effort on bad input (the struct, helpers stripped, plus an `impl` for what parsed,
//! plus a `compile_error!` at each offending token). Arguments and helpers are read against
//! `validate`'s export declaration with `cell_export::attr`, so their mistakes read as cell-lsp
//! shows them.
//!
//! # Example
//! ```
//! cell_sdk::cell_remote!(Val = "validate");
//!
//! #[Val::schema]
//! struct Nick {
//!     #[Val::length(min = 2, max = 16)]
//!     nick: String,
//! }
//! assert!(Nick { nick: "a".into() }.validate().is_err());
//! ```

mod export_decl;
mod schema;

use proc_macro::TokenStream;

/// Generates `validate(&self) -> Result<(), Vec<ValidationError>>` from the helper attributes
/// on the struct's fields, as an inherent method and as `impl Validate`.
///
/// Helpers (written under the same alias as `schema`):
/// - `#[Val::email]` — a string that looks like an email address;
/// - `#[Val::non_empty]` — a string or collection with at least one char/item;
/// - `#[Val::range(1..=100)]` — a value inside any range expression;
/// - `#[Val::length(min = 1, max = 64)]` — chars of a string or items of a collection;
/// - `#[Val::custom(path::to_fn)]` — a `fn(&T) -> Result<(), String>`.
///
/// On an `Option<T>` field the helpers check the value when it is `Some`. Every failed rule is
/// reported, in field order. A helper written under another provider's alias is an error at
/// that helper (problem CELL0011).
#[proc_macro_attribute]
pub fn schema(args: TokenStream, item: TokenStream) -> TokenStream {
    // The attribute as written (`#[Val::schema]`) tells us our alias. rust-analyzer may not
    // provide source text; then helpers are recognised by name alone.
    let invocation = proc_macro::Span::call_site().source_text();
    schema::expand(args.into(), item.into(), invocation.as_deref()).into()
}
