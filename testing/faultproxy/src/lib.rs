//! `cell-faultproxy`: a TCP fault-injection proxy for tests of distributed systems.
//!
//! Cluster tests run real processes on loopback. To partition them, each node dials its peers
//! through a proxy instead of directly; the proxy forwards bytes, or holds them, or breaks
//! connections, as the test says — at runtime, also on connections already open.
//!
//! Principal types:
//! - [`Link`]: one *directed* link, a listener on loopback forwarding every connection it
//!   accepts to one target. Its [`Fault`] ([`Fault::Pass`], [`Fault::Blackhole`],
//!   [`Fault::Reset`]), delay and loss probability change at any time; [`LinkStats`] counts
//!   connections and bytes.
//! - [`Mesh`]: one link per ordered pair of nodes, with the operations partition tests
//!   want: [`Mesh::cut`] (one direction), [`Mesh::isolate`], [`Mesh::partition`],
//!   [`Mesh::heal`], and delay and loss for every link.
//!
//! Key design decision: **faults are decided per connection, from one watched setting per
//! link.** A blackhole stops reading (the bytes wait in the kernel's buffers, the sender sees
//! a live, silent connection, as in a partition where packets vanish) and stops writing what
//! was already read. When the link heals, connections that lived through the blackhole are
//! closed (with a TCP reset) instead of resuming: a partition longer than TCP's retransmission
//! timeout loses those connections, and the peers reconnect through the healed link. Loss
//! closes a connection too: a stream cannot lose bytes in the middle, and to a stream
//! protocol a lost packet that is never retransmitted is a broken connection. Loss decisions
//! come from a seeded generator per connection direction ([`LinkBuilder::seed`]), so a run
//! with the same traffic makes the same decisions.
//!
//! What it is not: a packet-level simulator (no reordering or duplication: TCP hides those),
//! and not for production traffic. A [`Link`] serves on the tokio runtime it was started in;
//! dropping it stops it and closes its connections.
//!
//! # Example
//! ```
//! use cell_faultproxy::{Fault, Link};
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::{TcpListener, TcpStream};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! // An echo server, and a link in front of it.
//! let server = TcpListener::bind("127.0.0.1:0").await?;
//! let target = server.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut conn, _)) = server.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = conn.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//! let link = Link::start(target).await?;
//!
//! let mut conn = TcpStream::connect(link.addr()).await?;
//! conn.write_all(b"ping").await?;
//! let mut buf = [0; 4];
//! conn.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//!
//! // Partitioned: the connection stays open, and nothing comes back.
//! link.set_fault(Fault::Blackhole);
//! conn.write_all(b"lost").await?;
//! let read = tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await;
//! assert!(read.is_err(), "no reply through a blackhole");
//!
//! // Healed: that connection is closed, a new one works.
//! link.set_fault(Fault::Pass);
//! assert!(matches!(conn.read(&mut buf).await, Ok(0) | Err(_)));
//! let mut conn = TcpStream::connect(link.addr()).await?;
//! conn.write_all(b"pong").await?;
//! conn.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"pong");
//! assert_eq!(link.stats().connections, 2);
//! # Ok(()) }
//! ```

mod link;
mod mesh;

pub use link::{Fault, Link, LinkBuilder, LinkStats};
pub use mesh::Mesh;
