//! The runtime's own end-to-end tests: a hand-written service (no macros exist in this crate)
//! served by a real `Membrane` on a temporary socket and called through a real `Synapse`, plus
//! fake servers and clients speaking the wire by hand. Kept out of `testkit.rs` so that the kit
//! users read is only the kit.

use crate::codec::{self, Bytes, EncodeError};
use crate::endpoint::Endpoint;
use crate::error::CallError;
use crate::error::{ConnectError, ServeError};
use crate::frame::Status;
use crate::membrane::{Membrane, MembraneConfig, Shutdown};
use crate::service::Service;
use crate::service::{DispatchError, Protocol};
use crate::synapse::{Synapse, SynapseConfig};
use crate::testkit::*;

/// A hand-written service (what `#[handler]` generates): 0 = echo, 1 = sleep then reply,
/// 2 = fail with an application error, 3 = panic, 4 = wait until [`GATE`] opens.
struct Echo;

/// Released by the one test that calls method 4.
static GATE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

enum Call {
    Echo(String),
    Slow(u64),
    Fail,
    Panic,
    Gated,
}

impl Protocol for Echo {
    const NAME: &'static str = "echo";
    const FINGERPRINT: u64 = 42;
    const METHODS: &'static [&'static str] = &["echo", "slow", "fail", "panic", "gated"];
}

impl Service for Echo {
    type Call = Call;
    type Reply = Result<String, u32>;

    fn decode(method: u16, payload: &[u8]) -> Result<Call, DispatchError> {
        Ok(match method {
            0 => Call::Echo(codec::from_bytes(payload)?),
            1 => Call::Slow(codec::from_bytes(payload)?),
            2 => Call::Fail,
            3 => Call::Panic,
            4 => Call::Gated,
            m => return Err(DispatchError::UnknownMethod(m)),
        })
    }

    async fn call(&self, call: Call) -> Result<String, u32> {
        match call {
            Call::Echo(s) => Ok(s),
            Call::Slow(ms) => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(format!("slept {ms}"))
            }
            Call::Fail => Err(7),
            Call::Panic => panic!("boom"),
            Call::Gated => {
                GATE.notified().await;
                Ok("released".into())
            }
        }
    }

    fn encode(reply: &Result<String, u32>, out: &mut Bytes) -> Result<Status, EncodeError> {
        match reply {
            Ok(v) => codec::append(v, out).map(|()| Status::Ok),
            Err(e) => codec::append(e, out).map(|()| Status::AppError),
        }
    }
}

/// A raw connection that completed the handshake as an `Echo` client: for tests that
/// speak the wire protocol by hand.
async fn raw_client(endpoint: &Endpoint) -> tokio::net::UnixStream {
    use tokio::io::AsyncWriteExt;
    let Endpoint::Unix(path) = endpoint else {
        unreachable!()
    };
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let hello = crate::handshake::Hello {
        version: crate::handshake::PROTOCOL_VERSION,
        service: "echo".into(),
        fingerprint: 42,
        nonce: Vec::new(),
        max_frame_len: u32::MAX,
    };
    stream.write_all(&hello.to_frame()).await.unwrap();
    let (header, _) = read_frame_from(&mut stream).await;
    assert_eq!(header.kind, crate::frame::Kind::Welcome);
    stream
}

/// Reads one frame by hand: header, then the padded payload.
async fn read_frame_from(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> (crate::frame::Header, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; crate::frame::HEADER_LEN];
    stream.read_exact(&mut head).await.unwrap();
    let header = crate::frame::Header::parse(&head, u32::MAX).unwrap();
    let mut payload = vec![0u8; crate::frame::padded(header.len as usize)];
    stream.read_exact(&mut payload).await.unwrap();
    payload.truncate(header.len as usize);
    (header, payload)
}

/// A frame of `kind` for request `id` carrying `payload`.
fn raw_frame(kind: crate::frame::Kind, id: u32, method: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = crate::frame::Header::new(kind);
    header.id = id;
    header.method = method;
    let mut out = Vec::new();
    crate::frame::encode_frame(&mut out, header, payload);
    out
}

#[tokio::test(flavor = "current_thread")]
async fn empty_or_overlong_tcp_secrets_are_refused_at_bind_and_connect() {
    use crate::auth::Secret;
    let bind = |secret: Secret| {
        let config = MembraneConfig {
            secret: Some(secret),
            ..MembraneConfig::default()
        };
        Membrane::bind(Endpoint::tcp("127.0.0.1:0"), Echo, config)
    };
    for bad in [Secret::new(""), Secret::new(vec![b'x'; 1025])] {
        let err = bind(bad).err().unwrap();
        assert!(matches!(err, ServeError::InvalidSecret(_)), "{err}");
    }
    let membrane = bind(Secret::new("s3cret")).unwrap();
    let endpoint = membrane.endpoint().clone();
    let shutdown = membrane.shutdown_handle();
    let server = tokio::spawn(membrane.serve());
    let connect = |secret: Secret| {
        let config = SynapseConfig {
            secret: Some(secret),
            ..SynapseConfig::default()
        };
        Synapse::connect::<Echo>(endpoint.clone(), config)
    };
    // An empty secret would go out as "no secret"; it is refused before connecting.
    let err = connect(Secret::new("")).await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidSecret(_)), "{err}");
    let err = connect(Secret::new(vec![b'x'; 70_000])).await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidSecret(_)), "{err}");
    let client = connect(Secret::new("s3cret")).await.unwrap();
    let echoed: String = client
        .call::<_, _, u32>(0, &"tcp".to_string())
        .await
        .unwrap();
    assert_eq!(echoed, "tcp");
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_tcp_peer_that_stalls_after_the_challenge_is_closed_at_the_handshake_timeout() {
    use crate::auth::Secret;
    use crate::frame::Kind;
    use crate::handshake::{Hello, NONCE_LEN, PROTOCOL_VERSION};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = MembraneConfig {
        secret: Some(Secret::new("s3cret")),
        handshake_timeout: std::time::Duration::from_millis(200),
        ..MembraneConfig::default()
    };
    let membrane = Membrane::bind(Endpoint::tcp("127.0.0.1:0"), Echo, config).unwrap();
    let Endpoint::Tcp(addr) = membrane.endpoint().clone() else {
        unreachable!()
    };
    let shutdown = membrane.shutdown_handle();
    let server = tokio::spawn(membrane.serve());
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        service: "echo".into(),
        fingerprint: 42,
        nonce: vec![1; NONCE_LEN],
        max_frame_len: u32::MAX,
    };
    stalled.write_all(&hello.to_frame()).await.unwrap();
    let (header, _) = read_frame_from(&mut stalled).await;
    assert_eq!(header.kind, Kind::Challenge);
    // No proof: the deadline of the whole handshake closes the connection (bounded from
    // outside so that a regression fails instead of hanging).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stalled.read_to_end(&mut rest),
    )
    .await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // Others are served meanwhile and after.
    let config = SynapseConfig {
        secret: Some(Secret::new("s3cret")),
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(Endpoint::Tcp(addr), config)
        .await
        .unwrap();
    let echoed: String = client
        .call::<_, _, u32>(0, &"ok".to_string())
        .await
        .unwrap();
    assert_eq!(echoed, "ok");
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_unix_socket_needs_no_challenge_and_its_welcome_carries_no_proof() {
    use crate::frame::Kind;
    use crate::handshake::{Hello, PROTOCOL_VERSION, Welcome};
    use tokio::io::AsyncWriteExt;
    let (_dir, endpoint, shutdown, server) = echo_server(MembraneConfig::default());
    let Endpoint::Unix(path) = &endpoint else {
        unreachable!()
    };
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        service: "echo".into(),
        fingerprint: 42,
        nonce: Vec::new(),
        max_frame_len: u32::MAX,
    };
    stream.write_all(&hello.to_frame()).await.unwrap();
    // One round trip: the first answer is the welcome.
    let (header, payload) = read_frame_from(&mut stream).await;
    assert_eq!(header.kind, Kind::Welcome);
    assert_eq!(Welcome::parse(&payload).unwrap().proof, None);
    drop(stream);
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

/// An `Echo` server with `config` on a fresh temporary socket: its directory (keep it alive
/// for the test), endpoint, shutdown handle and serving task.
fn echo_server(
    config: MembraneConfig,
) -> (
    TempDir,
    Endpoint,
    Shutdown,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let dir = temp_socket_dir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("echo.sock"));
    let membrane = Membrane::bind(endpoint.clone(), Echo, config).unwrap();
    let shutdown = membrane.shutdown_handle();
    let server = tokio::spawn(membrane.serve());
    (dir, endpoint, shutdown, server)
}

/// An `Echo` server and a client that both accept 16 MiB frames (see [`echo_server`]).
async fn large_frame_echo() -> (
    TempDir,
    Synapse,
    Shutdown,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let config = MembraneConfig {
        max_frame_len: 16 << 20,
        ..MembraneConfig::default()
    };
    let (dir, endpoint, shutdown, server) = echo_server(config);
    let client_config = SynapseConfig {
        max_frame_len: 16 << 20,
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(endpoint, client_config)
        .await
        .unwrap();
    (dir, client, shutdown, server)
}

/// A call larger than the socket buffer goes out over many writes. Every byte must arrive
/// in order, and the calls after it (alone, then several at once) must be unaffected.
#[tokio::test(flavor = "current_thread")]
async fn a_call_larger_than_the_socket_buffer_arrives_intact() {
    let (_dir, client, shutdown, server) = large_frame_echo().await;
    // Not one repeated byte: a lost, repeated or reordered chunk changes the echo.
    let big: String = (0..(4u32 << 20) / 8).map(|i| format!("{i:07x},")).collect();
    let echoed: String = client.call::<_, _, u32>(0, &big).await.unwrap();
    assert!(echoed == big, "the echo of the 4 MiB request differs");
    for i in 0..3 {
        let text = format!("after {i}");
        assert_eq!(client.call::<_, String, u32>(0, &text).await.unwrap(), text);
    }
    let small = "small".to_string();
    let both = tokio::join!(
        client.call::<_, String, u32>(0, &big),
        client.call::<_, String, u32>(0, &small),
    );
    assert!(both.0.unwrap() == big, "the concurrent large echo differs");
    assert_eq!(both.1.unwrap(), "small");
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

/// Text of `len` bytes unique to one call, that changes along its length: any lost,
/// repeated, reordered or foreign chunk (bytes of another frame) makes it differ.
fn call_text(task: u64, iter: u64, len: usize) -> String {
    let mut text = String::with_capacity(len + 32);
    let mut pos = 0u64;
    while text.len() < len {
        use std::fmt::Write;
        let _ = write!(text, "{task:x}.{iter:x}.{pos:x};");
        pos += 1;
    }
    text.truncate(len);
    text
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Many tasks on a multi-thread runtime share one connection: calls of mixed sizes (up to
/// several times the socket buffer), some alone in flight, some together, some cancelled
/// right after their frame went out (in whole or in part), some
/// with think time between them. Every reply must be exactly its own request's echo, and
/// no call may hang (bounded from outside).
async fn lone_and_queued_calls_under_stress(
    endpoint: Endpoint,
    secret: Option<crate::auth::Secret>,
) {
    use std::time::Duration;
    let config = SynapseConfig {
        max_frame_len: 16 << 20,
        secret,
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(endpoint, config).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..6u64 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut rng = (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut answered = 0u32;
            for iter in 0..50u64 {
                let r = xorshift(&mut rng);
                let len = match r % 32 {
                    0 => (1 << 20) + (r >> 40) as usize % 70_000,
                    1..=3 => 250_000 + (r >> 40) as usize % 100_000,
                    4..=9 => 10_000 + (r >> 40) as usize % 30_000,
                    _ => (r >> 40) as usize % 300,
                };
                let text = call_text(task, iter, len);
                let call = client.call::<_, String, u32>(0, &text);
                if (r >> 8).is_multiple_of(6) {
                    // Cancelled once its frame is submitted (written directly, in part,
                    // or queued): the `Cancel` must follow it, and the slot's next user
                    // must not get this call's reply.
                    let mut call = std::pin::pin!(call);
                    if let std::task::Poll::Ready(echoed) = futures::poll!(call.as_mut()) {
                        assert!(echoed.unwrap() == text, "task {task} call {iter}");
                    }
                } else {
                    let echoed = call.await.unwrap();
                    assert!(
                        echoed == text,
                        "task {task} call {iter}: an echo of {} bytes for {} sent",
                        echoed.len(),
                        text.len()
                    );
                    answered += 1;
                }
                match (r >> 16) % 4 {
                    // Think time: the others drain, the next call is often alone.
                    0 => tokio::time::sleep(Duration::from_micros((r >> 20) % 2_000)).await,
                    1 => tokio::task::yield_now().await,
                    _ => {}
                }
            }
            answered
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut answered = 0;
        while let Some(done) = tasks.join_next().await {
            answered += done.unwrap();
        }
        answered
    })
    .await
    .expect("a call hung");
    assert!(all > 100, "{all} calls answered");
    // The connection is still sound afterwards: one lone call, then many together.
    let text = call_text(99, 0, 100_000);
    assert!(client.call::<_, String, u32>(0, &text).await.unwrap() == text);
    let calls = (0..64u64).map(|i| {
        let client = client.clone();
        async move {
            (
                i,
                client
                    .call::<_, String, u32>(0, &call_text(98, i, 700))
                    .await,
            )
        }
    });
    for (i, r) in futures::future::join_all(calls).await {
        assert!(r.unwrap() == call_text(98, i, 700));
    }
}

/// A large call cancelled once part of its frame is on the wire leaves the rest (and its
/// `Cancel`) to the I/O task; the call after it must queue behind that frame, and the
/// server (then over its output high-water mark) must still answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_a_cancelled_large_call_is_answered() {
    let (_dir, client, shutdown, server) = large_frame_echo().await;
    // Whether a round meets the I/O task still writing depends on the scheduler: many
    // rounds make it likely (it is not asserted, so the test cannot fail for lack of it).
    for round in 0..40 {
        // Unique per round: a stale reply (to an earlier round's call) would differ.
        let big = call_text(1, round, 2 << 20);
        {
            let mut call = std::pin::pin!(client.call::<_, String, u32>(0, &big));
            // A thread preempted right after submitting can find the reply already in.
            if let std::task::Poll::Ready(echoed) = futures::poll!(call.as_mut()) {
                assert!(
                    echoed.unwrap() == big,
                    "round {round}: not this round's echo"
                );
            }
        }
        // The I/O task takes the rest of the cancelled frame and the cancel, and writes
        // until the socket is full.
        tokio::task::yield_now().await;
        let text = format!("after a cancelled call {round}");
        let echoed = client
            .with_timeout(Some(std::time::Duration::from_secs(20)))
            .call::<_, String, u32>(0, &text)
            .await;
        assert_eq!(echoed.unwrap(), text);
    }
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_queued_calls_under_stress_over_a_unix_socket() {
    let config = MembraneConfig {
        max_frame_len: 16 << 20,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    lone_and_queued_calls_under_stress(endpoint, None).await;
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_queued_calls_under_stress_over_tcp() {
    use crate::auth::Secret;
    let config = MembraneConfig {
        max_frame_len: 16 << 20,
        secret: Some(Secret::new("stress")),
        ..MembraneConfig::default()
    };
    let membrane = Membrane::bind(Endpoint::tcp("127.0.0.1:0"), Echo, config).unwrap();
    let endpoint = membrane.endpoint().clone();
    let shutdown = membrane.shutdown_handle();
    let server = tokio::spawn(membrane.serve());
    lone_and_queued_calls_under_stress(endpoint, Some(Secret::new("stress"))).await;
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fake `echo` server's start: accepts one client on `listener`, reads its hello and
/// welcomes it (fingerprint 42, no proof: a Unix socket) with `max_frame_len`.
fn accept_and_welcome(
    listener: &std::os::unix::net::UnixListener,
    max_frame_len: u32,
) -> std::os::unix::net::UnixStream {
    use crate::frame::decode;
    use crate::handshake::{PROTOCOL_VERSION, Welcome};
    use std::io::{Read, Write};
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while decode(&seen, 4096).unwrap().is_none() {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the client hung up before its hello");
        seen.extend_from_slice(&buf[..n]);
    }
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        fingerprint: 42,
        max_frame_len,
        max_in_flight: 16,
        proof: None,
    };
    stream.write_all(&welcome.to_frame()).unwrap();
    stream
}

/// A client whose runtime shut down (its I/O task dropped with it) must not keep the
/// connection's socket open: the server has to see the connection end, although the
/// `Synapse` itself lives on.
#[test]
fn a_client_whose_runtime_shut_down_closes_its_socket() {
    use std::io::Read;
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A fake server: welcomes the client, then reports whether the client hung up.
    let server = std::thread::spawn(move || {
        let mut stream = accept_and_welcome(&listener, 1 << 20);
        let mut buf = [0u8; 4096];
        // Until end of stream (the client closed) or the timeout (it never did).
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    });
    let runtime = current_thread_runtime();
    let client = runtime
        .block_on(Synapse::connect_raw(
            Endpoint::Unix(path),
            "echo",
            42,
            SynapseConfig::default(),
        ))
        .unwrap();
    drop(runtime);
    let closed = server.join().unwrap();
    assert!(
        closed.is_ok(),
        "the socket stayed open after the client's runtime shut down: {closed:?}"
    );
    drop(client);
}

/// A fake `echo` server on a fresh socket that welcomes one client and then never reads:
/// the thread returns whether the client hung up (seen without reading, `POLLRDHUP`)
/// within 20 s.
#[expect(
    unsafe_code,
    reason = "poll(POLLRDHUP): a hang-up seen without reading"
)]
fn silent_server() -> (TempDir, Endpoint, std::thread::JoinHandle<bool>) {
    use std::os::fd::AsRawFd;
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let stream = accept_and_welcome(&listener, 16 << 20);
        let mut poll = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a socket this thread owns, for the call's duration.
        let n = unsafe { libc::poll(&mut poll, 1, 20_000) };
        n == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
    });
    (dir, Endpoint::Unix(path), server)
}

/// A client dropped while its I/O task is stuck writing a large frame to a server that
/// does not read must still close its connection: the task cannot finish that write,
/// so it has to notice the drop without finishing it.
#[tokio::test(flavor = "current_thread")]
async fn a_client_dropped_in_the_middle_of_a_write_closes_its_socket() {
    let (_dir, endpoint, server) = silent_server();
    let config = SynapseConfig {
        max_frame_len: 16 << 20,
        ..SynapseConfig::default()
    };
    let client = Synapse::connect_raw(endpoint, "echo", 42, config)
        .await
        .unwrap();
    let big = "x".repeat(4 << 20);
    {
        let mut call = std::pin::pin!(client.call::<_, String, u32>(0, &big));
        assert!(futures::poll!(call.as_mut()).is_pending());
        // The I/O task takes the rest of the frame and waits for room.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    drop(client);
    let hung_up = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(hung_up, "the dropped client's socket stayed open");
}

/// A client whose runtime shut down is used from another runtime: its connection died
/// with the first runtime, so the next call reconnects instead of waiting forever for a
/// reply nobody reads.
#[test]
fn a_client_used_after_its_runtime_shut_down_reconnects() {
    let (endpoint_tx, endpoint_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let (_dir, endpoint, shutdown, server) = echo_server(MembraneConfig::default());
            endpoint_tx.send(endpoint).unwrap();
            let _ = stop_rx.await;
            shutdown.shutdown();
            server.await.unwrap().unwrap();
        })
    });
    let endpoint = endpoint_rx.recv().unwrap();
    let first = current_thread_runtime();
    let client = first.block_on(async {
        let client = Synapse::connect::<Echo>(endpoint, SynapseConfig::default())
            .await
            .unwrap();
        let echoed: String = client
            .call::<_, _, u32>(0, &"first".to_string())
            .await
            .unwrap();
        assert_eq!(echoed, "first");
        client
    });
    drop(first);
    // Bounded, so that a call that waits forever fails the test instead of hanging it.
    let second = current_thread_runtime();
    let echoed = second.block_on(
        client
            .with_timeout(Some(std::time::Duration::from_secs(20)))
            .call::<_, String, u32>(0, &"second".to_string()),
    );
    assert_eq!(echoed.unwrap(), "second");
    drop(client);
    drop(second);
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}

/// A request that grew the client's write buffer far beyond the shrink threshold (here
/// one refused as too long) must not pin that memory for the connection's life, also
/// when every later call is alone in flight.
#[tokio::test(flavor = "current_thread")]
async fn a_large_request_does_not_pin_the_write_buffer_of_lone_calls() {
    let config = MembraneConfig {
        max_frame_len: 1 << 20,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    let client = Synapse::connect::<Echo>(endpoint, SynapseConfig::default())
        .await
        .unwrap();
    let big = "x".repeat(4 << 20);
    let err = client.call::<_, String, u32>(0, &big).await.unwrap_err();
    assert!(matches!(err, CallError::Encode(_)), "{err:?}");
    for i in 0..4 {
        let text = format!("lone {i}");
        assert_eq!(client.call::<_, String, u32>(0, &text).await.unwrap(), text);
    }
    let retained = client.write_buffer_capacity();
    assert!(
        retained <= 2 * crate::io::SHRINK_ABOVE,
        "{retained} bytes of write buffer kept after a 4 MiB request"
    );
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_just_over_the_limit_fails_alone() {
    let config = MembraneConfig {
        max_frame_len: 1024,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    let client = Synapse::connect::<Echo>(endpoint, SynapseConfig::default())
        .await
        .unwrap();
    // A payload a few bytes over the limit, still inside the last 16-byte padding block.
    let text = (1000..1100)
        .map(|n| "x".repeat(n))
        .find(|s| (1025..=1039).contains(&codec::to_bytes(s).unwrap().len()))
        .unwrap();
    let err = client.call::<_, String, u32>(0, &text).await.unwrap_err();
    assert!(matches!(err, CallError::Encode(_)), "{err:?}");
    // The connection (and the calls on it) lived on.
    let fits = "x".repeat(900);
    let echoed: String = client.call::<_, _, u32>(0, &fits).await.unwrap();
    assert_eq!(echoed, fits);
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn bind_never_deletes_a_file_that_is_not_a_socket() {
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("echo.sock");
    std::fs::write(&path, b"precious").unwrap();
    let err = Membrane::bind_unix(&path, Echo).err().unwrap();
    assert!(matches!(&err, ServeError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_never_reads_is_pushed_back() {
    use crate::frame::Kind;
    use tokio::io::AsyncWriteExt;
    let cell = TestCell::start(Echo).unwrap();
    let mut stream = raw_client(cell.endpoint()).await;
    // 4 MiB of requests for an unknown method, each answered with a ~3x larger error, and
    // not one reply read. A server that kept reading would buffer ~12 MiB of replies and
    // accept all of it; ours stops reading past its high-water mark (1 MiB of replies),
    // so the write can never complete.
    let one = raw_frame(Kind::Request, 1, 9, &[]);
    let flood: Vec<u8> = one.iter().copied().cycle().take(4 << 20).collect();
    let sent =
        tokio::time::timeout(std::time::Duration::from_secs(3), stream.write_all(&flood)).await;
    assert!(
        sent.is_err(),
        "the server read 4 MiB of requests it could not answer"
    );
    drop(stream);
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_goodbye_read_with_the_welcome_is_not_missed() {
    use crate::frame::{Header, Kind};
    use crate::handshake::{PROTOCOL_VERSION, Welcome};
    use tokio::io::AsyncWriteExt;
    // A hand-written server: the first connection gets its welcome and a goodbye in one
    // write, then silence; the second one answers a call.
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        fingerprint: 42,
        max_frame_len: 1 << 20,
        max_in_flight: 16,
        proof: None,
    }
    .to_frame();
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        read_frame_from(&mut first).await;
        let mut both = welcome.clone();
        let mut goodbye = Vec::new();
        crate::frame::encode_frame(&mut goodbye, Header::new(Kind::Goodbye), &[]);
        both.extend(goodbye);
        first.write_all(&both).await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        read_frame_from(&mut second).await;
        second.write_all(&welcome).await.unwrap();
        let (request, _) = read_frame_from(&mut second).await;
        let payload = codec::to_bytes(&"fresh".to_string()).unwrap();
        second
            .write_all(&raw_frame(Kind::Response, request.id, 0, &payload))
            .await
            .unwrap();
        (first, second)
    });
    let client = Synapse::connect::<Echo>(Endpoint::Unix(path), SynapseConfig::default())
        .await
        .unwrap();
    // The goodbye is known already: this call goes over a new connection. Bounded, so a
    // call sent to the silent first connection fails the test instead of hanging it.
    let fresh: String = client
        .with_timeout(Some(std::time::Duration::from_secs(20)))
        .call::<_, _, u32>(0, &"hello".to_string())
        .await
        .unwrap();
    assert_eq!(fresh, "fresh");
    drop(server.await.unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_deadline_covers_reconnecting() {
    use crate::frame::Kind;
    use crate::handshake::{PROTOCOL_VERSION, Welcome};
    use tokio::io::AsyncWriteExt;
    // A hand-written server: the first connection is welcomed and closed at the first
    // request; the second is accepted and never answered (a server stuck at start-up).
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        read_frame_from(&mut first).await;
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            fingerprint: 42,
            max_frame_len: 1 << 20,
            max_in_flight: 16,
            proof: None,
        };
        first.write_all(&welcome.to_frame()).await.unwrap();
        let (request, _) = read_frame_from(&mut first).await;
        assert_eq!(request.kind, Kind::Request);
        drop(first);
        let (second, _) = listener.accept().await.unwrap();
        // Hold it open, silent, until the test ends.
        std::future::pending::<()>().await;
        drop(second);
    });
    let config = SynapseConfig {
        // Far longer than any test: only the call's own deadline can end the wait.
        connect_timeout: std::time::Duration::from_secs(3600),
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(Endpoint::Unix(path), config)
        .await
        .unwrap();
    let err = client
        .call::<_, String, u32>(0, &"lost".to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err:?}");
    // The next call reconnects, and its 100 ms deadline covers that. Bounded (20 s) from
    // outside so a regression fails instead of hanging.
    let hurried = client.with_timeout(Some(std::time::Duration::from_millis(100)));
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        hurried.call::<_, String, u32>(0, &"again".to_string()),
    )
    .await
    .expect("the call waited for the connect timeout, past its own deadline");
    // Its deadline passed while it waited to reconnect: the request was never sent.
    assert!(matches!(outcome, Err(CallError::NotSent(_))), "{outcome:?}");
    server.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_drained_connection_is_half_closed_and_still_read() {
    use crate::frame::Kind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cell = TestCell::start(Echo).unwrap();
    let mut stream = raw_client(cell.endpoint()).await;
    let stopping = tokio::spawn(cell.stop());
    let (goodbye, _) = read_frame_from(&mut stream).await;
    assert_eq!(goodbye.kind, Kind::Goodbye);
    // Nothing in flight: the server shuts its write half down (we read end of stream)...
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // ...but keeps reading, so data we sent meanwhile is not met with a reset (on TCP an
    // RST can destroy replies not yet read). A fully closed socket would fail this write.
    let payload = codec::to_bytes(&"late".to_string()).unwrap();
    stream
        .write_all(&raw_frame(Kind::Request, 1, 0, &payload))
        .await
        .expect("the server closed its socket instead of only its write half");
    // Our close ends the connection, and with it the server.
    drop(stream);
    stopping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let config = MembraneConfig {
        max_connections: 1,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    let first = Synapse::connect::<Echo>(endpoint.clone(), SynapseConfig::default())
        .await
        .unwrap();
    // The only slot is taken: a second peer is not even accepted, so its handshake can
    // only time out.
    let impatient = SynapseConfig {
        connect_timeout: std::time::Duration::from_millis(300),
        ..SynapseConfig::default()
    };
    let err = Synapse::connect::<Echo>(endpoint.clone(), impatient)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Timeout), "{err}");
    // Once the first connection closes, the next peer is served.
    drop(first);
    let second = Synapse::connect::<Echo>(endpoint, SynapseConfig::default())
        .await
        .unwrap();
    let echoed: String = second
        .call::<_, _, u32>(0, &"in".to_string())
        .await
        .unwrap();
    assert_eq!(echoed, "in");
    drop(second);
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_reply_over_the_clients_limit_fails_only_its_call() {
    let cell = TestCell::start(Echo).unwrap();
    let config = SynapseConfig {
        max_frame_len: 4096,
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(cell.endpoint().clone(), config)
        .await
        .unwrap();
    // The request fits the server's limit; the echoed reply exceeds the client's. The
    // server says so instead of sending a frame the client would drop the connection for.
    let slow = client.call::<_, String, u32>(1, &200u64);
    let text = "x".repeat(5000);
    let big = client.call::<_, String, u32>(0, &text);
    let (slow, big) = tokio::join!(slow, big);
    let err = big.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Remote { status: Status::EncodeFailed, message }
                if message.contains("client's 4096-byte frame limit")
        ),
        "{err:?}"
    );
    // The other call on the connection, and the connection, lived on.
    assert_eq!(slow.unwrap(), "slept 200");
    let echoed: String = client
        .call::<_, _, u32>(0, &"ok".to_string())
        .await
        .unwrap();
    assert_eq!(echoed, "ok");
    drop(client);
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_late_cancel_does_not_cancel_a_later_call_with_the_same_id() {
    use crate::frame::Kind;
    use tokio::io::AsyncWriteExt;
    let cell = TestCell::start(Echo).unwrap();
    let mut stream = raw_client(cell.endpoint()).await;
    // A cancel that crossed its call's reply on the wire, then a new call reusing the id
    // (what a client does once the slot's generation wraps around).
    let payload = codec::to_bytes(&"again".to_string()).unwrap();
    let mut frames = raw_frame(Kind::Cancel, 5, 0, &[]);
    frames.extend(raw_frame(Kind::Request, 5, 0, &payload));
    stream.write_all(&frames).await.unwrap();
    // Bounded, so a regression fails instead of hanging.
    let (header, reply) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        read_frame_from(&mut stream),
    )
    .await
    .expect("the call with a reused id was never answered");
    assert_eq!(
        (header.kind, header.id, header.status),
        (Kind::Response, 5, Status::Ok)
    );
    assert_eq!(codec::from_bytes::<String>(&reply).unwrap(), "again");
    // Closed first: a drained server waits (up to its drain timeout) for clients to close.
    drop(stream);
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn calls_errors_panics_and_out_of_order_replies() {
    let cell = TestCell::start(Echo).unwrap();
    let client = cell.synapse::<Echo>().await.unwrap();
    let got: String = client
        .call::<_, _, u32>(0, &"hi".to_string())
        .await
        .unwrap();
    assert_eq!(got, "hi");
    let err = client.call::<_, String, u32>(2, &()).await.unwrap_err();
    assert!(matches!(err, CallError::App(7)), "{err:?}");
    let err = client.call::<_, String, u32>(3, &()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Panicked(m) if m == "boom"),
        "{err:?}"
    );
    let err = client.call::<_, String, u32>(9, &()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Remote {
                status: Status::UnknownMethod,
                ..
            }
        ),
        "{err:?}"
    );
    // A slow call and a fast one on the same connection: the fast reply overtakes the
    // slow one, which cannot finish before the fast one has returned (it waits for the
    // gate, opened only then) — no timing involved.
    let fast_text = "fast".to_string();
    let mut slow = std::pin::pin!(client.call::<_, String, u32>(4, &()));
    tokio::select! {
        biased;
        _ = &mut slow => panic!("the gated call finished before the gate opened"),
        fast = client.call::<_, String, u32>(0, &fast_text) => {
            assert_eq!(fast.unwrap(), "fast");
        }
    }
    GATE.notify_one();
    assert_eq!(slow.await.unwrap(), "released");
    // Large messages grow the buffers (beyond the shrink threshold) and still round-trip.
    let big = "x".repeat(3 << 20);
    let echoed: String = client.call::<_, _, u32>(0, &big).await.unwrap();
    assert_eq!(echoed.len(), big.len());
    // Many in flight at once.
    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move { client.call::<_, String, u32>(0, &format!("m{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), format!("m{i}"));
    }
    // A deadline shorter than the handler: timeout, and the connection still works.
    let hurried = client.with_timeout(Some(std::time::Duration::from_millis(50)));
    let err = hurried
        .call::<_, String, u32>(1, &2_000u64)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert_eq!(
        client
            .call::<_, String, u32>(0, &"after".to_string())
            .await
            .unwrap(),
        "after"
    );
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_client_picks_replies_up_without_parking() {
    // Both sides busy-poll before parking, on this test's one thread. While the client's
    // I/O task spins (yields to the runtime instead of parking), the runtime runs the
    // server's task, which answers; the client's next spin round must find the reply
    // without having parked: counted per thread by `io::CAUGHT_SPINNING`. Nothing here
    // depends on timing: on one `current_thread` runtime the reply is written before the
    // yielded task is polled again. A slower call outlasts the budget, so both tasks park
    // and must still be woken; many at once and a deadline behave as without spinning.
    let spin = std::time::Duration::from_micros(200);
    let config = MembraneConfig {
        spin,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    let config = SynapseConfig {
        spin,
        ..SynapseConfig::default()
    };
    let client = Synapse::connect::<Echo>(endpoint, config).await.unwrap();
    let caught_before = crate::io::CAUGHT_SPINNING.get();
    for i in 0..100 {
        // A loaded machine may make this thread back off from spinning (tested in `io`);
        // here each call starts without a back-off, so the count does not depend on load.
        crate::io::reset_backoff();
        let got: String = client.call::<_, _, u32>(0, &format!("s{i}")).await.unwrap();
        assert_eq!(got, format!("s{i}"));
    }
    let caught = crate::io::CAUGHT_SPINNING.get() - caught_before;
    // Each call ends one idle stretch of the client (and one of the server, between
    // calls, may be caught too); with spinning broken or off this stays 0.
    assert!(
        caught >= 50,
        "only {caught} of 100 replies were picked up while spinning"
    );
    let slow: String = client.call::<_, _, u32>(1, &30u64).await.unwrap();
    assert_eq!(slow, "slept 30");
    let calls = (0..100).map(|i| {
        let client = client.clone();
        async move { client.call::<_, String, u32>(0, &format!("m{i}")).await }
    });
    for (i, r) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap(), format!("m{i}"));
    }
    let hurried = client.with_timeout(Some(std::time::Duration::from_millis(20)));
    let err = hurried
        .call::<_, String, u32>(1, &2_000u64)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn in_flight_calls_are_bounded() {
    let cell = TestCell::start(Echo).unwrap();
    let config = SynapseConfig {
        max_in_flight: 1,
        ..SynapseConfig::default()
    };
    let limited = Synapse::connect::<Echo>(cell.endpoint().clone(), config)
        .await
        .unwrap();
    let fast_text = "fast".to_string();
    let mut slow = std::pin::pin!(limited.call::<_, String, u32>(1, &100u64));
    // The slow call takes the only slot; the fast one must wait for it to finish.
    tokio::select! {
        biased;
        slow = &mut slow => assert_eq!(slow.unwrap(), "slept 100"),
        _ = limited.call::<_, String, u32>(0, &fast_text) => {
            panic!("a second call ran although max_in_flight is 1")
        }
    }
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn cancels_reach_a_server_at_capacity() {
    // A server that runs one call per connection, busy with a call that only ends when
    // cancelled: dropping it sends `Cancel`, and the next call must still run.
    let config = MembraneConfig {
        max_in_flight: 1,
        ..MembraneConfig::default()
    };
    let (_dir, endpoint, shutdown, server) = echo_server(config);
    let client = Synapse::connect::<Echo>(endpoint, SynapseConfig::default())
        .await
        .unwrap();
    // Dropped without a deadline (a deadline would end it on the server by itself): only
    // the `Cancel` frame can free the server's single slot.
    tokio::select! {
        _ = client.call::<_, String, u32>(1, &3_600_000u64) => panic!("an hour passed"),
        _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
    }
    // Bounded, so a server that never saw the cancel fails this test instead of hanging it.
    let echoed: String = client
        .with_timeout(Some(std::time::Duration::from_secs(20)))
        .call::<_, _, u32>(0, &"next".to_string())
        .await
        .unwrap();
    assert_eq!(echoed, "next");
    shutdown.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn fingerprint_mismatch_and_second_server_are_clear_errors() {
    let cell = TestCell::start(Echo).unwrap();
    let err = Synapse::connect_raw(
        cell.endpoint().clone(),
        "echo",
        43,
        SynapseConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::FingerprintMismatch { service, .. } if service == "echo"),
        "{err}"
    );
    let err = Synapse::connect_raw(
        cell.endpoint().clone(),
        "other",
        42,
        SynapseConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Rejected(m) if m.contains("serves `echo`")),
        "{err}"
    );
    let Endpoint::Unix(path) = cell.endpoint().clone() else {
        unreachable!()
    };
    let err = Membrane::bind_unix(&path, Echo).err().unwrap();
    assert!(matches!(err, ServeError::AlreadyServing { .. }), "{err}");
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn graceful_stop_removes_the_socket_and_a_new_server_binds() {
    // A directory of the test's own: a `TestCell` removes its directory when stopped,
    // which would hide whether the server removed its socket.
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("echo.sock");
    for round in 0..2 {
        let membrane = Membrane::bind_unix(&path, Echo).unwrap();
        let shutdown = membrane.shutdown_handle();
        let server = tokio::spawn(membrane.serve());
        let client = Synapse::connect::<Echo>(Endpoint::unix(&path), SynapseConfig::default())
            .await
            .unwrap();
        let text = format!("round {round}");
        let echoed: String = client.call::<_, _, u32>(0, &text).await.unwrap();
        assert_eq!(echoed, text);
        shutdown.shutdown();
        server.await.unwrap().unwrap();
        assert!(
            !path.exists(),
            "round {round}: the socket outlived its server"
        );
    }
}

/// A hand-written streaming service: method 0 streams `0..n` (what `#[handler]` generates for
/// `async fn count(&self, n: u64) -> Streaming<u64>`).
struct Counter;

impl Protocol for Counter {
    const NAME: &'static str = "counter";
    const FINGERPRINT: u64 = 7;
    const METHODS: &'static [&'static str] = &["count"];
}

impl Service for Counter {
    type Call = u64;
    type Reply = crate::Streaming<u64>;

    fn decode(method: u16, payload: &[u8]) -> Result<u64, DispatchError> {
        match method {
            0 => Ok(codec::from_bytes(payload)?),
            m => Err(DispatchError::UnknownMethod(m)),
        }
    }

    async fn call(&self, n: u64) -> crate::Streaming<u64> {
        crate::Streaming::iter(0..n)
    }

    fn encode(_: &Self::Reply, _: &mut Bytes) -> Result<Status, EncodeError> {
        Err(EncodeError {
            type_name: "Streaming<u64>".into(),
            reason: "sent item by item".into(),
        })
    }

    fn into_stream(reply: Self::Reply) -> Result<crate::stream::BoxedStream, Self::Reply> {
        Ok(Box::new(reply))
    }
}

/// Any window, any stream length, any consumer rhythm (yielding to the runtime between
/// items, or not): the client receives exactly `0..n`, in order, then the end.
#[test]
fn streams_deliver_every_item_in_order_for_any_window_and_consumer() {
    use futures::StreamExt;
    use proptest::prelude::*;
    let runtime = current_thread_runtime();
    let cell = runtime
        .block_on(async { TestCell::start(Counter) })
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strategy = (
        1u32..20,
        0u64..300,
        proptest::collection::vec(0u8..4, 1..16),
    );
    runner
        .run(&strategy, |(window, n, rhythm)| {
            let got = runtime.block_on(async {
                let config = SynapseConfig {
                    stream_window: window,
                    ..SynapseConfig::default()
                };
                let client = Synapse::connect::<Counter>(cell.endpoint().clone(), config)
                    .await
                    .unwrap();
                let mut stream = client
                    .call_stream_infallible::<u64, u64>(0, &n)
                    .await
                    .unwrap();
                let mut got = Vec::new();
                while let Some(item) = stream.next().await {
                    got.push(item.unwrap());
                    for _ in 0..rhythm[got.len() % rhythm.len()] {
                        tokio::task::yield_now().await;
                    }
                }
                got
            });
            prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
            Ok(())
        })
        .unwrap();
}

/// A server that sends more items than the client's credit is out of step: the client drops
/// the connection (its memory does not grow past its window), and the stream reports it.
#[test]
fn a_server_sending_past_the_credit_is_cut_off() {
    use crate::frame::{Header, Kind, encode_frame};
    use futures::StreamExt;
    use std::io::Write;
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("flood.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    const WINDOW: u32 = 4;
    let server = std::thread::spawn(move || {
        let mut stream = accept_and_welcome(&listener, 1 << 20);
        // Wait for the request (its id is 0: slot 0, generation 0), then flood it with items.
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while crate::frame::decode(&seen, 4096).unwrap().is_none() {
            let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
            assert!(n > 0, "the client hung up before its request");
            seen.extend_from_slice(&buf[..n]);
        }
        let item = codec::to_bytes(&7u64).unwrap();
        let mut wire = Vec::new();
        for _ in 0..WINDOW * 4 {
            let mut header = Header::new(Kind::StreamItem);
            header.id = 0;
            encode_frame(&mut wire, header, &item);
        }
        let _ = stream.write_all(&wire);
        // Keep the socket open until the client hangs up.
        let mut buf = [0u8; 256];
        while matches!(std::io::Read::read(&mut stream, &mut buf), Ok(n) if n > 0) {}
    });
    let runtime = current_thread_runtime();
    let (items, failure) = runtime.block_on(async {
        let config = SynapseConfig {
            stream_window: WINDOW,
            ..SynapseConfig::default()
        };
        let client = Synapse::connect_raw(Endpoint::Unix(path), "echo", 42, config)
            .await
            .unwrap();
        let mut stream = client
            .call_stream_infallible::<u64, u64>(0, &1)
            .await
            .unwrap();
        let mut items = 0u32;
        loop {
            match stream.next().await {
                Some(Ok(_)) => items += 1,
                Some(Err(e)) => return (items, e.to_string()),
                None => return (items, "ended cleanly".into()),
            }
        }
    });
    assert!(items <= WINDOW, "{items} items for a window of {WINDOW}");
    assert!(failure.contains("credit"), "{failure}");
    server.join().unwrap();
}

/// A stream through handler layers (tower's shapes) and an admission check: the layers see the
/// handler return its stream, which then streams as ever; a refusal ends the stream at once.
#[test]
fn streams_pass_through_layers_and_refusals_end_them() {
    use futures::StreamExt;
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let stack = tower::ServiceBuilder::new()
            .layer(tower::limit::ConcurrencyLimitLayer::new(4))
            .into_inner();
        let layered = crate::layer::Layered::new(Counter, stack);
        let cell = TestCell::start(layered).unwrap();
        let client = Synapse::connect::<Counter>(cell.endpoint().clone(), SynapseConfig::default())
            .await
            .unwrap();
        let items: Vec<u64> = client
            .call_stream_infallible::<u64, u64>(0, &50)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, (0..50).collect::<Vec<_>>());

        let refusing = crate::Admission::new(Counter, |_: &crate::CallContext| {
            Err("no streams for you".to_string())
        });
        let cell = TestCell::start(refusing).unwrap();
        let client = Synapse::connect::<Counter>(cell.endpoint().clone(), SynapseConfig::default())
            .await
            .unwrap();
        let mut stream = client
            .call_stream_infallible::<u64, u64>(0, &50)
            .await
            .unwrap();
        let first = stream.next().await;
        assert!(
            matches!(&first, Some(Err(CallError::Refused(reason))) if reason == "no streams for you"),
            "{first:?}"
        );
        assert!(stream.next().await.is_none());
    });
}
