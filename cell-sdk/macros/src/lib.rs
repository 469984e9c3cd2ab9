//! Procedural macros of `cell-sdk`. Use them through the `cell-sdk` facade, which re-exports
//! them with their documentation; this crate's paths are not a stable API.
//!
//! Every macro here follows two rules (see `ARCHITECTURE.md`):
//! - **Hermetic**: expansions depend only on the input tokens and the consumer's own manifest
//!   (through `cell-resolver`), never on side files, so rustc and rust-analyzer agree.
//! - **Best effort on bad input**: on an error the original item is emitted *with* a
//!   `compile_error!` at the offending token, so an editor never loses the whole item.
//!
//! # Example
//! ```
//! use cell_sdk::{cell_remote, protein};
//! cell_remote!(Val = "validate"); // a provider's macros under an alias
//!
//! #[protein] // a validated, fingerprinted rkyv archive
//! #[Val::schema]
//! pub struct Signup {
//!     #[Val::email]
//!     pub email: String,
//! }
//! let bytes = cell_sdk::codec::to_bytes(&Signup { email: "ada@x.org".into() }).unwrap();
//! let back: Signup = cell_sdk::codec::from_bytes(&bytes).unwrap();
//! assert!(back.validate().is_ok());
//! ```

mod export;
mod handler;
mod paths;
mod protein;
mod remote;
mod service;

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

/// Declares a service (a cell others call over RPC).
///
/// Two forms:
///
/// - On a struct, with its handlers in a `#[handler] impl` of the same crate:
///   `#[service] pub struct Users;`. The service's name — and its socket,
///   `$CELL_SOCKET_DIR/users.sock` — is the struct's name in kebab case, or
///   `#[service(name = "...")]`.
/// - On a trait, in an *api crate* that callers depend on without compiling the server
///   (`docs/rpc.md`, the api-crate pattern):
///   `#[service] pub trait Ping { async fn ping(&self, n: u64) -> u64; }` generates the typed
///   client `PingClient` and the server adapter `PingServer<T: Ping>`; the server crate writes
///   a plain `impl Ping for MyPing` and runs `PingServer(MyPing).serve().await`.
///
/// `#[service(strict)]` (either form) serves a request only when its payload is exactly the
/// archive of the method's arguments (`docs/rpc.md`, "Exact payloads").
///
/// ```
/// use cell_sdk::{protein, service, handler, CallError};
///
/// #[protein]
/// pub struct Greeting { pub to: String }
///
/// #[protein]
/// pub enum GreetError { Empty }
///
/// #[service]
/// pub struct Greeter;
///
/// #[handler]
/// impl Greeter {
///     async fn greet(&self, g: Greeting) -> Result<String, GreetError> {
///         if g.to.is_empty() { Err(GreetError::Empty) } else { Ok(format!("hello {}", g.to)) }
///     }
///     async fn count(&self) -> u64 { 1 }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (cell, client) = cell_sdk::testkit::start(Greeter).await.unwrap();
/// assert_eq!(client.greet(Greeting { to: "ann".into() }).await.unwrap(), "hello ann");
/// assert!(matches!(
///     client.greet(Greeting { to: "".into() }).await,
///     Err(CallError::App(GreetError::Empty))
/// ));
/// assert_eq!(client.count().await.unwrap(), 1);
/// cell.stop().await.unwrap();
/// # });
/// ```
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    service::expand(args.into(), item.into()).into()
}

/// The handlers of a `#[service]` struct: an inherent `impl` of `async fn`s taking `&self` and
/// protein arguments — owned, or any of them borrowed as `&Archived<T>` (read in place) —
/// returning a protein, `Result<T, E>` with `E` a protein (the application error the caller
/// receives as `CallError::App(e)`), or a server-to-client stream `Streaming<T>` /
/// `Streaming<T, E>` (the client's method returns a `CallStream`).
///
/// It generates the service's dispatch, its structural fingerprint (method names, argument
/// and return fingerprints), `Users::connect()` (a typed `UsersClient`) and
/// `Users.serve()`. See [`macro@service`] for an example.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}

/// Declares what a provider cell exports: its macros (with their helper attributes and
/// argument schemas) and its runtime API. Write it once, in the provider's `lib.rs`.
///
/// ```text
/// cell_sdk::export! {
///     format = 1;                      // the declaration format (this cell-sdk reads 1)
///     cell = "validate";               // must equal the package name
///     macros = validate_macros;        // the provider's proc-macro crate, as it names it
///     attribute schema {
///         helpers = [email, range(_: expr), length(min: int?, max: int?)];
///     }
///     api = [Validate, ValidationError];
/// }
/// ```
///
/// It expands to a hidden module `__cell_exports` that re-exports every declared macro from
/// the macro crate and every `api` item from the crate root, so rustc checks each name: a
/// declared item that does not exist is an unresolved import at its name in the declaration
/// (problem CELL0007). A malformed declaration is reported at the offending token with
/// CELL0010, an unknown format with CELL0013; whatever parsed is still exported.
///
/// Tools (the macro index, cell-lsp) read the same declaration with the `cell-export` parser,
/// without compiling the provider. Docs for editors come from the `///` comments on the
/// `#[proc_macro*]` functions. The complete guide is `docs/writing-a-provider.md`.
#[proc_macro]
pub fn export(input: TokenStream) -> TokenStream {
    export::expand(input.into()).into()
}

/// Brings a provider cell's exported macros and API into scope under an alias:
/// `cell_remote!(Alias = "cell")` or, when the crate depends on two versions of the cell,
/// `cell_remote!(Alias = "cell@0.4")`.
///
/// ```
/// use cell_sdk::cell_remote;
///
/// cell_remote!(Val = "validate");
///
/// #[Val::schema]
/// struct Signup {
///     #[Val::email]
///     email: String,
///     #[Val::range(13..=130)]
///     age: u8,
/// }
///
/// let ok = Signup { email: "ada@example.com".into(), age: 36 };
/// assert!(ok.validate().is_ok());
/// let bad = Signup { email: "ada".into(), age: 7 };
/// assert_eq!(bad.validate().unwrap_err().len(), 2);
/// ```
///
/// The cell name is the provider's *package* name. It is resolved against this crate's own
/// `Cargo.toml` (and its workspace root's, for `workspace = true` entries) — never by running
/// cargo — so renamed dependencies (`v = { package = "validate" }`) work, and the expansion is
/// an ordinary module:
///
/// ```text
/// pub mod Val { pub use ::validate::__cell_exports::*; }
/// ```
///
/// `#[Val::schema]` then resolves by plain Rust name resolution, in rustc and rust-analyzer.
///
/// Errors, at the string literal, with their problem codes (see `docs/problems.md`):
/// unknown cell (CELL0001, with "did you mean", or else this crate's direct dependencies),
/// ambiguous version (CELL0002, listing the qualified names to pick from), malformed input
/// (CELL0003), a dependency that is not a provider (CELL0009; rustc's E0432 on
/// `__cell_exports` at the same place is the same problem).
#[proc_macro]
pub fn cell_remote(input: TokenStream) -> TokenStream {
    remote::expand(input.into()).into()
}
