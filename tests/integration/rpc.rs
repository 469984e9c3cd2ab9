//! Typed RPC between real processes: the `rpc-probe-server` binary (built by cargo for this
//! package) serves the `probe` protocol; these tests call it over Unix sockets and
//! authenticated TCP, break it with bad frames, panics, SIGKILL and SIGTERM, and check that
//! errors are clear and the server keeps serving.

// Helpers below are not `#[test]` functions, so clippy's test exemption does not reach them.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

#[path = "../rpc-bin/probe.rs"]
pub(super) mod probe;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_runtime::frame::{Header, Kind, encode_frame};
use cell_runtime::handshake::{Hello, NONCE_LEN, PROOF_LEN, PROTOCOL_VERSION, Proof};
use cell_sdk::{
    CallError, ConnectError, Endpoint, Protocol, Secret, SynapseConfig, testkit::TempDir,
};
use probe::{ProbeClient, ProbeError};

/// A probe server process. Killed when dropped.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) endpoint: Endpoint,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub(super) fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let (child, ready, log) = spawn_server(args, env);
        let line = ready
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        let endpoint = match line.trim().strip_prefix("ready ") {
            Some(rest) if rest.starts_with("unix:") => Endpoint::unix(&rest[5..]),
            Some(rest) if rest.starts_with("tcp:") => Endpoint::tcp(&rest[4..]),
            _ => panic!("unexpected first line {line:?}"),
        };
        Server {
            child,
            endpoint,
            log,
        }
    }

    pub(super) fn unix(dir: &TempDir) -> Server {
        let socket = dir.path().join("probe.sock");
        Server::start(&["--socket", socket.to_str().unwrap()], &[])
    }

    /// Waits (up to 10 s) until the server's log contains `needle`.
    pub(super) fn wait_log(&self, needle: &str) -> bool {
        for _ in 0..200 {
            if self.log.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub(super) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    #[expect(
        unsafe_code,
        reason = "kill(2) with any signal; std sends only SIGKILL"
    )]
    pub(super) fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Spawned = (Child, std::sync::mpsc::Receiver<String>, Arc<Mutex<String>>);

fn spawn_server(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-probe-server"))
        .args(args)
        .env_remove("CELL_SECRET")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    (child, rx, log)
}

async fn client(endpoint: &Endpoint) -> ProbeClient {
    ProbeClient::connect_to(endpoint.clone()).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn unix_socket_calls_values_and_application_errors() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    assert_eq!(probe.echo("hello".into()).await.unwrap(), "hello");
    assert_eq!(probe.add(40, 2).await.unwrap(), 42);
    assert_eq!(probe.check(5).await.unwrap(), 5);
    match probe.check(-3).await {
        Err(CallError::App(ProbeError::Negative(n))) => assert_eq!(n, -3),
        other => panic!("expected the application error, got {other:?}"),
    }
    assert_eq!(probe.pid().await.unwrap(), server.child.id());
}

/// Runs the client binary against `endpoint`; returns its stdout, or panics with its stderr.
pub(super) fn run_client(
    endpoint: &Endpoint,
    env: &[(&str, &str)],
    uid: Option<u32>,
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let (flag, target) = match endpoint {
        Endpoint::Unix(path) => ("--socket", path.to_str().unwrap().to_string()),
        Endpoint::Tcp(addr) => ("--tcp", addr.clone()),
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpc-probe-client"));
    command
        .args([flag, &target, "--calls", "200"])
        .env_remove("CELL_SECRET")
        .envs(env.iter().copied());
    if let Some(uid) = uid {
        command.uid(uid);
    }
    command.output().unwrap()
}

#[test]
fn a_server_binary_and_a_client_binary_talk_over_a_unix_socket() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let output = run_client(&server.endpoint, &[], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("ok 200 pid {}", server.child.id()));
}

#[test]
fn a_server_binary_and_a_client_binary_talk_over_authenticated_tcp() {
    let server = tcp_server("correct horse");
    let output = run_client(&server.endpoint, &[("CELL_SECRET", "correct horse")], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("ok 200 pid {}", server.child.id()));
    let output = run_client(&server.endpoint, &[("CELL_SECRET", "wrong")], None);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("wrong or missing secret"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// SO_PEERCRED: a process of another user that can reach the socket is still refused. Needs
/// root to start a process as another user (CI runs as root). As any other user this test
/// checks that our own uid is served; the refusal of another uid is then covered by
/// cell-runtime's unit test `only_peers_of_our_own_uid_pass_the_peer_check`, which calls the
/// check itself.
#[test]
fn peers_of_another_user_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    if cell_runtime::current_uid() != 0 {
        eprintln!("not root: cannot start a client as another user; only our own uid checked");
        assert!(run_client(&server.endpoint, &[], None).status.success());
        return;
    }
    let Endpoint::Unix(socket) = &server.endpoint else {
        unreachable!()
    };
    // Open the file permissions on purpose, so only the uid check stands in the way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = run_client(&server.endpoint, &[], Some(65534));
    assert!(!output.status.success());
    assert!(
        server.wait_log("refused a peer of another user"),
        "{}",
        server.log()
    );
    // Our own uid is still served.
    assert!(run_client(&server.endpoint, &[], None).status.success());
}

#[test]
fn socket_and_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    // A fresh socket directory below the temp dir, which the server must create 0700.
    let sockets = dir.path().join("cells");
    let socket = sockets.join("probe.sock");
    let _server = Server::start(&["--socket", socket.to_str().unwrap()], &[]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sockets), 0o700);
    assert_eq!(mode(&socket), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_from_many_tasks() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let probe = probe.clone();
            tokio::spawn(async move {
                let calls = (0..100u64).map(|i| probe.add(task * 1000, i));
                let sums = futures::future::join_all(calls).await;
                for (i, sum) in sums.into_iter().enumerate() {
                    assert_eq!(sum.unwrap(), task * 1000 + i as u64);
                }
            })
        })
        .collect();
    // Slow and fast calls on the same connection while the tasks above run. (That a fast
    // reply overtakes a slow one is proven without timing in cell-runtime's testkit tests.)
    let slow = probe.sleep(300);
    let fast = async {
        let r = probe.echo("fast".into()).await.unwrap();
        assert_eq!(r, "fast");
    };
    let (slow, ()) = tokio::join!(slow, fast);
    assert_eq!(slow.unwrap(), 300);
    for task in tasks {
        task.await.unwrap();
    }
}

mod v2 {
    //! The probe protocol as a newer build would see it: `add` takes three numbers.
    #![allow(
        unreachable_pub,
        dead_code,
        reason = "only the generated client is used, by the tests above"
    )]
    use cell_sdk::service;

    #[service(name = "probe")]
    pub trait Probe {
        async fn echo(&self, text: String) -> String;
        async fn add(&self, a: u64, b: u64, c: u64) -> u64;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fingerprint_mismatch_is_reported_on_both_sides() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let err = v2::ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap_err();
    match &err {
        ConnectError::FingerprintMismatch {
            service,
            client,
            server,
        } => {
            assert_eq!(service, "probe");
            assert_ne!(client, server);
        }
        other => panic!("expected a fingerprint mismatch, got {other}"),
    }
    assert!(err.to_string().contains("has changed"), "{err}");
    assert!(
        server.wait_log("fingerprint mismatch"),
        "server log: {}",
        server.log()
    );
    // The server is unaffected.
    assert_eq!(client(&server.endpoint).await.add(1, 2).await.unwrap(), 3);
}

/// Completes a handshake by hand on a raw socket, returning the stream after the welcome.
pub(super) fn raw_handshake(endpoint: &Endpoint) -> std::os::unix::net::UnixStream {
    let Endpoint::Unix(path) = endpoint else {
        panic!("unix only")
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        service: "probe".into(),
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        nonce: Vec::new(),
        max_frame_len: 1 << 20,
    };
    stream.write_all(&hello.to_frame()).unwrap();
    // The welcome: a 16-byte header and a 24-byte payload padded to 32.
    let mut welcome = [0u8; 48];
    stream.read_exact(&mut welcome).unwrap();
    assert_eq!(welcome[4], Kind::Welcome as u8);
    stream
}

/// Reads one frame by hand (header, then the padded payload); `None` if the peer closed first.
pub(super) fn read_frame(stream: &mut impl Read) -> Option<(Header, Vec<u8>)> {
    let mut head = [0u8; cell_runtime::frame::HEADER_LEN];
    stream.read_exact(&mut head).ok()?;
    let header = Header::parse(&head, 1 << 20).unwrap();
    let mut payload = vec![0u8; cell_runtime::frame::padded(header.len as usize)];
    stream.read_exact(&mut payload).ok()?;
    payload.truncate(header.len as usize);
    Some((header, payload))
}

/// Reads until the server closes the connection; returns how many bytes it sent first.
pub(super) fn bytes_until_closed(stream: &mut impl Read) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => {
                eprintln!("the server did not close the connection: {e}");
                return usize::MAX;
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn bad_frames_close_only_their_connection() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);

    // Oversized: the header alone announces 1 GiB; the server refuses before allocating.
    let mut raw = raw_handshake(&server.endpoint);
    let mut header = Header::new(Kind::Request);
    header.len = 1 << 30;
    raw.write_all(&header.to_bytes()).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    assert!(server.wait_log("exceeds the maximum"), "{}", server.log());

    // Wrongly typed: `add` expects two u64 (16 bytes); 8 bytes are not that archive.
    let mut raw = raw_handshake(&server.endpoint);
    let mut frame = Vec::new();
    let mut header = Header::new(Kind::Request);
    header.method = 1;
    encode_frame(&mut frame, header, &[0xff; 8]);
    raw.write_all(&frame).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    assert!(
        server.wait_log("invalid (u64, u64,) archive"),
        "{}",
        server.log()
    );

    // Malformed: an unknown frame kind.
    let mut raw = raw_handshake(&server.endpoint);
    let mut bytes = Header::new(Kind::Request).to_bytes();
    bytes[4] = 200;
    raw.write_all(&bytes).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    assert!(
        server.wait_log("unknown frame kind 200"),
        "{}",
        server.log()
    );

    // Truncated: half a frame, then the client hangs up.
    let mut raw = raw_handshake(&server.endpoint);
    let mut header = Header::new(Kind::Request);
    header.len = 64;
    raw.write_all(&header.to_bytes()).unwrap();
    raw.write_all(&[0u8; 10]).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    assert!(
        server.wait_log("in the middle of a frame"),
        "{}",
        server.log()
    );

    // Not even a hello: garbage from the first byte.
    let Endpoint::Unix(path) = &server.endpoint else {
        unreachable!()
    };
    let mut raw = std::os::unix::net::UnixStream::connect(path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&[0xab; 64]).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);

    // The well-behaved client was never disturbed.
    assert_eq!(probe.add(2, 2).await.unwrap(), 4);
    assert_eq!(client(&server.endpoint).await.add(3, 3).await.unwrap(), 6);
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_handler_fails_only_its_call() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    match probe.panic("boom".into()).await {
        Err(CallError::Panicked(message)) => assert_eq!(message, "boom"),
        other => panic!("expected a panic report, got {other:?}"),
    }
    assert_eq!(probe.echo("still here".into()).await.unwrap(), "still here");
    assert!(server.wait_log("handler panicked"), "{}", server.log());
}

#[tokio::test(flavor = "current_thread")]
async fn deadlines_time_out_and_dropped_calls_are_cancelled_on_the_server() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    let hurried = probe.with_timeout(Duration::from_millis(100));
    assert!(matches!(hurried.hold().await, Err(CallError::Timeout)));
    // Dropping a call future (here: by `select!`) cancels it on the server too.
    tokio::select! {
        _ = probe.hold() => panic!("hold returned"),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    // Both held calls must end on the server: `holding` drops back to zero.
    let mut holding = u64::MAX;
    for _ in 0..200 {
        holding = probe.holding().await.unwrap();
        if holding == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        holding, 0,
        "cancelled calls are still running on the server"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_reconnects_after_the_server_is_killed_and_restarted() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let socket = dir.path().join("probe.sock");
    let args = ["--socket", socket.to_str().unwrap()];
    let first = Server::start(&args, &[]);
    let probe = client(&first.endpoint).await;
    let first_pid = probe.pid().await.unwrap();
    drop(first); // SIGKILL: no cleanup, the socket file stays behind.
    assert!(socket.exists(), "a killed server leaves its socket file");
    let err = probe.echo("anyone?".into()).await.unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Disconnected(_) | CallError::Connect(_) | CallError::NotSent(_)
        ),
        "{err:?}"
    );
    // The stale socket is detected and replaced, not EADDRINUSE.
    let second = Server::start(&args, &[]);
    assert!(
        second.wait_log("replaced a stale socket"),
        "{}",
        second.log()
    );
    let second_pid = probe.pid().await.unwrap();
    assert_ne!(first_pid, second_pid);
    assert_eq!(second_pid, second.child.id());
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_server_for_the_same_name_is_a_clear_error() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let first = Server::unix(&dir);
    let Endpoint::Unix(socket) = &first.endpoint else {
        unreachable!()
    };
    let (mut second, _ready, log) = spawn_server(&["--socket", socket.to_str().unwrap()], &[]);
    // Bounded: a second server that (wrongly) starts serving is killed and fails the test.
    let status = wait_for_exit(&mut second, Duration::from_secs(30));
    assert!(!status.success());
    let needle = "another server is already serving `probe`";
    let logged = || log.lock().unwrap().contains(needle);
    // The log thread may still be reading the last lines: give it a bounded moment.
    for _ in 0..200 {
        if logged() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(logged(), "{}", log.lock().unwrap());
    // The first server still serves, on its own socket.
    let probe = client(&first.endpoint).await;
    assert_eq!(probe.pid().await.unwrap(), first.child.id());
}

/// Waits up to `limit` for `child` to exit; kills it and panics when it does not.
fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn graceful_shutdown_finishes_calls_in_flight() {
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let mut server = Server::unix(&dir);
    let probe = client(&server.endpoint).await;
    let watcher = client(&server.endpoint).await;
    let slow = probe.sleep(500);
    let terminate = async {
        // SIGTERM only once the server is running the call (no race with its arrival).
        // Bounded (30 s), so a call that never arrives fails the test instead of hanging it.
        let mut polls = 0;
        while watcher.sleeping().await.unwrap() == 0 {
            polls += 1;
            assert!(polls < 3000, "the server never started the slow call");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.signal(libc::SIGTERM);
    };
    let (slow, ()) = tokio::join!(slow, terminate);
    assert_eq!(slow.unwrap(), 500);
    // Waited for without blocking this runtime: our clients' connection tasks run on it and
    // must see the server's end of stream and close (a drained server waits for that).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}\n{}", server.log());
    let Endpoint::Unix(socket) = &server.endpoint else {
        unreachable!()
    };
    assert!(!socket.exists(), "a stopped server removes its socket");
}

pub(super) fn tcp_server(secret: &str) -> Server {
    Server::start(&["--tcp", "127.0.0.1:0"], &[("CELL_SECRET", secret)])
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_with_the_shared_secret_works() {
    let server = tcp_server("correct horse");
    let config = SynapseConfig {
        secret: Some(Secret::new("correct horse")),
        ..SynapseConfig::default()
    };
    let probe = ProbeClient::connect_with(server.endpoint.clone(), config)
        .await
        .unwrap();
    assert_eq!(probe.add(20, 22).await.unwrap(), 42);
    let many = futures::future::join_all((0..64).map(|i| probe.add(i, 1))).await;
    assert!(
        many.iter()
            .enumerate()
            .all(|(i, r)| *r.as_ref().unwrap() == i as u64 + 1)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_unauthenticated_tcp_peer_gets_nothing() {
    let server = tcp_server("correct horse");
    let wrong = SynapseConfig {
        secret: Some(Secret::new("battery staple")),
        ..SynapseConfig::default()
    };
    let err = ProbeClient::connect_with(server.endpoint.clone(), wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::ClosedDuringHandshake),
        "{err:?}"
    );
    // A raw peer with a well-formed hello and a guessed proof: the challenge (which says only
    // that a cell server listens), then nothing — no welcome, version, name or fingerprint.
    let Endpoint::Tcp(addr) = &server.endpoint else {
        unreachable!()
    };
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        service: "probe".into(),
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        nonce: vec![7; NONCE_LEN],
        max_frame_len: 1 << 20,
    };
    raw.write_all(&hello.to_frame()).unwrap();
    let (header, _) = read_frame(&mut raw).unwrap();
    assert_eq!(header.kind, Kind::Challenge);
    raw.write_all(&Proof([0x55; PROOF_LEN]).to_frame()).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    // A raw peer sending garbage: nothing either (not even a version or fingerprint).
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&[0u8; 64]).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);
    assert!(server.wait_log("failed authentication"), "{}", server.log());
}

#[test]
fn service_macro_errors_point_at_the_users_tokens() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/service/*.rs");
}

/// The client checks who serves a Unix socket (SO_PEERCRED) before it sends anything: a relay
/// run by another user on a shared path would otherwise receive every call. Needs root to start
/// a server as another user (CI runs as root); as any other user the rule is covered by
/// cell-runtime's unit test `a_server_of_another_uid_is_refused_unless_allowed`.
#[tokio::test(flavor = "current_thread")]
async fn a_unix_server_of_another_user_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if cell_runtime::current_uid() != 0 {
        eprintln!("not root: cannot start a server as another user; see the unit test");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A directory of the other user's, holding a copy of the server binary it can run whatever
    // the permissions on the way to our target directory.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let binary = theirs.join("rpc-probe-server");
    std::fs::copy(env!("CARGO_BIN_EXE_rpc-probe-server"), &binary).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(&binary, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = theirs.join("probe.sock");
    let mut child = Command::new(&binary)
        .args(["--socket", socket.to_str().unwrap()])
        .env_remove("CELL_SECRET")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready "), "{ready:?}");

    let endpoint = Endpoint::unix(&socket);
    let err = ProbeClient::connect_with(endpoint.clone(), SynapseConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::UntrustedServer { uid: NOBODY, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("CELL_ALLOW_SERVER_UIDS"), "{err}");
    // Allowed explicitly, the client goes on to the handshake (which this server, serving only
    // its own user, then refuses: a different error).
    let allowed = SynapseConfig {
        allowed_server_uids: vec![NOBODY],
        ..SynapseConfig::default()
    };
    let err = ProbeClient::connect_with(endpoint, allowed)
        .await
        .unwrap_err();
    assert!(
        !matches!(err, ConnectError::UntrustedServer { .. }),
        "{err:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `<socket>.lock` planted as a symlink (by another user of a shared socket directory) is
/// refused, and the file it points to is neither created, locked nor chmod-ed.
#[test]
fn a_lock_file_planted_as_a_symlink_is_refused_and_its_target_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cell_sdk::testkit::temp_socket_dir().unwrap();
    let socket = dir.path().join("probe.sock");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("probe.sock.lock")).unwrap();
    let (mut child, ready, log) = spawn_server(&["--socket", socket.to_str().unwrap()], &[]);
    let status = wait_for_exit(&mut child, Duration::from_secs(30));
    assert!(
        !status.success(),
        "the server started: {:?}",
        ready.try_recv()
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the lock's target was chmod-ed");
    let log = log.lock().unwrap().clone();
    assert!(log.contains("probe.sock.lock"), "{log}");
}
