//! One directed link: a listener that forwards each connection to a target, under faults.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a [`Link`] does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything (after the link's delay, subject to its loss).
    #[default]
    Pass,
    /// Forward nothing, in either direction, on existing and new connections alike: they stay
    /// open and silent. When the link leaves this state, every connection that lived through
    /// it is closed; new connections pass.
    Blackhole,
    /// Close every connection (with a TCP reset), and close new ones as soon as they are
    /// accepted.
    Reset,
}

/// Counters of a [`Link`], since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Connections accepted (refused ones included).
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections the link closed because of a fault: a reset, the end of a blackhole, loss.
    pub closed_by_fault: u64,
    /// Bytes forwarded from the dialer to the target.
    pub bytes_to_target: u64,
    /// Bytes forwarded from the target back to the dialer.
    pub bytes_from_target: u64,
}

/// One directed link: connections accepted at [`Link::addr`] are forwarded to the target.
///
/// Faults apply to both directions of the connections *made through this link*; the reverse
/// link (the target's node dialing back) is a different [`Link`]. Dropping a link closes its
/// listener and all its connections.
///
/// # Examples
/// See the [crate documentation](crate).
pub struct Link {
    addr: SocketAddr,
    target: SocketAddr,
    settings: watch::Sender<Settings>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

/// Options for a [`Link`]: where it listens and the seed of its loss decisions.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let target = "127.0.0.1:7001".parse().unwrap();
/// let link = cell_faultproxy::Link::builder(target).seed(42).start().await?;
/// assert!(link.addr().ip().is_loopback());
/// assert_eq!(link.target(), target);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LinkBuilder {
    target: SocketAddr,
    listen: SocketAddr,
    seed: u64,
}

impl Link {
    /// Starts a link to `target`, listening on a free port of 127.0.0.1, with seed 0. Must be
    /// called within a tokio runtime, which then runs the link.
    ///
    /// The target need not be listening yet: it is dialed for each accepted connection (and
    /// a refused dial closes that connection).
    ///
    /// # Errors
    /// If the listener cannot be bound.
    pub async fn start(target: SocketAddr) -> io::Result<Link> {
        Link::builder(target).start().await
    }

    /// Options for a link to `target`: see [`LinkBuilder`].
    pub fn builder(target: SocketAddr) -> LinkBuilder {
        LinkBuilder {
            target,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            seed: 0,
        }
    }

    /// The address to dial to reach the target through this link.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where this link forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the fault; it takes effect at once, on open connections too.
    pub fn set_fault(&self, fault: Fault) {
        self.settings.send_modify(|s| {
            if fault != Fault::Pass {
                // Connections open now must not resume after this fault ends.
                s.breaks += 1;
            }
            s.fault = fault;
        });
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.settings.borrow().fault
    }

    /// Delays each chunk of bytes by `delay` (from when the link read it), in both directions.
    /// Order is kept; throughput is not limited by the delay.
    pub fn set_delay(&self, delay: Duration) {
        self.settings.send_modify(|s| s.delay = delay);
    }

    /// The current delay.
    pub fn delay(&self) -> Duration {
        self.settings.borrow().delay
    }

    /// Sets the probability (clamped to 0..=1; NaN is 0) that a chunk of bytes read by the
    /// link, instead of being forwarded, closes its connection (with a TCP reset).
    pub fn set_loss(&self, probability: f64) {
        let p = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        self.settings.send_modify(|s| s.loss = p);
    }

    /// The current loss probability.
    pub fn loss(&self) -> f64 {
        self.settings.borrow().loss
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            connections: c.connections.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            closed_by_fault: c.closed_by_fault.load(Ordering::Relaxed),
            bytes_to_target: c.bytes_to_target.load(Ordering::Relaxed),
            bytes_from_target: c.bytes_from_target.load(Ordering::Relaxed),
        }
    }
}

impl LinkBuilder {
    /// Listens on `addr` instead of a free port of 127.0.0.1.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Seeds the loss decisions (default 0). Connection `k`'s two directions each get a
    /// generator derived from the seed and `k`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts the link within the current tokio runtime.
    ///
    /// # Errors
    /// If the listener cannot be bound.
    pub async fn start(self) -> io::Result<Link> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let (settings, watched) = watch::channel(Settings::default());
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            self.target,
            watched,
            Arc::clone(&counters),
            self.seed,
        ));
        tracing::debug!(%addr, target = %self.target, "link started");
        Ok(Link {
            addr,
            target: self.target,
            settings,
            counters,
            accept,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Dropping `settings` ends every connection task (their watch closes); this ends the
        // listener now rather than at its next wake-up.
        self.accept.abort();
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = *self.settings.borrow();
        f.debug_struct("Link")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("fault", &s.fault)
            .field("delay", &s.delay)
            .field("loss", &s.loss)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A link's settings, watched by every connection task.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    fault: Fault,
    delay: Duration,
    loss: f64,
    /// How many times a fault other than `Pass` was set: a connection that saw this change
    /// since it was accepted lived through a fault and is closed when the link passes again.
    breaks: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    open: AtomicU64,
    closed_by_fault: AtomicU64,
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
}

/// What one connection saw when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Birth {
    breaks: u64,
    held: bool,
}

impl Birth {
    /// Whether the connection must be closed now.
    fn must_close(self, s: &Settings) -> bool {
        match s.fault {
            Fault::Reset => true,
            Fault::Blackhole => false,
            Fault::Pass => self.held || s.breaks != self.breaks,
        }
    }
}

/// Why a connection ended early.
#[derive(Debug)]
enum Stop {
    /// A reset, or the end of a blackhole it lived through.
    Fault,
    /// The loss setting picked one of its chunks.
    Loss,
    /// The link was dropped.
    Shutdown,
    /// A socket error (or the target refused the dial).
    Io(io::Error),
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mut settings: watch::Receiver<Settings>,
    counters: Arc<Counters>,
    seed: u64,
) {
    let mut index: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, peer)) => {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let seed = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    index += 1;
                    tokio::spawn(connection(
                        conn,
                        peer,
                        target,
                        settings.clone(),
                        Arc::clone(&counters),
                        seed,
                    ));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            changed = settings.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

/// Serves one accepted connection until it ends.
async fn connection(
    client: TcpStream,
    peer: SocketAddr,
    target: SocketAddr,
    settings: watch::Receiver<Settings>,
    counters: Arc<Counters>,
    seed: u64,
) {
    let now = *settings.borrow();
    let birth = Birth {
        breaks: now.breaks,
        held: now.fault == Fault::Blackhole,
    };
    if now.fault == Fault::Reset {
        counters.closed_by_fault.fetch_add(1, Ordering::Relaxed);
        abort(&client);
        tracing::debug!(%peer, %target, "refused (reset)");
        return;
    }
    counters.open.fetch_add(1, Ordering::Relaxed);
    let mut client = client;
    let result = relay(&mut client, target, settings, birth, &counters, seed).await;
    counters.open.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(()) => tracing::debug!(%peer, %target, "closed"),
        Err(stop) => {
            abort(&client);
            let (by_fault, reason) = match stop {
                Stop::Fault => (true, "fault".to_owned()),
                Stop::Loss => (true, "loss".to_owned()),
                Stop::Shutdown => (false, "link dropped".to_owned()),
                Stop::Io(error) => (false, error.to_string()),
            };
            if by_fault {
                counters.closed_by_fault.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%peer, %target, %reason, "closed");
        }
    }
}

/// Dials the target and forwards both ways until both directions end (`Ok`) or something
/// stops the connection (then the target's side is reset here, the client's by the caller).
async fn relay(
    client: &mut TcpStream,
    target: SocketAddr,
    mut settings: watch::Receiver<Settings>,
    birth: Birth,
    counters: &Counters,
    seed: u64,
) -> Result<(), Stop> {
    // Born in a blackhole: not even the dial gets through until the link passes again (and
    // then the connection is closed).
    usable(&mut settings, birth).await?;
    let mut server = tokio::select! {
        dialed = TcpStream::connect(target) => dialed.map_err(Stop::Io)?,
        stop = closing(settings.clone(), birth) => return Err(stop),
    };
    // Forward chunks as they come: the proxy should not add Nagle delays of its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let result = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(
            client_read,
            server_write,
            settings.clone(),
            birth,
            SmallRng::seed_from_u64(seed),
            &counters.bytes_to_target,
        );
        let down = pump(
            server_read,
            client_write,
            settings.clone(),
            birth,
            SmallRng::seed_from_u64(!seed),
            &counters.bytes_from_target,
        );
        tokio::select! {
            both = async { tokio::try_join!(up, down) } => both.map(|_| ()),
            stop = closing(settings, birth) => Err(stop),
        }
    };
    if result.is_err() {
        abort(&server);
    }
    result
}

/// Forwards one direction: a reader queues chunks with their delivery time, a writer delivers
/// them in order. Both wait while the link is blackholed; both stop when it must close.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    settings: watch::Receiver<Settings>,
    birth: Birth,
    mut rng: SmallRng,
    forwarded: &AtomicU64,
) -> Result<(), Stop> {
    const CHUNK: usize = 16 * 1024;
    let (queue, mut queued) = mpsc::channel::<(Option<Instant>, Vec<u8>)>(64);
    let mut reader_settings = settings.clone();
    let reading = async move {
        let mut buf = vec![0; CHUNK];
        loop {
            usable(&mut reader_settings, birth).await?;
            let n = from.read(&mut buf).await.map_err(Stop::Io)?;
            if n == 0 {
                // End of stream: dropping the queue lets the writer finish and pass it on.
                return Ok(());
            }
            // The settings now, not before the read: the read may have waited long.
            let now = *reader_settings.borrow();
            if now.loss > 0.0 && rng.random_bool(now.loss) {
                return Err(Stop::Loss);
            }
            // A delay past the clock's range holds the chunk for good.
            let due = Instant::now().checked_add(now.delay);
            if queue.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut writer_settings = settings;
    let writing = async move {
        while let Some((due, chunk)) = queued.recv().await {
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
            usable(&mut writer_settings, birth).await?;
            // Counted before the write, so a peer that has the bytes sees them counted.
            forwarded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            to.write_all(&chunk).await.map_err(Stop::Io)?;
        }
        // The other side may already be gone; the other direction reports that.
        let _ = to.shutdown().await;
        Ok(())
    };
    tokio::try_join!(reading, writing).map(|_| ())
}

/// Waits until traffic may flow, or returns why the connection must stop.
async fn usable(settings: &mut watch::Receiver<Settings>, birth: Birth) -> Result<(), Stop> {
    loop {
        let now = *settings.borrow_and_update();
        if birth.must_close(&now) {
            return Err(Stop::Fault);
        }
        if now.fault == Fault::Pass {
            return Ok(());
        }
        settings.changed().await.map_err(|_| Stop::Shutdown)?;
    }
}

/// Resolves when the connection must close (a fault, or the link dropped).
async fn closing(mut settings: watch::Receiver<Settings>, birth: Birth) -> Stop {
    loop {
        if birth.must_close(&settings.borrow_and_update()) {
            return Stop::Fault;
        }
        if settings.changed().await.is_err() {
            return Stop::Shutdown;
        }
    }
}

/// Makes closing `conn` send a TCP reset: unsent bytes are discarded and the peer sees a
/// broken connection, not an orderly end of stream.
fn abort(conn: &TcpStream) {
    let _ = conn.set_zero_linger();
}
