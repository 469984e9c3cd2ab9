//! Procedural macros of `cell-sdk`. Use them through the `cell-sdk` facade, which re-exports
//! them with their documentation; this crate's paths are not a stable API.
//!
//! Every macro here follows two rules (see `ARCHITECTURE.md`):
//! - **Hermetic**: expansions depend only on the input tokens and the consumer's own manifest
//!   (through `cell-resolver`), never on side files, so rustc and rust-analyzer agree.
//! - **Best effort on bad input**: on an error the original item is emitted *with* a
//!   `compile_error!` at the offending token, so an editor never loses the whole item.

mod paths;
mod protein;

use proc_macro::TokenStream;

/// Makes a struct or enum a *protein*: a type that can cross a process or disk boundary.
///
/// It derives rkyv's `Archive`, `Serialize` and `Deserialize` (archives are validated with
/// bytecheck before every use), adds `Debug`, `Clone` and `PartialEq` unless you derive them
/// yourself, and implements `cell_sdk::Fingerprint`: a compile-time structural hash of field
/// names and types, nested types included, so a changed type is an error at a handshake or when
/// a table is opened — never a misread.
///
/// ```
/// use cell_sdk::protein;
///
/// #[protein]
/// pub struct User {
///     pub id: u64,
///     pub email: String,
/// }
///
/// let bytes = cell_sdk::codec::to_bytes(&User { id: 1, email: "a@b.c".into() }).unwrap();
/// let user: User = cell_sdk::codec::from_bytes(&bytes).unwrap();
/// assert_eq!(user.id, 1);
/// ```
///
/// Not supported (a compile error at the offending token): unions, borrowed fields (`&str`,
/// lifetimes), raw pointers, and recursive types.
#[proc_macro_attribute]
pub fn protein(args: TokenStream, item: TokenStream) -> TokenStream {
    protein::expand(args.into(), item.into()).into()
}
