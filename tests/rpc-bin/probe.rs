//! The `probe` protocol: a service made for testing the runtime from the outside (echo,
//! arithmetic, sleeping, panicking, holding a call until it is cancelled, reporting the call
//! context its handler saw and the connections it saw close). Included with
//! `#[path]` by the test server binary and by `integration/rpc.rs`, so both compile the same
//! declaration and share its fingerprint.

#![allow(
    unreachable_pub,
    reason = "`pub` so the generated client and server types are usable from the including module"
)]

use cell_sdk::{Streaming, protein, service};

/// The application error of `check`.
#[protein]
pub enum ProbeError {
    /// The argument was negative.
    Negative(i64),
    /// Something the handler tried failed (`relay`).
    Failed(String),
}

/// What a `context` handler saw of its call (`CallContext`), in plain values.
#[protein]
pub struct SeenContext {
    /// The connection's id.
    pub connection: u64,
    /// `"unix"` or `"tcp"`.
    pub transport: String,
    /// Unix: the peer's uid.
    pub uid: Option<u32>,
    /// Unix: the peer's pid.
    pub pid: Option<i32>,
    /// TCP: the peer's address.
    pub addr: Option<String>,
    /// TCP: the peer authenticated with the shared secret.
    pub authenticated: bool,
    /// The request id of the call.
    pub request_id: u32,
    /// The method's name.
    pub method: String,
    /// Milliseconds left until the call's deadline, if it has one.
    pub deadline_left_ms: Option<u64>,
    /// The request's metadata.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The caller's trace context (`traceparent`), as the handler read it.
    pub traceparent: Option<String>,
    /// This call's span id in that trace (hex).
    pub span_id: Option<String>,
}

/// What `relay` saw: its own context, and the context of the call it made to the next hop.
#[protein]
pub struct Relayed {
    /// The relaying handler's context.
    pub here: SeenContext,
    /// The next hop's handler's context.
    pub there: SeenContext,
}

/// What the probe server can do.
#[service]
pub trait Probe {
    /// Returns `text`.
    async fn echo(&self, text: String) -> String;
    /// Returns `a + b`.
    async fn add(&self, a: u64, b: u64) -> u64;
    /// Sleeps `ms` milliseconds, then returns `ms`.
    async fn sleep(&self, ms: u64) -> u64;
    /// Panics with `message`.
    async fn panic(&self, message: String) -> u64;
    /// `Ok(n)` for `n >= 0`, else the application error.
    async fn check(&self, n: i64) -> Result<u64, ProbeError>;
    /// The server's process id.
    async fn pid(&self) -> u32;
    /// Never returns by itself; only cancellation ends it.
    async fn hold(&self) -> u64;
    /// How many `hold` calls are running right now.
    async fn holding(&self) -> u64;
    /// How many `sleep` calls are running right now.
    async fn sleeping(&self) -> u64;
    /// What the handler saw of this call; also asks to be told when this connection closes.
    async fn context(&self) -> SeenContext;
    /// Ids of the connections seen closing (by `Connection::on_close`, registered by
    /// `context`), in the order they closed.
    async fn closed(&self) -> Vec<u64>;
    /// Calls `context` on the probe server at the Unix socket `socket` while serving this
    /// call (so the trace context continues there) and returns both contexts.
    async fn relay(&self, socket: String) -> Result<Relayed, ProbeError>;
    /// A stream of `0..n`, then a clean end.
    async fn count(&self, n: u64) -> Streaming<u64>;
    /// A stream of `0..fail_at`, then the application error `Negative(fail_at)`.
    async fn count_then_fail(&self, fail_at: u64) -> Streaming<u64, ProbeError>;
    /// An endless stream of `size`-byte items from a producer task, which counts what it
    /// produced (`produced`) and stops once the client is gone (`producers`).
    async fn produce(&self, size: u32) -> Streaming<Vec<u8>>;
    /// Items produced by `produce` streams so far.
    async fn produced(&self) -> u64;
    /// `produce` producer tasks still running.
    async fn producers(&self) -> u64;
    /// Returns `text` and sets the reply's metadata `x-stamp` to it (an empty `text` sets
    /// none).
    async fn stamp(&self, text: String) -> String;
}
