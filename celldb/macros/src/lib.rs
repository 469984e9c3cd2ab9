//! Procedural macros of `celldb`: `#[persist]` and its field helpers `key`, `index`, `unique`.
//!
//! Use them through the alias a consumer picks (`cell_remote!(DB = "celldb")` →
//! `#[DB::persist]`); this crate's paths are not a stable API. Docs live on these functions
//! because rust-analyzer shows docs of the macro definition, not of a re-export.
//!
//! Design: `persist` consumes the helper attributes on fields, recognising them by their *last
//! path segment* under any alias (`#[DB::key]`, `#[db::key]`, `#[key]`). An attribute macro
//! cannot see the path it was invoked through, so it cannot know which alias is "its own";
//! what it can know — helpers on one struct written under *different* aliases — is an error at
//! the odd helper. Expansions are hermetic and best-effort: on bad input the item is emitted
//! with its helpers stripped, plus `compile_error!` at the user's token. Arguments and helper
//! arguments are read against celldb's export declaration with `cell_export::attr` (from the
//! copy in `export_decl.rs`), so their mistakes read as cell-lsp shows them.
//!
//! # Example
//! ```
//! use cell_sdk::protein;
//! cell_sdk::cell_remote!(DB = "celldb");
//!
//! #[protein]
//! #[DB::persist(table = "notes")]
//! pub struct Note {
//!     #[DB::key] #[DB::auto_inc] id: u64,
//!     #[DB::index] author: String,
//! }
//! # use celldb::Table;
//! assert_eq!(Note::TABLE, "notes");
//! ```

mod export_decl;
mod paths;
mod persist;

use proc_macro::TokenStream;

/// Makes a `#[protein]` struct a celldb table.
///
/// ```
/// use cell_sdk::protein;
/// # cell_sdk::cell_remote!(DB = "celldb");
///
/// #[protein]
/// #[DB::persist(table = "users", durability = "sync")]
/// pub struct User {
///     #[DB::key]    id: u64,
///     #[DB::unique] email: String,
///     #[DB::index]  city: String,
///     name: String,
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> celldb::Result<()> {
/// # let db = celldb::Db::temp()?;
/// # db.scope(async {
/// let ada = User { id: 1, email: "ada@x".into(), city: "Oslo".into(), name: "Ada".into() };
/// ada.save().await?;
/// assert_eq!(User::by_city("Oslo").await?.len(), 1);
/// assert!(User::by_email("ada@x").await?.is_some());
/// assert_eq!(User::scan(..).await?.len(), 1);
/// assert!(User::delete(1).await?);
/// # Ok(()) }).await }
/// ```
///
/// Arguments (all optional): `table = "name"` (default: the type name in snake case),
/// `durability = "sync" | "buffered"` (default `"sync"`: acknowledged = fsynced),
/// `prev = OldType` (records written by `OldType` are upgraded with `From<OldType>` on open).
///
/// Field helpers: `#[DB::key]` (exactly one; without it a field named `id` is the key),
/// `#[DB::index]` (non-unique), `#[DB::unique]`, and `#[DB::auto_inc]` on a `u64` key: a record
/// inserted with key `0` gets the next id from a counter committed in the same write-set
/// (crash-safe: a committed id is never handed out again). Keys and indexed fields must implement
/// `celldb::Key` (integers, `bool`, `char`, `String`, `Vec<u8>`, `Option` and tuples of them).
///
/// Generates `Type::get(key)`, `Type::by_<field>(value)` (unique: `Option`, index: `Vec`),
/// `Type::scan(range)`, `value.insert()`, `value.save()`, `Type::delete(key)`,
/// `Type::count()`, all on the current database, and implements `celldb::Table`.
#[proc_macro_attribute]
pub fn persist(args: TokenStream, item: TokenStream) -> TokenStream {
    // The attribute as written (`#[DB::persist(…)]`) gives the alias messages name; rust-analyzer
    // may not provide source text, and then messages name the bare `#[persist]`.
    let invocation = proc_macro::Span::call_site().source_text();
    persist::expand(args.into(), item.into(), invocation.as_deref()).into()
}

/// Marks the primary key field of a `#[DB::persist]` struct. Only valid inside `#[DB::persist]`,
/// which consumes it.
#[proc_macro_attribute]
pub fn key(args: TokenStream, item: TokenStream) -> TokenStream {
    persist::helper_alone("key", args.into(), item.into()).into()
}

/// Marks the `u64` key of a `#[DB::persist]` struct as auto-incremented: a record inserted
/// with key `0` gets the next id, from a counter committed atomically with the record.
/// Only valid inside `#[DB::persist]`.
#[proc_macro_attribute]
pub fn auto_inc(args: TokenStream, item: TokenStream) -> TokenStream {
    persist::helper_alone("auto_inc", args.into(), item.into()).into()
}

/// Marks a field of a `#[DB::persist]` struct as indexed (non-unique): generates
/// `Type::by_<field>(value) -> Vec<Type>`. Only valid inside `#[DB::persist]`.
#[proc_macro_attribute]
pub fn index(args: TokenStream, item: TokenStream) -> TokenStream {
    persist::helper_alone("index", args.into(), item.into()).into()
}

/// Marks a field of a `#[DB::persist]` struct as unique: no two records share its value, and
/// `Type::by_<field>(value) -> Option<Type>`. Only valid inside `#[DB::persist]`.
#[proc_macro_attribute]
pub fn unique(args: TokenStream, item: TokenStream) -> TokenStream {
    persist::helper_alone("unique", args.into(), item.into()).into()
}
