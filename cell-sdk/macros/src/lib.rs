//! Procedural macros of `cell-sdk`. Use them through the `cell-sdk` facade, which re-exports
//! them with their documentation; this crate's paths are not a stable API.
//!
//! Every macro here follows two rules (see `ARCHITECTURE.md`):
//! - **Hermetic**: expansions depend only on the input tokens and the consumer's own manifest
//!   (through `cell-resolver`), never on side files, so rustc and rust-analyzer agree.
//! - **Best effort on bad input**: on an error the original item is emitted *with* a
//!   `compile_error!` at the offending token, so an editor never loses the whole item.

mod handler;
mod paths;
mod protein;
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
///   (DESIGN decision 8): `#[service] pub trait Ping { async fn ping(&self, n: u64) -> u64; }`
///   generates the typed client `PingClient` and the server adapter `PingServer<T: Ping>`; the
///   server crate writes a plain `impl Ping for MyPing` and runs
///   `PingServer(MyPing).serve().await`.
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
/// owned protein arguments, returning a protein or `Result<T, E>` with `E` a protein (the
/// application error the caller receives as `CallError::App(e)`).
///
/// It generates the service's dispatch, its structural fingerprint (method names, argument
/// and return fingerprints), `Users::connect()` (a typed `UsersClient`) and
/// `Users.serve()`. See [`macro@service`] for an example.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}
