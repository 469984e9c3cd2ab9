//! `Membrane`: the server side of a cell.
//!
//! One task accepts connections; one task per connection reads requests, runs their handlers
//! concurrently *inside that task* (no task spawned per call), and writes replies in batches:
//! every reply finished during one wake-up goes out with one write. A connection that sends a
//! bad frame is closed with a logged error; other connections are unaffected. A handler that
//! panics is answered with [`Status::Panicked`]; the connection and the server continue.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{self, Role, Secret};
use crate::codec::Bytes;
use crate::context::{Authenticated, CallContext, Connection, Peer};
use crate::endpoint::{Endpoint, current_uid, prepare_socket_dir};
use crate::error::ServeError;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Header, Kind, Status};
use crate::handshake::{self, Challenge, Hello, PROTOCOL_VERSION, Proof, RejectCode, Welcome};
use crate::io::{FrameReader, ReadBudget, Spin, poll_write_out, push_bytes, push_frame, read_one};
use crate::metadata::Metadata;
use crate::service::{DispatchError, Service};
use crate::stream::{BoxedStream, Step};

/// Server settings. Start from [`MembraneConfig::default`] and change fields.
#[derive(Debug, Clone)]
pub struct MembraneConfig {
    /// Largest request payload accepted; a longer frame closes the connection.
    pub max_frame_len: u32,
    /// Most calls run at once per connection. Beyond it the server stops reading from that
    /// connection until a call finishes (backpressure through the socket buffer).
    pub max_in_flight: u32,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout: Duration,
    /// On shutdown, how long in-flight calls may take to finish before they are dropped.
    pub drain_timeout: Duration,
    /// Shared secret TCP clients must prove they know (challenge-response; it is never sent);
    /// `None` takes `$CELL_SECRET`. Required on TCP.
    pub secret: Option<Secret>,
    /// Most connections served at once, handshakes included. At the limit the server stops
    /// accepting (new peers wait in the listen backlog) until a connection closes, so a flood
    /// of unauthenticated TCP peers costs a bounded amount of memory and tasks.
    pub max_connections: u32,
    /// Longest time a connection's task keeps polling its socket after its last activity
    /// before it parks the thread in `epoll_wait`; zero parks at once. Default zero (or
    /// `$CELL_SPIN_US` microseconds); at most 1 ms (longer values are clamped). Spinning saves
    /// the wake-up of an idle (halted) vCPU when the next request comes soon — tens of µs on a
    /// VM without guest halt-polling — and costs CPU: at most this much per idle gap of each
    /// connection, and the window adapts (it shrinks to nothing on a connection whose gaps
    /// are longer, such as an idle one). A thread that loses its CPU while spinning
    /// (contention) stops spinning for 10 ms to 1 s. See `docs/rpc.md`.
    pub spin: Duration,
    /// Most bytes all connections together may hold in read buffers beyond their first
    /// 64 KiB each: what incomplete large requests can make the server hold. A connection's
    /// buffer grows as a frame's bytes arrive (never for a length a header merely announces);
    /// a connection whose growth the budget cannot pay is closed. Requests up to 64 KiB are
    /// served whatever the budget. Default 256 MiB.
    pub max_read_buffer_bytes: usize,
}

impl Default for MembraneConfig {
    fn default() -> Self {
        MembraneConfig {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_in_flight: 1024,
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            secret: None,
            max_connections: 1024,
            spin: crate::io::default_spin(),
            max_read_buffer_bytes: 256 << 20,
        }
    }
}

/// Stops a running [`Membrane`]: it stops accepting, tells clients (`Goodbye`), lets in-flight
/// calls finish (up to the drain timeout) and returns from [`Membrane::serve`].
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A bound server for service `S`. Create with [`Membrane::bind`], run with
/// [`Membrane::serve`].
pub struct Membrane<S: Service> {
    service: Arc<S>,
    listener: Listener,
    endpoint: Endpoint,
    config: Arc<MembraneConfig>,
    shutdown: Arc<watch::Sender<bool>>,
    /// Held for the server's lifetime: the exclusive `flock` that makes a second server for the
    /// same socket a clear error and makes any socket file found at start provably stale.
    _lock: Option<File>,
    socket_path: Option<PathBuf>,
}

impl<S: Service> std::fmt::Debug for Membrane<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membrane")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Membrane<S> {
    /// Binds `service` at `endpoint`. Must be called inside a tokio runtime (any flavor).
    ///
    /// On a Unix socket: a missing directory is created with mode 0700 (the default socket
    /// directory, if it exists, must be ours),
    /// an exclusive lock `<socket>.lock` is taken — if another live server holds it, this is
    /// [`ServeError::AlreadyServing`] — then a socket file left by a killed server is removed
    /// and the socket is bound with mode 0600. On TCP a secret is required.
    ///
    /// # Errors
    /// See [`ServeError`].
    pub fn bind(
        endpoint: Endpoint,
        service: S,
        mut config: MembraneConfig,
    ) -> Result<Membrane<S>, ServeError> {
        let io_err = |source: io::Error| ServeError::Io {
            endpoint: endpoint.to_string(),
            source,
        };
        let (listener, lock, socket_path) = match &endpoint {
            Endpoint::Unix(path) => {
                // A missing directory is ours to create (0700); the shared default directory
                // must be ours. An existing directory the caller chose explicitly is left as
                // it is: the socket itself is 0600 and peers are checked by uid.
                if let Some(dir) = path.parent().filter(|d| {
                    !d.as_os_str().is_empty()
                        && (*d == crate::endpoint::socket_dir() || !d.exists())
                }) {
                    prepare_socket_dir(dir).map_err(io_err)?;
                }
                let lock = take_lock(S::NAME, path)?;
                // Only a socket is ours to replace: a path mistyped onto a regular file (or
                // anything else) must not be deleted.
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.file_type().is_socket() => {
                        std::fs::remove_file(path).map_err(io_err)?;
                        tracing::info!(path = %path.display(), "replaced a stale socket");
                    }
                    Ok(_) => {
                        return Err(io_err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "the path exists and is not a socket; not replacing it",
                        )));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
                let listener = UnixListener::bind(path).map_err(io_err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err)?;
                (Listener::Unix(listener), Some(lock), Some(path.clone()))
            }
            Endpoint::Tcp(addr) => {
                if config.secret.is_none() {
                    config.secret = Secret::from_env();
                }
                match &config.secret {
                    None => return Err(ServeError::MissingSecret),
                    Some(secret) => secret.check().map_err(ServeError::InvalidSecret)?,
                }
                let std_listener = std::net::TcpListener::bind(addr).map_err(io_err)?;
                std_listener.set_nonblocking(true).map_err(io_err)?;
                let listener = TcpListener::from_std(std_listener).map_err(io_err)?;
                (Listener::Tcp(listener), None, None)
            }
        };
        let endpoint = match &listener {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => Endpoint::Tcp(addr.to_string()),
                Err(_) => endpoint,
            },
            Listener::Unix(_) => endpoint,
        };
        let (shutdown, _) = watch::channel(false);
        Ok(Membrane {
            service: Arc::new(service),
            listener,
            endpoint,
            config: Arc::new(config),
            shutdown: Arc::new(shutdown),
            _lock: lock,
            socket_path,
        })
    }

    /// Binds `service` at a Unix socket path with the default configuration.
    ///
    /// # Errors
    /// See [`Membrane::bind`].
    pub fn bind_unix(path: impl AsRef<Path>, service: S) -> Result<Membrane<S>, ServeError> {
        Membrane::bind(
            Endpoint::unix(path.as_ref()),
            service,
            MembraneConfig::default(),
        )
    }

    /// Where the server listens (for TCP with port 0, the actual port).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown(self.shutdown.clone())
    }

    /// Accepts and serves connections until shut down. Works on a `current_thread` runtime.
    ///
    /// # Errors
    /// Only when accepting fails persistently; single bad connections are logged and closed.
    pub async fn serve(self) -> Result<(), ServeError> {
        let Membrane {
            service,
            listener,
            endpoint,
            config,
            shutdown,
            _lock,
            socket_path,
        } = self;
        let mut stop = shutdown.subscribe();
        let mut stopped = pin!(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        let mut connections = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_connections.max(1) as usize
        ));
        let auth_log = Arc::new(AuthLog::default());
        let read_budget = Arc::new(ReadBudget::new(config.max_read_buffer_bytes));
        tracing::info!(service = S::NAME, %endpoint, "serving");
        loop {
            tokio::select! {
                () = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                // A free connection slot first, then accept: at the limit, peers wait in the
                // kernel's backlog instead of costing a task each.
                accepted = async {
                    let slot = slots.clone().acquire_owned().await;
                    (slot, accept(&listener).await)
                } => match accepted {
                    (slot, Ok((conn, peer))) => {
                        let service = service.clone();
                        let config = config.clone();
                        let auth_log = auth_log.clone();
                        let read_budget = read_budget.clone();
                        let stop = shutdown.subscribe();
                        let span = tracing::info_span!("connection", service = S::NAME, %peer);
                        connections.spawn(
                            async move {
                                let _slot = slot;
                                serve_connection(service, conn, config, stop, &auth_log, read_budget)
                                    .await
                            }
                            .instrument(span),
                        );
                    }
                    (_, Err(e)) => {
                        // Out of file descriptors and the like: log, breathe, keep serving.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tracing::info!(
            service = S::NAME,
            in_flight_connections = connections.len(),
            "draining"
        );
        drop(listener);
        if let Some(path) = &socket_path {
            let _ = std::fs::remove_file(path);
        }
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("drain timeout: dropping the calls still running");
            connections.shutdown().await;
        }
        tracing::info!(service = S::NAME, "stopped");
        Ok(())
    }
}

/// Takes `<socket>.lock` exclusively, or reports the live server holding it.
#[expect(
    unsafe_code,
    reason = "flock(LOCK_EX | LOCK_NB) on the socket's lock file"
)]
fn take_lock(name: &str, socket: &Path) -> Result<File, ServeError> {
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    // Never through a symlink: a link planted at this path (by another user in a shared
    // directory) would make us create, lock or chmod a file of their choosing. The mode is set
    // at creation, so there is no chmod (which would follow a link) afterwards.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(|source| ServeError::Io {
            endpoint: lock_path.display().to_string(),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            ServeError::AlreadyServing {
                name: name.to_string(),
                path: socket.display().to_string(),
                lock: lock_path.display().to_string(),
            }
        } else {
            ServeError::Io {
                endpoint: lock_path.display().to_string(),
                source: err,
            }
        });
    }
    Ok(file)
}

/// An accepted connection of either transport.
enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
}

async fn accept(listener: &Listener) -> io::Result<(Conn, String)> {
    match listener {
        Listener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            let peer = match stream.peer_cred() {
                Ok(cred) => format!("uid {} pid {:?}", cred.uid(), cred.pid()),
                Err(_) => "unix peer".to_string(),
            };
            Ok((Conn::Unix(stream), peer))
        }
        Listener::Tcp(l) => {
            let (stream, addr) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Conn::Tcp(stream, addr), addr.to_string()))
        }
    }
}

async fn serve_connection<S: Service>(
    service: Arc<S>,
    conn: Conn,
    config: Arc<MembraneConfig>,
    stop: watch::Receiver<bool>,
    auth_log: &AuthLog,
    read_budget: Arc<ReadBudget>,
) {
    let tcp = matches!(conn, Conn::Tcp(..));
    let result = match conn {
        Conn::Unix(stream) => {
            // SO_PEERCRED: only processes of our own user may talk to us over a Unix socket.
            let cred = stream.peer_cred();
            if let Err(refusal) = check_peer(cred.as_ref().map(|c| c.uid()), current_uid()) {
                tracing::warn!("{refusal}");
                return;
            }
            let peer = match cred {
                Ok(cred) => Peer::Unix {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                },
                Err(_) => return,
            };
            run(&*service, stream, &config, stop, peer, read_budget).await
        }
        Conn::Tcp(stream, addr) => {
            let peer = Peer::Tcp {
                addr,
                authenticated: Authenticated::SharedSecret,
            };
            run(&*service, stream, &config, stop, peer, read_budget).await
        }
    };
    match result {
        Ok(()) => tracing::debug!("connection closed"),
        // Anyone on the network can produce these at will: rate-limited, not one line each.
        Err(e) if tcp && is_unauthenticated(&e) => auth_log.record(&e),
        Err(e) => tracing::error!(error = %e, "connection closed after an error"),
    }
}

/// Failures of a peer that never authenticated: handshake timeouts and everything `run`
/// reports as [`io::ErrorKind::PermissionDenied`].
fn is_unauthenticated(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::TimedOut
    )
}

/// Logs failed TCP authentications at most once per [`AuthLog::EVERY`], with a count of the
/// ones not logged since; the others go to `debug`.
#[derive(Default)]
struct AuthLog(Mutex<(Option<Instant>, u64)>);

impl AuthLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn record(&self, e: &io::Error) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (last, suppressed) = &mut *state;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            *suppressed += 1;
            tracing::debug!(error = %e, "unauthenticated peer closed");
            return;
        }
        tracing::warn!(
            error = %e,
            not_logged_since_last = *suppressed,
            "unauthenticated peer closed (at most one such line per 10 s)"
        );
        *last = Some(now);
        *suppressed = 0;
    }
}

/// SO_PEERCRED: a Unix-socket peer is served only when it runs as our own user.
fn check_peer(peer_uid: Result<u32, &io::Error>, own_uid: u32) -> Result<(), String> {
    match peer_uid {
        Ok(uid) if uid == own_uid => Ok(()),
        Ok(uid) => Err(format!("refused a peer of another user (uid {uid})")),
        Err(e) => Err(format!("cannot read peer credentials ({e}); refused")),
    }
}

/// Handshake, then the request loop. A TCP `peer` must authenticate.
async fn run<S: Service, IO: AsyncRead + AsyncWrite + Unpin>(
    service: &S,
    mut io: IO,
    config: &MembraneConfig,
    stop: watch::Receiver<bool>,
    peer: Peer,
    read_budget: Arc<ReadBudget>,
) -> io::Result<()> {
    let authenticate = matches!(peer, Peer::Tcp { .. });
    // Small until the peer is known: a hello fits (it grows for the requests afterwards).
    let mut reader = FrameReader::with_capacity(HANDSHAKE_BUFFER, 4096);
    reader.set_budget(read_budget);
    // On TCP nothing has been proven yet: any failure up to the proof check is the peer's
    // failure to authenticate (and is logged as such, rate-limited).
    let unauthenticated = |e: io::Error| {
        if authenticate && e.kind() != io::ErrorKind::TimedOut {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("peer failed authentication: {e}"),
            )
        } else {
            e
        }
    };
    // One deadline for the whole handshake, both round trips of TCP included.
    let deadline = Instant::now() + config.handshake_timeout;
    let hello = tokio::time::timeout_at(deadline, read_one(&mut io, &mut reader))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))?
        .map_err(unauthenticated)?;
    let (header, payload) = hello;
    if header.kind != Kind::Hello {
        return Err(unauthenticated(invalid(format!(
            "expected a hello, got {}",
            header.kind
        ))));
    }
    let hello = match Hello::parse(&payload) {
        Ok(hello) => hello,
        Err(e) => {
            if authenticate {
                // Nothing for a peer that has not authenticated, not even why.
                return Err(unauthenticated(invalid(e.to_string())));
            }
            let peeked = Hello::peek_version(&payload);
            if let Some(v) = peeked.filter(|v| *v != PROTOCOL_VERSION) {
                let reason = version_reason(v);
                io.write_all(&handshake::reject_frame(
                    RejectCode::Version,
                    &reason,
                    S::FINGERPRINT,
                    v,
                ))
                .await?;
                return Err(invalid(reason));
            }
            io.write_all(&handshake::reject_frame(
                RejectCode::Malformed,
                &e.to_string(),
                S::FINGERPRINT,
                peeked.unwrap_or(PROTOCOL_VERSION),
            ))
            .await?;
            return Err(invalid(e.to_string()));
        }
    };
    // The server's proof for the welcome, on TCP once the client has proven itself.
    let mut server_proof = None;
    if authenticate {
        let Some(secret) = config.secret.as_ref() else {
            // Bind refuses TCP without a secret: never reached, and never "no check".
            return Err(unauthenticated(invalid(
                "no shared secret configured".into(),
            )));
        };
        if hello.version < 3 {
            // Protocols 1 and 2 sent the secret itself where the nonce now is. Its sender is
            // told about the version mismatch only if that secret is right.
            if !secret.matches(&hello.nonce) {
                return Err(unauthenticated(invalid(format!(
                    "a protocol {} hello with a wrong secret",
                    hello.version
                ))));
            }
        } else {
            // A failure of the OS's random source is ours, not the peer's: logged as an error.
            let challenge = Challenge::random()?;
            authenticate_client(&mut io, &mut reader, secret, &hello, &challenge, deadline)
                .await
                .map_err(unauthenticated)?;
            server_proof = Some(auth::prove(secret, Role::Server, &hello, &challenge).0);
        }
    }
    let stopping = *stop.borrow();
    let refusal = if hello.version != PROTOCOL_VERSION {
        Some((RejectCode::Version, version_reason(hello.version)))
    } else if hello.service != S::NAME {
        Some((
            RejectCode::WrongService,
            format!("this socket serves `{}`, not `{}`", S::NAME, hello.service),
        ))
    } else if hello.fingerprint != S::FINGERPRINT {
        Some((
            RejectCode::Fingerprint,
            format!(
                "service `{}` fingerprint mismatch: client {}, server {}",
                S::NAME,
                crate::fingerprint::hex(hello.fingerprint),
                crate::fingerprint::hex(S::FINGERPRINT)
            ),
        ))
    } else if stopping {
        Some((
            RejectCode::ShuttingDown,
            "the server is shutting down".into(),
        ))
    } else {
        None
    };
    if let Some((code, reason)) = refusal {
        io.write_all(&handshake::reject_frame(
            code,
            &reason,
            S::FINGERPRINT,
            hello.version,
        ))
        .await?;
        return Err(invalid(format!("handshake refused: {reason}")));
    }
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        fingerprint: S::FINGERPRINT,
        max_frame_len: config.max_frame_len,
        max_in_flight: config.max_in_flight,
        proof: server_proof,
    };
    io.write_all(&welcome.to_frame()).await?;
    reader.set_max_len(config.max_frame_len);
    reader.grow_to_default();
    // From here on handlers can see the connection; the guard marks it closed (and runs its
    // close callbacks) however this task ends, after the running calls were dropped.
    let (connection, _closed) = Connection::open(peer);
    tracing::debug!(connection = %connection.id(), "handshake done");
    requests(
        service,
        io,
        reader,
        config,
        hello.max_frame_len,
        stop,
        &connection,
    )
    .await
}

/// TCP, protocol 3 and later: sends `challenge` (a fresh nonce) and checks the client's proof
/// (constant time). Every error means the peer is not authenticated; the caller closes
/// without another byte.
async fn authenticate_client<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    reader: &mut FrameReader,
    secret: &Secret,
    hello: &Hello,
    challenge: &Challenge,
    deadline: Instant,
) -> io::Result<()> {
    if hello.nonce.len() != handshake::NONCE_LEN {
        return Err(invalid(format!(
            "a hello with a {}-byte nonce (expected {})",
            hello.nonce.len(),
            handshake::NONCE_LEN
        )));
    }
    let exchange = async {
        io.write_all(&challenge.to_frame()).await?;
        read_one(io, reader).await
    };
    let (header, payload) = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    if header.kind != Kind::Proof {
        return Err(invalid(format!("expected a proof, got {}", header.kind)));
    }
    let proof = Proof::parse(&payload).map_err(|e| invalid(e.to_string()))?;
    if !auth::verify(secret, Role::Client, hello, challenge, &proof.0) {
        return Err(invalid("wrong proof (the secrets differ)".into()));
    }
    Ok(())
}

fn version_reason(client: u16) -> String {
    format!("protocol version mismatch: client speaks {client}, server speaks {PROTOCOL_VERSION}")
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// How a call ended.
enum Outcome<R> {
    Reply(R),
    Panicked(String),
    DeadlineExceeded,
    Cancelled,
}

/// Cancellation requests from the client, by request id. Every running call has an entry from
/// the moment its request is read until it finishes; a `Cancel` only marks an existing entry.
/// So a `Cancel` for a call that already finished (it crossed the reply on the wire) or that
/// never existed is dropped: it can neither cancel a later call that reuses the id nor grow
/// the map, which holds at most `max_in_flight` entries.
#[derive(Default)]
struct Cancels(Mutex<CancelMap>);

/// Keyed by request id with a multiplicative hash: the map is on every call's path (an insert
/// and a remove), and SipHash's DoS resistance buys nothing for a map that never holds more
/// than `max_in_flight` entries.
type CancelMap = HashMap<u32, (bool, Option<Waker>), std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        // Fibonacci hashing: spreads the slot and generation bits over the whole word.
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, CancelMap> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call with this id starts running.
    fn register(&self, id: u32) {
        self.lock().insert(id, (false, None));
    }

    fn cancel(&self, id: u32) {
        let mut map = self.lock();
        if let Some(entry) = map.get_mut(&id) {
            entry.0 = true;
            if let Some(waker) = entry.1.take() {
                waker.wake();
            }
        }
    }

    fn poll_cancelled(&self, id: u32, cx: &mut Context<'_>) -> Poll<()> {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(&id) else {
            // Only a client reusing the id of a call still running gets here (the first of
            // the two finished): it cannot cancel the second one any more.
            return Poll::Pending;
        };
        if entry.0 {
            return Poll::Ready(());
        }
        match &entry.1 {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.1 = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether a call (or stream) with this id is running.
    fn contains(&self, id: u32) -> bool {
        self.lock().contains_key(&id)
    }

    /// The call finished: its id is free again. Says whether it was cancelled meanwhile.
    fn finish(&self, id: u32) -> bool {
        self.lock()
            .remove(&id)
            .is_some_and(|(cancelled, _)| cancelled)
    }

    /// The call finished (or was cancelled): its id is free again.
    fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The future of one call: its handler, run with `context` as the task-local
/// `CallContext::current`, bounded by `deadline` and ended early by a `Cancel`.
fn call_future<'a, S: Service>(
    service: &'a S,
    cancels: &'a Cancels,
    call: S::Call,
    deadline: Option<Instant>,
    context: CallContext,
) -> impl Future<Output = (u32, Outcome<S::Reply>, Option<Instant>)> + 'a {
    let name = context.method();
    let id = context.request_id();
    let span = match context.trace().zip(context.span_id()) {
        // The caller's trace continues here: its id, the caller's span as parent, our span.
        Some((trace, span_id)) => tracing::debug_span!(
            "call",
            service = S::NAME,
            method = name,
            id,
            trace_id = %trace.trace_id_hex(),
            parent_span = %trace.parent_id_hex(),
            span_id = %crate::metadata::hex(&span_id),
        ),
        None => tracing::debug_span!("call", service = S::NAME, method = name, id),
    };
    // Boxed: a handler's future is as large as its service's largest method (celldb's
    // cluster service: about 4 KB), and the call's future is moved into the connection's
    // `FuturesUnordered` after it is built. Inline, every call copied those bytes more than
    // once (5–7% of a raft leader's CPU in `memmove`); boxed, once, and the rest is a pointer.
    let work =
        std::panic::AssertUnwindSafe(context.scope(Box::pin(service.call(call)))).catch_unwind();
    async move {
        let work = async {
            let done = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
                    Ok(done) => done,
                    Err(_) => return Outcome::DeadlineExceeded,
                },
                None => work.await,
            };
            match done {
                Ok(reply) => Outcome::Reply(reply),
                Err(panic) => Outcome::Panicked(panic_message(panic.as_ref())),
            }
        };
        let mut work = pin!(work);
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(outcome) = work.as_mut().poll(cx) {
                return Poll::Ready(outcome);
            }
            cancels.poll_cancelled(id, cx).map(|()| Outcome::Cancelled)
        })
        .await;
        // A cancel that arrived while the handler finished wins: the caller is gone, and a
        // stream the handler returned must not start (its producer stops when it is dropped).
        let outcome = if cancels.finish(id) {
            Outcome::Cancelled
        } else {
            outcome
        };
        if let Outcome::Panicked(message) = &outcome {
            tracing::error!(panic = %message, "handler panicked; the caller gets an error");
        }
        (id, outcome, deadline)
    }
    .instrument(span)
}

/// A stream a handler returned, while it runs.
struct StreamEntry {
    /// Items the client still takes (its credit).
    credit: u32,
    /// The stream, while it is not being polled (no credit, or no room in the output).
    parked: Option<BoxedStream>,
    /// The call's deadline, which bounds the whole stream.
    deadline: Option<Instant>,
}

/// Why a [`StreamStep`] finished.
enum StepReady {
    /// The stream's next item (or its end) is ready to be encoded.
    Item,
    /// The client cancelled the call.
    Cancelled,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// Polling the stream panicked.
    Panicked(String),
}

/// Waits for one stream's next item (or end), its cancellation or its deadline. Lives in the
/// connection's `FuturesUnordered`, so only streams that were woken are polled.
struct StreamStep<'a> {
    id: u32,
    stream: Option<BoxedStream>,
    cancels: &'a Cancels,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<'a> StreamStep<'a> {
    fn new(
        id: u32,
        stream: BoxedStream,
        cancels: &'a Cancels,
        deadline: Option<Instant>,
    ) -> StreamStep<'a> {
        StreamStep {
            id,
            stream: Some(stream),
            cancels,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }
}

impl Future for StreamStep<'_> {
    type Output = (u32, Option<BoxedStream>, StepReady);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Pending; // Finished: never polled again by `FuturesUnordered`.
        };
        // The deadline first: a producer that always has an item ready must still end.
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.stream = None;
            return Poll::Ready((this.id, None, StepReady::DeadlineExceeded));
        }
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.poll_ready(cx)));
        match polled {
            Ok(Poll::Ready(())) => {
                return Poll::Ready((this.id, this.stream.take(), StepReady::Item));
            }
            Ok(Poll::Pending) => {}
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                this.stream = None;
                return Poll::Ready((this.id, None, StepReady::Panicked(message)));
            }
        }
        if this.cancels.poll_cancelled(this.id, cx).is_ready() {
            this.stream = None;
            return Poll::Ready((this.id, None, StepReady::Cancelled));
        }
        Poll::Pending
    }
}

/// Appends the stream's ready item as a `StreamItem` frame, or its end as the call's
/// `Response` (`Ok` and empty, or `AppError` with the error). `Err(message)` when it cannot
/// be encoded or exceeds the client's frame limit (nothing appended; the stream must end).
fn push_stream_step(
    out: &mut Bytes,
    id: u32,
    stream: &mut dyn crate::stream::EncodedStream,
    client_max: u32,
) -> Result<Step, String> {
    let mut header = Header::new(Kind::StreamItem);
    header.id = id;
    let start = out.len();
    let mut step = Step::End;
    push_frame(out, header, |out| {
        step = stream.encode_next(out)?;
        Ok::<_, crate::codec::EncodeError>(())
    })
    .map_err(|e| e.to_string())?;
    let len = crate::frame::payload_len(&out[start..]).unwrap_or(0);
    if len > client_max {
        out.resize(start, 0);
        return Err(format!(
            "a stream item ({len} bytes) exceeds the client's {client_max}-byte frame limit"
        ));
    }
    // The frame's kind and status are known only after encoding: patch bytes 4 and 5.
    let (kind, status) = match step {
        Step::Item => (Kind::StreamItem, Status::Ok),
        Step::End => (Kind::Response, Status::Ok),
        Step::Error => (Kind::Response, Status::AppError),
    };
    out[start + 4] = kind as u8;
    out[start + 5] = status as u8;
    Ok(step)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// Initial read buffer of a connection that has not completed its handshake.
const HANDSHAKE_BUFFER: usize = 512;

/// Unwritten reply bytes beyond which a connection stops reading requests (see `requests`).
const OUT_HIGH_WATER: usize = 1 << 20;

/// The request loop of one connection, as one hand-written poll loop: read every complete
/// request, start it, poll every running call, and write all finished replies at once.
async fn requests<S: Service, IO: AsyncRead + AsyncWrite + Unpin>(
    service: &S,
    mut io: IO,
    mut reader: FrameReader,
    config: &MembraneConfig,
    client_max: u32,
    mut stop: watch::Receiver<bool>,
    connection: &Connection,
) -> io::Result<()> {
    let cancels = Cancels::default();
    let mut running = FuturesUnordered::new();
    // Streams (protocol 5): every stream a handler returned, by request id, with its credit;
    // a stream is either `pumping` (waiting for its next item) or parked in its entry (no
    // credit, or the output is over the high-water mark).
    let mut streams: HashMap<u32, StreamEntry> = HashMap::new();
    let mut pumping: FuturesUnordered<StreamStep<'_>> = FuturesUnordered::new();
    // Credit that arrived while the call's handler still ran (the client sends its window
    // right behind the request). Only for running calls, so bounded by `max_in_flight`.
    let mut early_credit: HashMap<u32, u32> = HashMap::new();
    // Parked streams may have credit and room again: look at them.
    let mut resume = false;
    let mut out = Bytes::with_capacity(4096);
    let mut written = 0usize;
    let mut draining = false;
    // Drained and our write half shut down (FIN sent): what still arrives is read and
    // dropped until the client closes. Closing with unread data would send an RST on TCP,
    // which can destroy replies the client has not read yet.
    let mut half_closed = false;
    let mut eof = false;
    let max_in_flight = config.max_in_flight.max(1) as usize;
    let mut spin = Spin::new(config.spin);
    let mut stopped = pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });

    std::future::poll_fn(|cx| {
        loop {
            let mut progress = false;

            if !draining && stopped.as_mut().poll(cx).is_ready() {
                draining = true;
                push_bytes(&mut out, Header::new(Kind::Goodbye), &[]);
                progress = true;
            }

            // Requests: parse what is buffered, then read more. At capacity no request is
            // started (the socket buffer then pushes back on the client), but reading goes on
            // up to the next request so that `Cancel` frames still get through — otherwise a
            // server full of cancelled calls would never learn they were cancelled.
            while !eof {
                if running.len() + streams.len() >= max_in_flight
                    && (reader.next_is(Kind::Request) || reader.next_is(Kind::MetaRequest))
                {
                    break;
                }
                // A client that sends and never reads must not make the replies pile up here:
                // past the high-water mark, read nothing until the socket takes some output.
                if out.len() - written > OUT_HIGH_WATER {
                    break;
                }
                match reader.next_frame() {
                    Err(e) => return Poll::Ready(Err(invalid(e.to_string()))),
                    Ok(Some((header, range))) => {
                        progress = true;
                        // The arguments' range: the payload, after the metadata if any.
                        let mut args = range.clone();
                        // Protocol 4: metadata first, bounded; a bad block closes only this
                        // connection, like any bad frame.
                        let mut metadata = None;
                        if header.kind == Kind::MetaRequest && !half_closed {
                            match Metadata::split(&reader.bytes()[range.clone()]) {
                                Ok((md, archive)) => {
                                    metadata = Some(md);
                                    args.start = args.end - archive.len();
                                }
                                Err(e) => {
                                    return Poll::Ready(Err(invalid(format!(
                                        "request {}: {e}",
                                        header.id
                                    ))));
                                }
                            }
                        }
                        match header.kind {
                            Kind::Request | Kind::MetaRequest | Kind::Cancel | Kind::Credit
                                if half_closed => {}
                            Kind::Request | Kind::MetaRequest if draining => {
                                let mut h = Header::new(Kind::Response);
                                h.id = header.id;
                                h.status = Status::ShuttingDown;
                                push_bytes(&mut out, h, b"the server is shutting down");
                            }
                            Kind::Request | Kind::MetaRequest => {
                                // A large request alone in the read buffer is handed over
                                // whole: a handler borrowing it as an archive reads it where
                                // it was received (no copy).
                                let decoded = match reader.take_frame(&range) {
                                    Some(frame) => S::decode_owned(header.method, frame, args),
                                    None => S::decode(header.method, &reader.bytes()[args]),
                                };
                                match decoded {
                                    Ok(call) => {
                                        let deadline = (header.budget_ms > 0).then(|| {
                                            Instant::now()
                                                + Duration::from_millis(header.budget_ms.into())
                                        });
                                        cancels.register(header.id);
                                        let context = CallContext::new(
                                            connection.clone(),
                                            header.id,
                                            S::METHODS
                                                .get(header.method as usize)
                                                .copied()
                                                .unwrap_or("?"),
                                            deadline.map(Instant::into_std),
                                            metadata.take(),
                                        );
                                        // Admission (auth layers): a refusal is
                                        // answered before the handler runs.
                                        if let Err(reason) = service.admit(&context) {
                                            cancels.forget(header.id);
                                            let mut h = Header::new(Kind::Response);
                                            h.id = header.id;
                                            h.status = Status::Refused;
                                            push_bytes(&mut out, h, reason.as_bytes());
                                        } else {
                                            running.push(call_future(
                                                service, &cancels, call, deadline, context,
                                            ));
                                        }
                                    }
                                    Err(DispatchError::UnknownMethod(m)) => {
                                        let mut h = Header::new(Kind::Response);
                                        h.id = header.id;
                                        h.status = Status::UnknownMethod;
                                        let msg = format!("`{}` has no method number {m}", S::NAME);
                                        push_bytes(&mut out, h, msg.as_bytes());
                                    }
                                    Err(DispatchError::Decode(e)) => {
                                        return Poll::Ready(Err(invalid(format!(
                                            "request {} ({}): {e}",
                                            header.id,
                                            S::METHODS.get(header.method as usize).unwrap_or(&"?")
                                        ))));
                                    }
                                }
                            }
                            Kind::Cancel => {
                                cancels.cancel(header.id);
                                // A parked stream is not polled: drop it here (its producer
                                // stops). A pumping one sees the cancel itself.
                                if streams
                                    .get(&header.id)
                                    .is_some_and(|entry| entry.parked.is_some())
                                {
                                    streams.remove(&header.id);
                                    cancels.forget(header.id);
                                }
                            }
                            Kind::Credit => {
                                let more = header.budget_ms;
                                if let Some(entry) = streams.get_mut(&header.id) {
                                    entry.credit = entry.credit.saturating_add(more);
                                    resume |= entry.parked.is_some();
                                } else if cancels.contains(header.id) {
                                    let credit = early_credit.entry(header.id).or_insert(0);
                                    *credit = credit.saturating_add(more);
                                }
                                // Otherwise the stream ended (or was never one): the credit
                                // crossed its end on the wire.
                            }
                            other => {
                                return Poll::Ready(Err(invalid(format!(
                                    "unexpected {other} frame from a client"
                                ))));
                            }
                        }
                    }
                    Ok(None) => match reader.poll_fill(&mut io, cx) {
                        Poll::Ready(Ok(0)) => {
                            if reader.has_partial() {
                                return Poll::Ready(Err(invalid(
                                    "connection closed in the middle of a frame".into(),
                                )));
                            }
                            eof = true;
                        }
                        Poll::Ready(Ok(_)) => progress = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    },
                }
            }
            if eof {
                // The client is gone: nobody is left to answer.
                return Poll::Ready(Ok(()));
            }

            // Finished calls become replies (or streams).
            while let Poll::Ready(Some((id, outcome, deadline))) = running.poll_next_unpin(cx) {
                progress = true;
                let credit = early_credit.remove(&id).unwrap_or(0);
                // Whatever the outcome, the handler's reply metadata leaves the connection.
                let reply_metadata = connection.take_reply_metadata(id);
                let mut h = Header::new(Kind::Response);
                h.id = id;
                let outcome = match outcome {
                    Outcome::Reply(reply) => match S::into_stream(reply) {
                        Ok(stream) => {
                            // Cancellable again until the stream ends.
                            cancels.register(id);
                            streams.insert(
                                id,
                                StreamEntry {
                                    credit,
                                    parked: Some(stream),
                                    deadline,
                                },
                            );
                            resume = true;
                            continue;
                        }
                        Err(reply) => Outcome::Reply(reply),
                    },
                    other => other,
                };
                match outcome {
                    Outcome::Reply(reply) => {
                        let mut status = Status::Ok;
                        let start = out.len();
                        if reply_metadata.is_some() {
                            h.kind = Kind::MetaResponse;
                        }
                        let encoded = push_frame(&mut out, h, |out| {
                            if let Some(metadata) = &reply_metadata {
                                metadata.encode(out);
                            }
                            status = S::encode(&reply, out)?;
                            Ok::<_, crate::codec::EncodeError>(())
                        });
                        // A reply the client would refuse (closing the connection and failing
                        // all its calls) fails alone instead.
                        let encoded = encoded.map_err(|e| e.to_string()).and_then(|()| {
                            // The unpadded length, as the header just written says.
                            let len = crate::frame::payload_len(&out[start..]).unwrap_or(0);
                            if len > client_max {
                                out.resize(start, 0);
                                return Err(format!(
                                    "the reply ({len} bytes) exceeds the client's \
                                     {client_max}-byte frame limit"
                                ));
                            }
                            Ok(())
                        });
                        match encoded {
                            Ok(()) => {
                                // The status is known only after encoding: patch byte 5 of
                                // the frame just written.
                                out[start + 5] = status as u8;
                            }
                            Err(message) => {
                                h.status = Status::EncodeFailed;
                                push_bytes(&mut out, h, message.as_bytes());
                            }
                        }
                    }
                    Outcome::Panicked(message) => {
                        h.status = Status::Panicked;
                        push_bytes(&mut out, h, message.as_bytes());
                    }
                    Outcome::DeadlineExceeded => {
                        h.status = Status::DeadlineExceeded;
                        push_bytes(&mut out, h, b"deadline exceeded on the server");
                    }
                    // The caller is gone; it expects nothing.
                    Outcome::Cancelled => {}
                }
            }

            // Streams: each ready item goes out against its credit; an ended stream sends
            // the call's response.
            while let Poll::Ready(Some((id, stream, ready))) = pumping.poll_next_unpin(cx) {
                progress = true;
                let mut h = Header::new(Kind::Response);
                h.id = id;
                let stream = match (ready, stream) {
                    (StepReady::Item, Some(stream)) => stream,
                    (StepReady::Cancelled, _) | (StepReady::Item, None) => {
                        streams.remove(&id);
                        cancels.forget(id);
                        continue;
                    }
                    (StepReady::DeadlineExceeded, _) => {
                        streams.remove(&id);
                        cancels.forget(id);
                        h.status = Status::DeadlineExceeded;
                        push_bytes(&mut out, h, b"deadline exceeded on the server");
                        continue;
                    }
                    (StepReady::Panicked(message), _) => {
                        tracing::error!(panic = %message, "stream panicked; the caller gets an error");
                        streams.remove(&id);
                        cancels.forget(id);
                        h.status = Status::Panicked;
                        push_bytes(&mut out, h, message.as_bytes());
                        continue;
                    }
                };
                let mut stream = stream;
                match push_stream_step(&mut out, id, &mut *stream, client_max) {
                    Ok(Step::Item) => {
                        let Some(entry) = streams.get_mut(&id) else {
                            continue;
                        };
                        entry.credit = entry.credit.saturating_sub(1);
                        if entry.credit > 0 && out.len() - written <= OUT_HIGH_WATER {
                            pumping.push(StreamStep::new(id, stream, &cancels, entry.deadline));
                        } else {
                            entry.parked = Some(stream);
                            // Out of room (not of credit): look again once output drains.
                            resume |= entry.credit > 0;
                        }
                    }
                    Ok(Step::End | Step::Error) => {
                        streams.remove(&id);
                        cancels.forget(id);
                    }
                    Err(message) => {
                        streams.remove(&id);
                        cancels.forget(id);
                        h.status = Status::EncodeFailed;
                        push_bytes(&mut out, h, message.as_bytes());
                    }
                }
            }

            if written < out.len() {
                match poll_write_out(&mut io, &out, &mut written, cx) {
                    Poll::Ready(Ok(())) => {
                        // Progress: reading may have stopped at the high-water mark above, and
                        // no read readiness is registered then — without another turn, a
                        // request already received would wait forever.
                        progress = true;
                        out.clear();
                        written = 0;
                        if out.capacity() > crate::io::SHRINK_ABOVE {
                            out = Bytes::with_capacity(4096);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }

            // Parked streams that have credit again, while the output has room.
            if resume && out.len() - written <= OUT_HIGH_WATER {
                resume = false;
                for (id, entry) in &mut streams {
                    if entry.credit > 0
                        && let Some(stream) = entry.parked.take()
                    {
                        pumping.push(StreamStep::new(*id, stream, &cancels, entry.deadline));
                        progress = true;
                    }
                }
            }

            if draining
                && !half_closed
                && running.is_empty()
                && streams.is_empty()
                && out.is_empty()
            {
                match std::pin::Pin::new(&mut io).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        half_closed = true;
                        progress = true;
                    }
                    // The peer is gone already: nothing left to drain.
                    Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                    Poll::Pending => {}
                }
            }
            if progress {
                spin.progress();
                continue;
            }
            spin.keep_polling(cx);
            return Poll::Pending;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_only_mark_running_calls() {
        let cancels = Cancels::default();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // A cancel for a call that finished (or never ran) leaves nothing behind...
        for id in 0..1000 {
            cancels.cancel(id);
        }
        assert_eq!(cancels.len(), 0);
        // ...so a later call that reuses the id runs.
        cancels.register(7);
        assert!(cancels.poll_cancelled(7, &mut cx).is_pending());
        cancels.cancel(7);
        assert!(cancels.poll_cancelled(7, &mut cx).is_ready());
        cancels.forget(7);
        assert_eq!(cancels.len(), 0);
    }

    /// A service whose handler holds 16 KiB across an await: its future is that large.
    struct Large;

    impl crate::service::Protocol for Large {
        const NAME: &'static str = "large";
        const FINGERPRINT: u64 = 1;
        const METHODS: &'static [&'static str] = &["sum"];
    }

    impl Service for Large {
        type Call = u8;
        type Reply = u64;

        fn decode(_method: u16, payload: &[u8]) -> Result<u8, DispatchError> {
            Ok(payload.first().copied().unwrap_or(0))
        }

        async fn call(&self, call: u8) -> u64 {
            let buffer = [call; 16 * 1024];
            tokio::task::yield_now().await;
            buffer.iter().map(|&b| u64::from(b)).sum()
        }

        fn encode(reply: &u64, out: &mut Bytes) -> Result<Status, crate::codec::EncodeError> {
            crate::codec::append(reply, out).map(|()| Status::Ok)
        }
    }

    /// What a connection stores per running call stays small whatever the handler's future
    /// (it is moved into the connection's `FuturesUnordered`: inline, each call copied the
    /// whole future), and the boxed handler still runs to its answer.
    #[tokio::test(flavor = "current_thread")]
    async fn a_running_call_holds_its_handler_boxed() {
        let service = Large;
        let cancels = Cancels::default();
        cancels.register(3);
        let (conn, _guard) = Connection::open(Peer::Unix {
            uid: 1,
            gid: 1,
            pid: None,
        });
        let context = CallContext::new(conn, 3, "sum", None, None);
        let call = call_future(&service, &cancels, 2, None, context);
        let size = std::mem::size_of_val(&call);
        assert!(size < 4096, "a running call takes {size} bytes inline");
        let (id, outcome, _) = call.await;
        assert_eq!(id, 3);
        match outcome {
            Outcome::Reply(sum) => assert_eq!(sum, 32_768),
            _ => panic!("the call did not answer"),
        }
    }

    #[test]
    fn only_peers_of_our_own_uid_pass_the_peer_check() {
        assert_eq!(check_peer(Ok(1000), 1000), Ok(()));
        let refused = check_peer(Ok(65534), 1000).unwrap_err();
        assert!(refused.contains("another user (uid 65534)"), "{refused}");
        assert!(check_peer(Ok(0), 1000).is_err(), "root is another user too");
        let unsupported = io::Error::from(io::ErrorKind::Unsupported);
        assert!(check_peer(Err(&unsupported), 1000).is_err());
    }
}
