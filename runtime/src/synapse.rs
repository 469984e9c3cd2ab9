//! `Synapse`: the client side of a connection to a cell.
//!
//! Design for speed on a `current_thread` runtime: a caller encodes its request *directly*
//! into the connection's shared write buffer and waits on a reusable slot; one background
//! task per connection does all socket I/O — it writes everything queued since its last
//! wake-up with one syscall and copies each reply into its caller's slot. No channel, no
//! oneshot, no task per call: the steady state allocates nothing. (A lone call writing its own
//! frame, skipping the I/O task's turn, was tried and measured no faster: see
//! `docs/benchmarks.md`.)
//!
//! Request ids are `generation << 16 | slot`; a reply for a slot that was cancelled and
//! reused carries the old generation and is dropped. Dropping a call's future sends `Cancel`
//! so the server stops working on it. A broken connection fails the calls in flight with
//! [`CallError::Disconnected`]; the next call reconnects (calls are never replayed: the
//! runtime cannot know whether a method is idempotent).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{self, Role, Secret};
use crate::codec::{self, Bytes, Protein};
use crate::endpoint::Endpoint;
use crate::error::{CallError, ConnectError};
use crate::frame::{self, Header, Kind, Status};
use crate::handshake::{self, Challenge, Hello, PROTOCOL_VERSION, RejectCode, Welcome};
use crate::io::{FrameReader, Spin, poll_write_out, push_bytes, push_frame, read_one};
use crate::metadata::Metadata;
use crate::service::Protocol;

/// Client settings. Start from [`SynapseConfig::default`] and change fields.
#[derive(Debug, Clone)]
pub struct SynapseConfig {
    /// Deadline of every call, sent to the server too; `None` waits as long as the connection
    /// lives.
    pub timeout: Option<Duration>,
    /// Time to connect and complete the handshake.
    pub connect_timeout: Duration,
    /// Most calls in flight on the connection; more callers wait (backpressure). The server's
    /// own limit, announced at the handshake, caps it.
    pub max_in_flight: u32,
    /// Shared secret for TCP, proven to the server and required from it (challenge-response;
    /// it is never sent); `None` takes `$CELL_SECRET`.
    pub secret: Option<Secret>,
    /// Largest reply accepted. Announced to the server, which answers a longer reply with
    /// [`Status::EncodeFailed`] (the call fails with [`CallError::Remote`], the connection
    /// lives on).
    pub max_frame_len: u32,
    /// Longest time the connection's I/O task keeps polling the socket, while calls are in
    /// flight, before it parks the thread in `epoll_wait`; zero parks at once. Default zero
    /// (or `$CELL_SPIN_US` microseconds); at most 1 ms (longer values are clamped). Spinning
    /// saves the wake-up of an idle (halted) vCPU when the reply comes — tens of µs on a VM
    /// without guest halt-polling, twice per round trip — and costs CPU: at most this much per
    /// wait, and the window adapts (it shrinks to nothing while spinning keeps being wasted,
    /// as with a slow server). A thread that loses its CPU while spinning (contention) stops
    /// spinning for 10 ms to 1 s. See `docs/rpc.md`.
    pub spin: Duration,
    /// On a Unix socket, the uids besides our own whose server we accept. The client checks
    /// the server's uid (SO_PEERCRED) before it sends anything: a socket path in a shared
    /// directory could be served by another user's relay, which would see every call.
    /// Default: `$CELL_ALLOW_SERVER_UIDS` (comma-separated), else none.
    pub allowed_server_uids: Vec<u32>,
    /// Items a stream call may have on their way or waiting in this client before its
    /// consumer takes them (the credit window, protocol 5; default 32, at least 1). The
    /// server sends an item only against this credit, and the client grants more each time
    /// its consumer has taken half a window: a slow consumer holds at most this many items
    /// here, and the server's producer is not polled meanwhile.
    pub stream_window: u32,
}

/// The variable read by [`SynapseConfig::default`] for [`SynapseConfig::allowed_server_uids`].
pub const ALLOW_SERVER_UIDS_ENV: &str = "CELL_ALLOW_SERVER_UIDS";

impl Default for SynapseConfig {
    fn default() -> Self {
        SynapseConfig {
            timeout: None,
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            secret: None,
            max_frame_len: frame::DEFAULT_MAX_FRAME_LEN,
            spin: crate::io::default_spin(),
            allowed_server_uids: std::env::var(ALLOW_SERVER_UIDS_ENV)
                .map(|v| parse_uids(&v))
                .unwrap_or_default(),
            stream_window: 32,
        }
    }
}

/// `"1000, 1001"` → `[1000, 1001]`; what is not a uid is ignored (and logged).
fn parse_uids(v: &str) -> Vec<u32> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.parse() {
            Ok(uid) => Some(uid),
            Err(_) => {
                tracing::warn!("{ALLOW_SERVER_UIDS_ENV}: `{s}` is not a uid; ignored");
                None
            }
        })
        .collect()
}

/// Whether a Unix-socket server running as `server` may be talked to by a client running as
/// `ours`.
fn server_uid_allowed(server: u32, ours: u32, allowed: &[u32]) -> bool {
    server == ours || allowed.contains(&server)
}

/// A client of one service at one endpoint. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Synapse {
    client: Arc<Client>,
    timeout: Option<Duration>,
    /// Sent with every call made through this handle (`with_metadata`).
    metadata: Option<Arc<Metadata>>,
    /// Calls go to this in-process service instead of a connection (`Synapse::in_process`).
    local: Option<crate::local::Shared>,
}

struct Client {
    endpoint: Endpoint,
    service: &'static str,
    /// Method names by number, for spans (empty for raw connections).
    methods: &'static [&'static str],
    fingerprint: u64,
    config: SynapseConfig,
    current: Mutex<Option<Arc<Conn>>>,
    /// Serializes reconnection attempts; holds the last failed attempt's error, which callers
    /// that waited for that attempt share instead of trying again one after the other.
    reconnecting: tokio::sync::Mutex<Option<ConnectError>>,
    /// Reconnection attempts finished so far (read before waiting for `reconnecting`).
    attempts: AtomicU64,
}

impl Drop for Client {
    fn drop(&mut self) {
        let current = self.current.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = current.take() {
            conn.close();
        }
    }
}

impl std::fmt::Debug for Synapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synapse")
            .field("service", &self.client.service)
            .field("endpoint", &self.client.endpoint)
            .finish()
    }
}

impl Synapse {
    /// Connects to the service `P` at `endpoint` and completes the handshake.
    ///
    /// # Errors
    /// Unreachable endpoint, or a handshake refused (version, fingerprint, wrong service,
    /// authentication).
    pub async fn connect<P: Protocol>(
        endpoint: Endpoint,
        config: SynapseConfig,
    ) -> Result<Synapse, ConnectError> {
        Synapse::open(endpoint, P::NAME, P::FINGERPRINT, P::METHODS, config).await
    }

    /// Connects with an explicit service name and fingerprint (tools and tests).
    ///
    /// # Errors
    /// As [`Synapse::connect`].
    pub async fn connect_raw(
        endpoint: Endpoint,
        service: &'static str,
        fingerprint: u64,
        config: SynapseConfig,
    ) -> Result<Synapse, ConnectError> {
        Synapse::open(endpoint, service, fingerprint, &[], config).await
    }

    async fn open(
        endpoint: Endpoint,
        service: &'static str,
        fingerprint: u64,
        methods: &'static [&'static str],
        mut config: SynapseConfig,
    ) -> Result<Synapse, ConnectError> {
        if config.secret.is_none() {
            config.secret = Secret::from_env();
        }
        if let Endpoint::Tcp(_) = endpoint {
            // Checked here, once: an empty secret would be sent as "no secret at all".
            match &config.secret {
                None => return Err(ConnectError::MissingSecret),
                Some(secret) => secret.check().map_err(ConnectError::InvalidSecret)?,
            }
        }
        let client = Arc::new(Client {
            endpoint,
            service,
            methods,
            fingerprint,
            config,
            current: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        });
        let conn = client.open().await?;
        *lock(&client.current) = Some(conn);
        let timeout = client.config.timeout;
        Ok(Synapse {
            client,
            timeout,
            metadata: None,
            local: None,
        })
    }

    /// A client of `service` itself, in this process, with no socket: calls are archived,
    /// decoded, admitted and answered as a server would, in the same call shape (a test double
    /// for a remote cell; `testkit::double` wraps it in the typed client). Its handlers see
    /// `Peer::InProcess`. Call inside a tokio runtime (deadlines use its timer).
    pub fn in_process<S: crate::Service>(service: S) -> Synapse {
        static ENDPOINT: std::sync::OnceLock<Endpoint> = std::sync::OnceLock::new();
        let endpoint = ENDPOINT
            .get_or_init(|| Endpoint::Unix("<in-process>".into()))
            .clone();
        let client = Arc::new(Client {
            endpoint,
            service: S::NAME,
            methods: S::METHODS,
            fingerprint: S::FINGERPRINT,
            config: SynapseConfig::default(),
            current: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        });
        Synapse {
            client,
            timeout: None,
            metadata: None,
            local: Some(Arc::new(crate::local::Local::new(service))),
        }
    }

    /// The same connection with another per-call deadline for calls made through the result.
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Synapse {
        Synapse {
            client: self.client.clone(),
            timeout,
            metadata: self.metadata.clone(),
            local: self.local.clone(),
        }
    }

    /// The same connection; calls made through the result carry `metadata` (protocol 4,
    /// bounded: see [`Metadata`]). Replaces the metadata of `self`; an empty one sends none.
    pub fn with_metadata(&self, metadata: Metadata) -> Synapse {
        Synapse {
            client: self.client.clone(),
            timeout: self.timeout,
            metadata: (!metadata.is_empty()).then(|| Arc::new(metadata)),
            local: self.local.clone(),
        }
    }

    /// The metadata calls through this handle carry.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_deref()
    }

    /// What a call sends: this handle's metadata, plus the trace of the call being served on
    /// this task (`CallContext`), continued by a new span, unless the handle sets its own
    /// `traceparent`. `None` (a plain `Request`) when there is neither.
    fn outgoing_metadata(&self) -> Option<std::borrow::Cow<'_, Metadata>> {
        use std::borrow::Cow;
        let trace = crate::context::CallContext::with_current(|ctx| {
            ctx.and_then(|c| c.trace().zip(c.span_id()).map(|(t, s)| t.child(s)))
        });
        match (&self.metadata, trace) {
            (None, None) => None,
            (Some(md), None) => Some(Cow::Borrowed(&**md)),
            (Some(md), Some(_)) if md.get(crate::metadata::TRACEPARENT).is_some() => {
                Some(Cow::Borrowed(&**md))
            }
            (md, Some(trace)) => {
                let mut md = md.as_deref().cloned().unwrap_or_default();
                // A traceparent is 55 bytes: it fits unless the handle's metadata is full,
                // and then the handle's own entries win.
                let _ = md.insert(crate::metadata::TRACEPARENT, trace.to_string().as_bytes());
                Some(Cow::Owned(md))
            }
        }
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.client.endpoint
    }

    /// Bytes the current connection's write buffers hold (callers' and the I/O task's, as of
    /// its last turn): tests check that one large request does not pin them.
    #[cfg(test)]
    pub(crate) fn write_buffer_capacity(&self) -> usize {
        let current = lock(&self.client.current);
        current.as_ref().map_or(0, |conn| {
            let state = lock(&conn.state);
            state.out.capacity() + state.io_task_buffer
        })
    }

    /// Calls `method` with `request`, for a method returning `Result<T, E>`: `Err(e)` arrives
    /// as [`CallError::App`].
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn call<Req: Protein, T: Protein, E: Protein>(
        &self,
        method: u16,
        request: &Req,
    ) -> Result<T, CallError<E>> {
        self.exchange(method, request, |status, payload| match status {
            Status::Ok => codec::from_bytes::<T>(payload).map_err(CallError::Decode),
            Status::AppError => match codec::from_bytes::<E>(payload) {
                Ok(e) => Err(CallError::App(e)),
                Err(d) => Err(CallError::Decode(d)),
            },
            other => Err(CallError::widen(remote_error(other, payload))),
        })
        .await
        .and_then(|r| r)
    }

    /// Calls `method` with `request`, for a method that returns a plain value.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn call_infallible<Req: Protein, T: Protein>(
        &self,
        method: u16,
        request: &Req,
    ) -> Result<T, CallError> {
        self.exchange(method, request, |status, payload| match status {
            Status::Ok => codec::from_bytes::<T>(payload).map_err(CallError::Decode),
            other => Err(remote_error(other, payload)),
        })
        .await
        .and_then(|r| r)
    }

    /// Calls the streaming `method` with `request`, for a handler returning
    /// [`crate::Streaming`]`<T, E>`: the stream's items arrive in order, and `Err(e)` ends it
    /// as [`CallError::App`]. The future completes once the request is queued (or failed to
    /// be); the server's answers, refusals included, arrive through the stream.
    ///
    /// # Errors
    /// A call that could not be sent (no connection, arguments not encodable, the deadline
    /// passed while waiting for a connection or a free slot).
    pub async fn call_stream<Req: Protein, T: Protein, E: Protein>(
        &self,
        method: u16,
        request: &Req,
    ) -> Result<crate::CallStream<T, E>, CallError<E>> {
        self.open_stream(method, request, crate::stream::decode_app_error::<E>)
            .await
    }

    /// As [`Synapse::call_stream`], for a stream without an application error
    /// (`Streaming<T>`).
    ///
    /// # Errors
    /// As [`Synapse::call_stream`].
    pub async fn call_stream_infallible<Req: Protein, T: Protein>(
        &self,
        method: u16,
        request: &Req,
    ) -> Result<crate::CallStream<T>, CallError> {
        self.open_stream(method, request, crate::stream::no_app_error)
            .await
    }

    async fn open_stream<Req: Protein, T: Protein, E>(
        &self,
        method: u16,
        request: &Req,
        decode_error: crate::stream::DecodeError<E>,
    ) -> Result<crate::CallStream<T, E>, CallError<E>> {
        use crate::stream::{CallStream, Source};
        // The deadline bounds the whole stream, opening included.
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let source = if let Some(local) = &self.local {
            let request = crate::local::archive(request).map_err(CallError::Encode)?;
            let metadata = self.outgoing_metadata().map(std::borrow::Cow::into_owned);
            Source::Local(crate::local::LocalStream::new(
                local.clone().open_stream(
                    method,
                    request,
                    metadata,
                    deadline.map(Instant::into_std),
                ),
                deadline,
            ))
        } else {
            let open = async {
                let conn = self.client.connection().await.map_err(CallError::Connect)?;
                let permit = conn
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| CallError::NotSent(conn.death_reason()))?;
                let budget_ms = match deadline {
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now()).as_millis();
                        left.clamp(1, u32::MAX as u128) as u32
                    }
                    None => 0,
                };
                let window = self.client.config.stream_window.clamp(1, u16::MAX as u32);
                let metadata = self.outgoing_metadata();
                let id = conn.submit(
                    method,
                    request,
                    budget_ms,
                    metadata.as_deref(),
                    Some(window),
                )?;
                // The stream holds its in-flight permit until it ends (`RemoteStream::finish`).
                permit.forget();
                Ok::<_, CallError<E>>(RemoteStream {
                    conn: conn.clone(),
                    id,
                    window,
                    taken: 0,
                    deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                    released: false,
                })
            };
            let remote = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, open)
                    .await
                    .unwrap_or_else(|_| {
                        Err(CallError::NotSent(
                            "the deadline passed while the stream waited for a connection or a \
                             free slot"
                                .into(),
                        ))
                    })?,
                None => open.await?,
            };
            Source::Remote(remote)
        };
        Ok(CallStream {
            source,
            decode_error,
            done: false,
            _types: std::marker::PhantomData,
        })
    }

    /// Sends one request and hands the reply's status and bytes to `on_reply` (which runs
    /// while the reply is still in its slot, so validation reads it in place).
    async fn exchange<Req: Protein, R, E>(
        &self,
        method: u16,
        request: &Req,
        on_reply: impl FnOnce(Status, &[u8]) -> R,
    ) -> Result<R, CallError<E>> {
        // The deadline covers reconnecting too: a call never waits longer than its timeout.
        let deadline = self.timeout.map(|t| Instant::now() + t);
        if let Some(local) = &self.local {
            let request = crate::local::archive(request).map_err(CallError::Encode)?;
            let metadata = self.outgoing_metadata().map(std::borrow::Cow::into_owned);
            let (status, reply, reply_metadata) = local
                .call(method, request, metadata, deadline.map(Instant::into_std))
                .await;
            crate::metadata::deliver_reply(reply_metadata);
            return Ok(on_reply(status, &reply));
        }
        // Whether the request was queued for the socket: a timeout before it is `NotSent`.
        let submitted = std::sync::atomic::AtomicBool::new(false);
        let work = async {
            let conn = self.client.connection().await.map_err(CallError::Connect)?;
            let _permit = conn
                .permits
                .acquire()
                .await
                .map_err(|_| CallError::NotSent(conn.death_reason()))?;
            let budget_ms = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now()).as_millis();
                    left.clamp(1, u32::MAX as u128) as u32
                }
                None => 0,
            };
            let metadata = self.outgoing_metadata();
            let id = conn.submit(method, request, budget_ms, metadata.as_deref(), None)?;
            submitted.store(true, Ordering::Relaxed);
            let name = self
                .client
                .methods
                .get(method as usize)
                .copied()
                .unwrap_or("?");
            let span = tracing::debug_span!(
                "call",
                service = self.client.service,
                method = name,
                method_index = method,
                id
            );
            let mut pending = Pending {
                conn: &conn,
                id,
                on_reply: Some(on_reply),
            };
            std::future::poll_fn(|cx| pending.poll_reply(cx))
                .instrument(span)
                .await
        };
        match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
                Ok(result) => result,
                Err(_) if submitted.load(Ordering::Relaxed) => Err(CallError::Timeout),
                Err(_) => Err(CallError::NotSent(
                    "the deadline passed while the call waited for a connection or a free slot"
                        .into(),
                )),
            },
            None => work.await,
        }
    }
}

pub(crate) fn remote_error(status: Status, payload: &[u8]) -> CallError {
    let message = String::from_utf8_lossy(payload).into_owned();
    match status {
        Status::Panicked => CallError::Panicked(message),
        Status::DeadlineExceeded => CallError::Timeout,
        Status::Refused => CallError::Refused(message),
        status => CallError::Remote { status, message },
    }
}

impl Client {
    /// The live connection, reconnecting if the last one died or the server said goodbye.
    async fn connection(&self) -> Result<Arc<Conn>, ConnectError> {
        if let Some(conn) = lock(&self.current).as_ref().filter(|c| c.usable()) {
            return Ok(conn.clone());
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_failure = self.reconnecting.lock().await;
        if let Some(conn) = lock(&self.current).as_ref().filter(|c| c.usable()) {
            return Ok(conn.clone());
        }
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(failure) = last_failure.as_ref()
        {
            // An attempt ran (and failed) while we waited for it: share its outcome.
            return Err(failure.clone_lossy());
        }
        tracing::debug!(service = self.service, endpoint = %self.endpoint, "reconnecting");
        let opened = self.open().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match opened {
            Ok(conn) => {
                *last_failure = None;
                *lock(&self.current) = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                *last_failure = Some(e.clone_lossy());
                Err(e)
            }
        }
    }

    async fn open(&self) -> Result<Arc<Conn>, ConnectError> {
        let io_err = |source: io::Error| ConnectError::Io {
            endpoint: self.endpoint.to_string(),
            source,
        };
        let attempt = async {
            match &self.endpoint {
                Endpoint::Unix(path) => {
                    let stream = UnixStream::connect(path).await.map_err(io_err)?;
                    let server = stream.peer_cred().map_err(io_err)?.uid();
                    let ours = crate::endpoint::current_uid();
                    if !server_uid_allowed(server, ours, &self.config.allowed_server_uids) {
                        return Err(ConnectError::UntrustedServer {
                            endpoint: self.endpoint.to_string(),
                            uid: server,
                        });
                    }
                    self.handshake(stream, Vec::new()).await
                }
                Endpoint::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await.map_err(io_err)?;
                    let _ = stream.set_nodelay(true);
                    // Present and valid: checked when the client was created.
                    let secret = self
                        .config
                        .secret
                        .as_ref()
                        .map(|s| s.bytes().to_vec())
                        .unwrap_or_default();
                    self.handshake(stream, secret).await
                }
            }
        };
        tokio::time::timeout(self.config.connect_timeout, attempt)
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    /// `secret` is the shared secret on TCP (checked when the client was created) and empty on
    /// a Unix socket, where the server checks our uid instead and there is no challenge.
    async fn handshake<IO>(&self, mut io: IO, secret: Vec<u8>) -> Result<Arc<Conn>, ConnectError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io_err = |source: io::Error| ConnectError::Io {
            endpoint: self.endpoint.to_string(),
            source,
        };
        let secret = (!secret.is_empty()).then(|| Secret::new(secret));
        let nonce = match &secret {
            Some(_) => handshake::random_nonce().map_err(io_err)?.to_vec(),
            None => Vec::new(),
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            service: self.service.to_string(),
            fingerprint: self.fingerprint,
            nonce,
            max_frame_len: self.config.max_frame_len,
        };
        io.write_all(&hello.to_frame()).await.map_err(io_err)?;
        let mut reader = FrameReader::new(4096);
        let (mut header, mut payload) = self.read_handshake(&mut io, &mut reader).await?;
        // TCP: the server challenges us first; our proof covers its nonce and ours.
        let mut challenge = None;
        if header.kind == Kind::Challenge {
            let Some(secret) = &secret else {
                return Err(ConnectError::Protocol(
                    "a challenge on a Unix socket (no secret to prove)".into(),
                ));
            };
            let c =
                Challenge::parse(&payload).map_err(|e| ConnectError::Protocol(e.to_string()))?;
            let proof = auth::prove(secret, Role::Client, &hello, &c);
            io.write_all(&proof.to_frame()).await.map_err(io_err)?;
            challenge = Some(c);
            (header, payload) = self.read_handshake(&mut io, &mut reader).await?;
        }
        match header.kind {
            Kind::Welcome => {}
            Kind::Reject => {
                // Structured (protocol 4): the reason text is only shown, never parsed.
                let reject = handshake::parse_reject(&header, &payload);
                tracing::error!(service = self.service, reason = %reject.reason, "handshake refused");
                return Err(if reject.code == RejectCode::Version as u8 {
                    ConnectError::VersionMismatch {
                        client: PROTOCOL_VERSION,
                        server: reject.server_version,
                    }
                } else if reject.code == RejectCode::Fingerprint as u8 {
                    ConnectError::FingerprintMismatch {
                        service: self.service.to_string(),
                        client: crate::fingerprint::hex(self.fingerprint),
                        server: reject
                            .server_fingerprint
                            .map_or_else(|| "unknown".into(), crate::fingerprint::hex),
                    }
                } else {
                    ConnectError::Rejected(reject.reason)
                });
            }
            other => {
                return Err(ConnectError::Protocol(format!(
                    "expected a welcome, got {other}"
                )));
            }
        }
        let welcome =
            Welcome::parse(&payload).map_err(|e| ConnectError::Protocol(e.to_string()))?;
        // TCP: nothing the server says counts until it has proven that it knows the secret.
        if let Some(secret) = &secret {
            let refusal = match (&challenge, &welcome.proof) {
                (None, _) => Some("it welcomed us without a challenge"),
                (Some(_), None) => Some("its welcome carries no proof"),
                (Some(c), Some(proof)) => (!auth::verify(secret, Role::Server, &hello, c, proof))
                    .then_some("its proof is wrong"),
            };
            if let Some(reason) = refusal {
                tracing::error!(service = self.service, endpoint = %self.endpoint, reason,
                    "refusing a server that did not prove it knows the shared secret");
                return Err(ConnectError::ServerNotAuthenticated {
                    endpoint: self.endpoint.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
        if welcome.version != PROTOCOL_VERSION {
            return Err(ConnectError::VersionMismatch {
                client: PROTOCOL_VERSION,
                server: Some(welcome.version),
            });
        }
        if welcome.fingerprint != self.fingerprint {
            return Err(ConnectError::FingerprintMismatch {
                service: self.service.to_string(),
                client: crate::fingerprint::hex(self.fingerprint),
                server: crate::fingerprint::hex(welcome.fingerprint),
            });
        }
        reader.set_max_len(self.config.max_frame_len);
        let in_flight = self
            .config
            .max_in_flight
            .min(welcome.max_in_flight)
            .clamp(1, u16::MAX as u32) as usize;
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                out: Bytes::with_capacity(4096),
                writer: None,
                #[cfg(test)]
                io_task_buffer: 0,
                slots: Vec::new(),
                free: Vec::new(),
                dead: None,
                goodbye: false,
                closing: false,
                queued: Vec::new(),
            }),
            permits: Semaphore::new(in_flight),
            capacity: in_flight,
            max_request: welcome.max_frame_len,
        });
        // Frames that came in the same read as the welcome (a `Goodbye` from a server that
        // began draining) are handled now: the I/O task only looks again when more arrives.
        deliver(&conn, &mut reader).map_err(ConnectError::Protocol)?;
        let teardown = Teardown {
            conn: conn.clone(),
            reason: None,
        };
        tokio::spawn(drive(teardown, io, reader, Spin::new(self.config.spin)));
        Ok(conn)
    }

    /// Reads one handshake frame; the server hanging up is [`ConnectError::ClosedDuringHandshake`].
    async fn read_handshake<IO: AsyncRead + Unpin>(
        &self,
        io: &mut IO,
        reader: &mut FrameReader,
    ) -> Result<(Header, Vec<u8>), ConnectError> {
        match read_one(io, reader).await {
            Ok(frame) => Ok(frame),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(ConnectError::ClosedDuringHandshake)
            }
            Err(source) => Err(ConnectError::Io {
                endpoint: self.endpoint.to_string(),
                source,
            }),
        }
    }
}

/// One connection: the state callers and the I/O task share.
struct Conn {
    state: Mutex<State>,
    permits: Semaphore,
    /// The number of permits: fewer available means calls are in flight.
    capacity: usize,
    max_request: u32,
}

struct State {
    /// Frames queued by callers, not yet handed to the I/O task.
    out: Bytes,
    /// The I/O task, to wake when `out` gets data.
    writer: Option<Waker>,
    /// Capacity of the I/O task's own write buffer at its last turn.
    #[cfg(test)]
    io_task_buffer: usize,
    slots: Vec<Slot>,
    free: Vec<u16>,
    /// Why the connection died, once it has.
    dead: Option<String>,
    /// The server is draining: finish what is in flight, start nothing new here.
    goodbye: bool,
    /// Every client handle is gone: the I/O task should stop.
    closing: bool,
    /// Slots whose request frames are in `out` (not yet taken by the I/O task).
    queued: Vec<u16>,
}

#[derive(PartialEq, Eq)]
enum SlotState {
    Free,
    Waiting,
    Done(Status),
    Failed,
}

struct Slot {
    generation: u16,
    state: SlotState,
    waker: Option<Waker>,
    /// The reply's payload, copied here by the I/O task; reused across calls.
    reply: Bytes,
    /// The request was handed to the I/O task for the socket (it may have reached the
    /// server): a call failed after this has an unknown outcome, before it was never sent.
    on_wire: bool,
    /// A stream call: its credit window (items it may hold at once).
    stream_window: Option<u32>,
    /// A stream's items, received and not yet taken by its consumer (at most the window).
    items: std::collections::VecDeque<Bytes>,
    /// Item buffers for reuse.
    spare: Vec<Bytes>,
    /// The metadata the reply carried (`MetaResponse`), for `metadata::capture_reply`.
    reply_metadata: Option<Metadata>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-updated in a way that
    // matters more than losing the connection; keep going rather than poisoning every caller.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    fn usable(&self) -> bool {
        let state = lock(&self.state);
        state.dead.is_none() && !state.goodbye
    }

    fn death_reason(&self) -> String {
        lock(&self.state)
            .dead
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        state.closing = true;
        if let Some(w) = state.writer.take() {
            w.wake();
        }
    }

    /// Queues a request frame and returns its id.
    fn submit<Req: Protein, E>(
        &self,
        method: u16,
        request: &Req,
        budget_ms: u32,
        metadata: Option<&Metadata>,
        stream_window: Option<u32>,
    ) -> Result<u32, CallError<E>> {
        let mut state = lock(&self.state);
        if let Some(reason) = &state.dead {
            return Err(CallError::NotSent(reason.clone()));
        }
        let index = match state.free.pop() {
            Some(i) => i,
            None => {
                let i = state.slots.len() as u16;
                state.slots.push(Slot {
                    generation: 0,
                    state: SlotState::Free,
                    waker: None,
                    reply: Bytes::new(),
                    on_wire: false,
                    stream_window: None,
                    items: std::collections::VecDeque::new(),
                    spare: Vec::new(),
                    reply_metadata: None,
                });
                i
            }
        };
        let slot = &mut state.slots[index as usize];
        slot.state = SlotState::Waiting;
        slot.on_wire = false;
        let id = (slot.generation as u32) << 16 | index as u32;
        let mut header = Header::new(match metadata {
            Some(_) => Kind::MetaRequest,
            None => Kind::Request,
        });
        header.method = method;
        header.id = id;
        header.budget_ms = budget_ms;
        let start = state.out.len();
        let max = self.max_request as usize;
        let pushed = push_frame(&mut state.out, header, |out| {
            if let Some(metadata) = metadata {
                metadata.encode(out);
            }
            codec::append(request, out)
        });
        // The unpadded payload length, exactly what the server checks against its limit: a
        // request it would refuse fails here, alone, instead of closing the connection.
        let too_long = pushed.is_ok()
            && crate::frame::payload_len(&state.out[start..]).unwrap_or(0) as usize > max;
        if pushed.is_err() || too_long {
            state.out.resize(start, 0);
            free_slot(&mut state, index);
            return Err(match pushed {
                Err(e) => CallError::Encode(e),
                Ok(()) => CallError::Encode(codec::EncodeError {
                    type_name: <Req as crate::Fingerprint>::type_name(),
                    reason: format!("request exceeds the server's {max}-byte frame limit"),
                }),
            });
        }
        if let Some(window) = stream_window {
            // The stream's first credit travels right behind its request.
            state.slots[index as usize].stream_window = Some(window);
            push_credit(&mut state.out, id, window);
        }
        state.queued.push(index);
        if let Some(w) = state.writer.take() {
            w.wake();
        }
        Ok(id)
    }
}

/// Appends a `Credit` frame: stream `id` takes `items` more.
fn push_credit(out: &mut Bytes, id: u32, items: u32) {
    let mut header = Header::new(Kind::Credit);
    header.id = id;
    header.budget_ms = items;
    push_bytes(out, header, &[]);
}

/// Item buffers a slot keeps for reuse (the steady state of a stream allocates nothing).
const SPARE_ITEMS: usize = 64;

fn free_slot(state: &mut State, index: u16) {
    let slot = &mut state.slots[index as usize];
    slot.stream_window = None;
    while let Some(item) = slot.items.pop_front() {
        if slot.spare.len() < SPARE_ITEMS && item.capacity() <= crate::io::SHRINK_ABOVE {
            slot.spare.push(item);
        }
    }
    slot.state = SlotState::Free;
    slot.waker = None;
    slot.generation = slot.generation.wrapping_add(1);
    state.free.push(index);
}

/// A call waiting for its reply. Dropped before the reply arrives, it cancels the call.
struct Pending<'a, F> {
    conn: &'a Conn,
    id: u32,
    on_reply: Option<F>,
}

impl<F> Pending<'_, F> {
    fn poll_reply<R, E>(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, CallError<E>>>
    where
        F: FnOnce(Status, &[u8]) -> R,
    {
        let index = (self.id & 0xffff) as u16;
        let mut state = lock(&self.conn.state);
        let slot = &mut state.slots[index as usize];
        match slot.state {
            SlotState::Done(status) => {
                let Some(on_reply) = self.on_reply.take() else {
                    return Poll::Pending;
                };
                let result = on_reply(status, &slot.reply);
                crate::metadata::deliver_reply(slot.reply_metadata.take());
                if slot.reply.capacity() > crate::io::SHRINK_ABOVE {
                    slot.reply = Bytes::new();
                }
                free_slot(&mut state, index);
                Poll::Ready(Ok(result))
            }
            SlotState::Failed | SlotState::Free => {
                self.on_reply = None;
                let on_wire = slot.on_wire;
                let reason = state
                    .dead
                    .clone()
                    .unwrap_or_else(|| "connection lost".into());
                free_slot(&mut state, index);
                Poll::Ready(Err(if on_wire {
                    CallError::Disconnected(reason)
                } else {
                    CallError::NotSent(format!(
                        "{reason} (before the request was written to the socket)"
                    ))
                }))
            }
            SlotState::Waiting => {
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<F> Drop for Pending<'_, F> {
    fn drop(&mut self) {
        if self.on_reply.is_none() {
            return; // Finished: the slot is already free.
        }
        let index = (self.id & 0xffff) as u16;
        let mut state = lock(&self.conn.state);
        let waiting = state.slots[index as usize].state == SlotState::Waiting;
        free_slot(&mut state, index);
        if waiting && state.dead.is_none() {
            let mut header = Header::new(Kind::Cancel);
            header.id = self.id;
            push_bytes(&mut state.out, header, &[]);
            if let Some(w) = state.writer.take() {
                w.wake();
            }
        }
    }
}

/// A stream call's hold on its connection slot: the client side of [`crate::CallStream`].
pub(crate) struct RemoteStream {
    conn: Arc<Conn>,
    id: u32,
    window: u32,
    /// Items taken since the last credit was granted.
    taken: u32,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The slot and the permit were given back.
    released: bool,
}

impl RemoteStream {
    /// Hands the stream's next frame to `on_frame`, which reads it in place.
    pub(crate) fn poll_frame<R>(
        &mut self,
        cx: &mut Context<'_>,
        on_frame: impl FnOnce(crate::stream::Frame<'_>) -> Option<R>,
    ) -> Poll<Option<R>> {
        use crate::stream::Frame;
        if self.released {
            return Poll::Ready(None);
        }
        // The deadline bounds the whole stream: once it passed, nothing more is taken, even
        // items already here.
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(on_frame(Frame::Failed(CallError::Timeout)));
        }
        let index = (self.id & 0xffff) as usize;
        let mut guard = lock(&self.conn.state);
        let state = &mut *guard;
        let Some(slot) = state.slots.get_mut(index) else {
            return Poll::Ready(on_frame(Frame::Failed(CallError::Disconnected(
                "the stream's slot is gone".into(),
            ))));
        };
        if let Some(item) = slot.items.pop_front() {
            let result = on_frame(Frame::Item(&item));
            if slot.spare.len() < SPARE_ITEMS && item.capacity() <= crate::io::SHRINK_ABOVE {
                slot.spare.push(item);
            }
            self.taken += 1;
            // Credit in batches of half a window: one small frame per many items.
            if self.taken >= self.window.div_ceil(2)
                && slot.state == SlotState::Waiting
                && state.dead.is_none()
            {
                push_credit(&mut state.out, self.id, self.taken);
                self.taken = 0;
                if let Some(w) = state.writer.take() {
                    w.wake();
                }
            }
            return Poll::Ready(result);
        }
        match slot.state {
            SlotState::Done(status) => Poll::Ready(on_frame(Frame::End(status, &slot.reply))),
            SlotState::Failed | SlotState::Free => {
                let reason = state
                    .dead
                    .clone()
                    .unwrap_or_else(|| "connection lost".into());
                let error = if slot.on_wire {
                    CallError::Disconnected(reason)
                } else {
                    CallError::NotSent(format!(
                        "{reason} (before the request was written to the socket)"
                    ))
                };
                Poll::Ready(on_frame(Frame::Failed(error)))
            }
            SlotState::Waiting => {
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Gives the slot and the in-flight permit back; a stream still running is cancelled
    /// (the server drops it, which stops its producer).
    pub(crate) fn finish(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let index = (self.id & 0xffff) as u16;
        let mut state = lock(&self.conn.state);
        if let Some(slot) = state.slots.get(index as usize)
            && slot.generation == (self.id >> 16) as u16
        {
            let waiting = slot.state == SlotState::Waiting;
            free_slot(&mut state, index);
            if waiting && state.dead.is_none() {
                let mut header = Header::new(Kind::Cancel);
                header.id = self.id;
                push_bytes(&mut state.out, header, &[]);
                if let Some(w) = state.writer.take() {
                    w.wake();
                }
            }
        }
        drop(state);
        self.conn.permits.add_permits(1);
    }
}

impl Drop for RemoteStream {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The connection's I/O task: writes queued frames, delivers replies, and on any failure fails
/// every call in flight.
///
/// `teardown` ends the connection however this task ends: by returning, or dropped unfinished
/// — even before its first poll — because its runtime shut down. Nobody reads replies any
/// more then: the calls in flight fail and the next call reconnects. It is an argument, not a
/// local, so that it is dropped with a future never polled (the socket, owned by the task,
/// closes with it).
async fn drive<IO: AsyncRead + AsyncWrite + Unpin>(
    mut teardown: Teardown,
    mut io: IO,
    mut reader: FrameReader,
    mut spin: Spin,
) {
    let conn = teardown.conn.clone();
    let mut sending = Bytes::with_capacity(4096);
    let mut written = 0usize;
    let result: Result<(), String> = std::future::poll_fn(|cx| {
        loop {
            let mut progress = false;
            let mut state = lock(&conn.state);
            // Checked on every turn, also in the middle of a write: a server that does not
            // read must not keep a dropped client's connection open. `close` finds the waker
            // registered below either way.
            if state.closing {
                return Poll::Ready(Ok(()));
            }
            match &state.writer {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.writer = Some(cx.waker().clone()),
            }
            // Take what callers queued (swap buffers: callers never wait for a syscall).
            if written == sending.len() {
                sending.clear();
                written = 0;
                std::mem::swap(&mut state.out, &mut sending);
                // Those requests now go to the socket: from here their outcome is unknown if
                // the connection dies.
                let State { queued, slots, .. } = &mut *state;
                for index in queued.drain(..) {
                    if let Some(slot) = slots.get_mut(index as usize) {
                        slot.on_wire = true;
                    }
                }
                // A buffer that grew for one large frame is given back once that frame is
                // gone: written by the I/O task (below), or here, empty, when it was refused
                // before it was sent.
                if sending.is_empty() && sending.capacity() > crate::io::SHRINK_ABOVE {
                    sending = Bytes::new();
                }
                #[cfg(test)]
                {
                    state.io_task_buffer = sending.capacity();
                }
            }
            drop(state);
            if written < sending.len() {
                match poll_write_out(&mut io, &sending, &mut written, cx) {
                    Poll::Ready(Ok(())) => {
                        progress = true;
                        if sending.capacity() > crate::io::SHRINK_ABOVE {
                            sending = Bytes::new();
                            written = 0;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("write failed: {e}"))),
                    Poll::Pending => {}
                }
            }
            match reader.poll_fill(&mut io, cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err("the server closed the connection".into()));
                }
                Poll::Ready(Ok(_)) => {
                    progress = true;
                    if let Err(e) = deliver(&conn, &mut reader) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("read failed: {e}"))),
                Poll::Pending => {}
            }
            if progress {
                spin.progress();
                continue;
            }
            // Only a reply is worth waiting for: with nothing in flight, park at once.
            if conn.permits.available_permits() < conn.capacity {
                spin.keep_polling(cx);
            }
            return Poll::Pending;
        }
    })
    .await;
    teardown.reason = Some(match result {
        Ok(()) => "the client was dropped".to_string(),
        Err(reason) => {
            tracing::warn!(%reason, "connection lost");
            reason
        }
    });
}

/// Marks a connection dead when its I/O task ends and fails the calls in flight.
struct Teardown {
    conn: Arc<Conn>,
    /// Why the task ended; `None` if it was dropped before it could say (its runtime shut
    /// down).
    reason: Option<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or_else(|| {
            "the connection's I/O task was dropped (its runtime shut down)".to_string()
        });
        let mut state = lock(&self.conn.state);
        state.dead = Some(reason);
        for slot in &mut state.slots {
            if slot.state == SlotState::Waiting {
                slot.state = SlotState::Failed;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
        drop(state);
        self.conn.permits.close();
    }
}

/// Hands every complete reply in the read buffer to its slot.
fn deliver(conn: &Conn, reader: &mut FrameReader) -> Result<(), String> {
    let mut state = lock(&conn.state);
    loop {
        let (header, range) = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("bad frame from the server: {e}")),
        };
        match header.kind {
            Kind::Response | Kind::MetaResponse => {
                let mut range = range;
                let mut reply_metadata = None;
                if header.kind == Kind::MetaResponse {
                    // Checked (bounds included) like any frame; a bad block closes the
                    // connection.
                    let payload = &reader.bytes()[range.clone()];
                    let (metadata, archive) = Metadata::split(payload)
                        .map_err(|e| format!("bad metadata from the server: {e}"))?;
                    range.start = range.end - archive.len();
                    reply_metadata = Some(metadata);
                }
                let index = (header.id & 0xffff) as usize;
                let generation = (header.id >> 16) as u16;
                let Some(slot) = state.slots.get_mut(index) else {
                    return Err(format!("reply to unknown request {}", header.id));
                };
                // A reply to a cancelled call whose slot was reused is simply late: drop it.
                if slot.generation == generation && slot.state == SlotState::Waiting {
                    slot.reply_metadata = reply_metadata;
                    slot.reply.clear();
                    slot.reply.extend_from_slice(&reader.bytes()[range]);
                    slot.state = SlotState::Done(header.status);
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            Kind::StreamItem => {
                let index = (header.id & 0xffff) as usize;
                let generation = (header.id >> 16) as u16;
                let Some(slot) = state.slots.get_mut(index) else {
                    return Err(format!("stream item for unknown request {}", header.id));
                };
                // Items of a cancelled stream whose slot was reused are late: drop them.
                if slot.generation == generation && slot.state == SlotState::Waiting {
                    let Some(window) = slot.stream_window else {
                        return Err(format!(
                            "a stream item for request {}, which is not a stream",
                            header.id
                        ));
                    };
                    // The server sends only against credit: more than a window is a server
                    // out of step, and must not make this client's memory grow.
                    if slot.items.len() >= window as usize {
                        return Err(format!(
                            "the server sent more than the stream's credit of {window} items"
                        ));
                    }
                    let mut item = slot.spare.pop().unwrap_or_default();
                    item.clear();
                    item.extend_from_slice(&reader.bytes()[range]);
                    slot.items.push_back(item);
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            Kind::Goodbye => {
                tracing::info!("the server is shutting down; new calls will reconnect");
                state.goodbye = true;
            }
            other => return Err(format!("unexpected {other} frame from the server")),
        }
    }
}

#[cfg(test)]
mod uid_tests {
    use super::{parse_uids, server_uid_allowed};

    #[test]
    fn a_server_of_another_uid_is_refused_unless_allowed() {
        assert!(server_uid_allowed(1000, 1000, &[]));
        assert!(!server_uid_allowed(1001, 1000, &[]));
        assert!(server_uid_allowed(1001, 1000, &[1001]));
        assert_eq!(parse_uids(" 5, x,,7 "), [5, 7]);
    }
}
