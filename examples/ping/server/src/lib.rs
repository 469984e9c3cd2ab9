//! `ping-server`: the ping cell's implementation of `ping_api::Ping`. The binary serves it;
//! the library lets `ping-demo` run it in-process. Callers never depend on this crate.
//!
//! ```
//! use ping_api::Ping;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! assert_eq!(ping_server::PingCell::default().ping(1).await, 2);
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use cell_sdk::Streaming;
use ping_api::{EchoError, Message, Ping};

/// Longest text `echo` accepts.
pub const MAX_TEXT: u32 = 1024;

/// The ping cell: counts the calls it answers.
#[derive(Debug, Default)]
pub struct PingCell {
    served: AtomicU64,
}

impl Ping for PingCell {
    async fn ping(&self, n: u64) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed);
        n.wrapping_add(1)
    }

    async fn echo(&self, message: Message) -> Result<Message, EchoError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        if message.text.is_empty() {
            return Err(EchoError::Empty);
        }
        if message.text.len() > MAX_TEXT as usize {
            return Err(EchoError::TooLong(MAX_TEXT));
        }
        Ok(Message {
            seq: message.seq,
            text: message.text.to_uppercase(),
        })
    }

    async fn served(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }

    async fn countdown(&self, from: u64) -> Streaming<u64> {
        self.served.fetch_add(1, Ordering::Relaxed);
        // Items are produced only as the client's credit allows (backpressure).
        Streaming::iter((0..=from).rev())
    }
}
