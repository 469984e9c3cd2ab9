//! `cell-export`: the model of a provider's export declaration and its parser.
//!
//! A provider cell declares what it exports once, in its `lib.rs`:
//!
//! ```text
//! cell_sdk::export! {
//!     format = 1;
//!     cell = "celldb";
//!     macros = celldb_macros;
//!     attribute persist {
//!         helpers = [key, index];
//!         args { table: str?, replicate: "local" | "raft" = "local" }
//!     }
//!     function query {}
//!     derive Table {}
//!     api = [insert, get, Db, Error];
//! }
//! ```
//!
//! This crate turns that text into an [`ExportDecl`] — format version, cell name, macro crate,
//! each [`MacroExport`] with its [`MacroKind`], helpers and argument schema ([`ArgSpec`],
//! [`ValueKind`]), and the runtime `api` items. Two users share it:
//!
//! - the `cell_sdk::export!` macro ([`parse_tokens`], spans are `proc_macro2::Span` so errors
//!   point at the provider's tokens);
//! - the macro index and cell-lsp ([`parse_file`], spans are [`Location`]s: line/column data
//!   that is `Send` and can be stored in a snapshot).
//!
//! It also holds the one parser of `cell_remote!`'s input ([`parse_remote`]), shared by the
//! macro and the index so both report CELL0003 with the same words at the same token.
//!
//! **Key design decision:** the model is generic over its span type and parsing never fails
//! as a whole: [`Parsed`] carries what was understood *and* every [`ParseError`] (each with a
//! stable [`cell_resolver::ProblemCode`]), entry by entry, so a half-typed declaration in an
//! editor still yields its complete entries.
//!
//! **What it is not:** it does not check that the declared macros exist (rustc does, through
//! the module `export!` expands to), does not read manifests or discover providers (that is
//! the macro index), and never compiles or runs provider code.
//!
//! # Example
//! ```
//! use cell_export::{MacroKind, ValueKind, parse_file};
//!
//! let file = parse_file(r#"
//!     cell_sdk::export! {
//!         format = 1;
//!         cell = "validate";
//!         macros = validate_macros;
//!         attribute schema { helpers = [email, range(_: expr)]; }
//!         api = [Validate, ValidationError];
//!     }
//! "#);
//! let parsed = &file.decls[0];
//! assert!(parsed.errors.is_empty());
//! let schema = parsed.decl.macro_named("schema").unwrap();
//! assert_eq!(schema.kind, MacroKind::Attribute);
//! assert_eq!(schema.helpers[1].name.value, "range");
//! assert_eq!(schema.helper("range").unwrap().args[0].kind, ValueKind::Expr);
//! assert_eq!(parsed.decl.cell.as_ref().unwrap().span.start.line, 4);
//! assert_eq!(file.decls[0].decl.api[1].value, "ValidationError");
//! ```

pub mod args;
pub mod attr;
mod model;
mod parse;
mod remote;

pub use model::{
    ArgSpec, ExportDecl, HelperSpec, LineColumn, Literal, Location, MacroExport, MacroKind,
    SUPPORTED_FORMAT, Spanned, ValueKind,
};
pub use parse::{FileExports, ParseError, Parsed, parse_file, parse_file_as, parse_tokens};
pub use remote::{REMOTE_SYNTAX, RemoteInput, parse_remote};

/// CELL0010's words (without the code) for a declaration that is not at the crate root; shared
/// by `export!`'s compile-time check and the index, so both say the same.
pub const NOT_AT_CRATE_ROOT: &str = "`export!` must be invoked at the crate root (in lib.rs), \
     where consumers' `cell_remote!` looks for it";

/// CELL0010's words (without the code) for `cell = "…"` that is not the package's name; shared
/// by `export!` and the index.
///
/// ```
/// assert_eq!(
///     cell_export::cell_name_mismatch("db", "celldb"),
///     "`cell = \"db\"` must be this package's name: write `cell = \"celldb\";`"
/// );
/// ```
pub fn cell_name_mismatch(cell: &str, package: &str) -> String {
    format!("`cell = \"{cell}\"` must be this package's name: write `cell = \"{package}\";`")
}

/// The name of the hidden module `export!` expands to and `cell_remote!` re-exports from.
pub const EXPORTS_MODULE: &str = "__cell_exports";

/// The name of the format constant inside [`EXPORTS_MODULE`].
pub const FORMAT_CONST: &str = "__CELL_EXPORT_FORMAT";

/// Builtin attribute names an exported macro should not take (problem CELL0006 when imported
/// by name or glob): rustc's builtin attributes and the standard derive-helper-like names.
pub const BUILTIN_ATTRIBUTES: &[&str] = &[
    "allow",
    "automatically_derived",
    "cfg",
    "cfg_attr",
    "cold",
    "deny",
    "deprecated",
    "derive",
    "doc",
    "expect",
    "export_name",
    "forbid",
    "global_allocator",
    "ignore",
    "inline",
    "link",
    "link_name",
    "link_section",
    "macro_export",
    "macro_use",
    "must_use",
    "no_mangle",
    "non_exhaustive",
    "panic_handler",
    "path",
    "proc_macro",
    "proc_macro_attribute",
    "proc_macro_derive",
    "repr",
    "should_panic",
    "target_feature",
    "test",
    "track_caller",
    "unsafe",
    "used",
    "warn",
];

/// The macros `cell-sdk` itself exports; a provider macro with one of these names shadows it
/// when imported by name or glob (problem CELL0006).
pub const CELL_SDK_MACROS: &[&str] = &["protein", "service", "handler", "cell_remote", "export"];

#[cfg(test)]
mod tests;
