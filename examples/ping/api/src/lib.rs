//! `ping-api`: the protocol of the ping cell — its messages and method signatures — and the
//! typed client generated from them.
//!
//! This is the *api-crate pattern* (`docs/rpc.md`): a caller depends on `ping-api` only,
//! so it never compiles the server (`ping-server`) or the server's dependencies. The server
//! crate implements the trait; both sides share one fingerprint because both compile this
//! one declaration.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let ping = ping_api::PingClient::connect().await?; // $CELL_SOCKET_DIR/ping.sock
//! assert_eq!(ping.ping(41).await?, 42);
//! # Ok(()) }
//! ```

use cell_sdk::{Streaming, protein, service};

/// A message the ping cell echoes back.
#[protein]
pub struct Message {
    /// Sequence number chosen by the caller.
    pub seq: u64,
    /// Free text.
    pub text: String,
}

/// Why the ping cell refused to echo.
#[protein]
pub enum EchoError {
    /// The text was empty.
    Empty,
    /// The text was longer than the limit (in bytes) it carries.
    TooLong(u32),
}

/// The ping cell's protocol.
#[service]
pub trait Ping {
    /// Returns `n + 1`.
    async fn ping(&self, n: u64) -> u64;
    /// Returns the message with its text upper-cased, or an application error.
    async fn echo(&self, message: Message) -> Result<Message, EchoError>;
    /// How many calls this server has answered.
    async fn served(&self) -> u64;
    /// A server-to-client stream: `from`, `from - 1`, …, `0`. The client receives a
    /// `CallStream<u64>` (a `futures::Stream`); dropping it stops the countdown.
    async fn countdown(&self, from: u64) -> Streaming<u64>;
}
