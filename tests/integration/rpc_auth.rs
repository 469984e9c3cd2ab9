//! TCP authentication by challenge-response (protocol 3), against the real `rpc-probe-server`
//! and `rpc-probe-client` processes: a relay that records every byte both ways proves the
//! secret never crosses the wire; a recorded client handshake replayed to the server and a
//! recorded server handshake replayed to a client are both refused; fake servers that do not
//! know the secret are refused by the client; malformed challenges and proofs close only their
//! connection; version mismatches reach only peers that know the secret. One test pins the
//! documented limit: a fake server that relays the real server's challenge live gets in.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use cell_runtime::auth::Role;
use cell_runtime::frame::{Header, Kind, encode_frame};
use cell_runtime::handshake::{
    self, Challenge, Hello, NONCE_LEN, PROOF_LEN, PROTOCOL_VERSION, Proof, RejectCode, Welcome,
};
use cell_sdk::{ConnectError, Endpoint, Protocol, Secret, SynapseConfig};

use super::rpc::probe::ProbeClient;
use super::rpc::{Server, bytes_until_closed, read_frame, run_client, tcp_server};

/// Long and distinctive, so that finding it in a recording cannot be a coincidence.
const SECRET: &str = "relay-test-secret-5f0c9e21a7d64b38";

/// What crossed a relay on one connection, each direction as one byte string.
struct Recording {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

/// Runs the client binary against the TCP probe `server` through a relay that records every
/// byte both ways; the client must succeed.
fn record_a_session(server: &Server) -> Recording {
    let Endpoint::Tcp(server_addr) = server.endpoint.clone() else {
        unreachable!()
    };
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap().to_string();
    let pump = std::thread::spawn(move || {
        let (client, _) = relay.accept().unwrap();
        let upstream = TcpStream::connect(&server_addr).unwrap();
        let up = copy_and_record(client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let down = copy_and_record(upstream, client);
        Recording {
            to_server: up.join().unwrap(),
            to_client: down.join().unwrap(),
        }
    });
    let output = run_client(&Endpoint::tcp(relay_addr), &[("CELL_SECRET", SECRET)], None);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("ok 200 pid {}", server.child.id())
    );
    pump.join().unwrap()
}

/// Copies `from` to `to` until end of stream (then passes the end on), returning every byte.
fn copy_and_record(mut from: TcpStream, mut to: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        seen
    })
}

/// The first `n` frames of a recorded byte stream, each as its wire bytes and decoded.
fn frames(mut wire: &[u8], n: usize) -> Vec<(Vec<u8>, Header, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (header, payload, used) = cell_runtime::frame::decode(wire, 1 << 20).unwrap().unwrap();
        out.push((wire[..used].to_vec(), header, wire[payload].to_vec()));
        wire = &wire[used..];
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn connect_raw(server: &Server) -> TcpStream {
    let Endpoint::Tcp(addr) = &server.endpoint else {
        unreachable!()
    };
    let raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw
}

fn probe_hello(version: u16, nonce: Vec<u8>) -> Hello {
    Hello {
        version,
        service: "probe".into(),
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        nonce,
        max_frame_len: 1 << 20,
    }
}

fn with_secret(secret: &str) -> SynapseConfig {
    SynapseConfig {
        secret: Some(Secret::new(secret)),
        connect_timeout: Duration::from_secs(10),
        ..SynapseConfig::default()
    }
}

/// A good client still gets served by `server` (nothing a bad peer did has hurt it).
async fn still_serves(server: &Server) {
    let probe = ProbeClient::connect_with(server.endpoint.clone(), with_secret(SECRET))
        .await
        .unwrap();
    assert_eq!(probe.add(40, 2).await.unwrap(), 42);
}

#[test]
fn the_secret_never_crosses_the_wire() {
    let server = tcp_server(SECRET);
    let recording = record_a_session(&server);
    // The recording is the real traffic in clear: the service name and the reply to `pid`
    // are in it (so a secret sent as is would be found too)...
    assert!(contains(&recording.to_server, b"probe"));
    assert!(contains(
        &recording.to_client,
        &server.child.id().to_le_bytes()
    ));
    // ...and the secret is in neither direction.
    assert!(!contains(&recording.to_server, SECRET.as_bytes()));
    assert!(!contains(&recording.to_client, SECRET.as_bytes()));
    // The handshake went as the protocol says: hello with a nonce, challenge, proof, welcome
    // with the server's proof.
    let up = frames(&recording.to_server, 2);
    let down = frames(&recording.to_client, 2);
    assert_eq!((up[0].1.kind, up[1].1.kind), (Kind::Hello, Kind::Proof));
    assert_eq!(
        (down[0].1.kind, down[1].1.kind),
        (Kind::Challenge, Kind::Welcome)
    );
    let hello = Hello::parse(&up[0].2).unwrap();
    assert_eq!(hello.nonce.len(), NONCE_LEN);
    let challenge = Challenge::parse(&down[0].2).unwrap();
    assert_ne!(hello.nonce, challenge.nonce);
    let welcome = Welcome::parse(&down[1].2).unwrap();
    let secret = Secret::new(SECRET);
    assert!(cell_runtime::auth::verify(
        &secret,
        Role::Client,
        &hello,
        &challenge,
        &Proof::parse(&up[1].2).unwrap().0
    ));
    assert!(cell_runtime::auth::verify(
        &secret,
        Role::Server,
        &hello,
        &challenge,
        &welcome.proof.unwrap()
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_recorded_client_handshake_replayed_to_the_server_is_refused() {
    let server = tcp_server(SECRET);
    let recording = record_a_session(&server);
    let recorded = frames(&recording.to_server, 2);
    let (hello, proof) = (&recorded[0].0, &recorded[1].0);
    let recorded_challenge = Challenge::parse(&frames(&recording.to_client, 1)[0].2).unwrap();

    // Step by step: the server challenges with a fresh nonce, so the recorded proof is wrong.
    let mut raw = connect_raw(&server);
    raw.write_all(hello).unwrap();
    let (header, payload) = read_frame(&mut raw).unwrap();
    assert_eq!(header.kind, Kind::Challenge);
    assert_ne!(Challenge::parse(&payload).unwrap(), recorded_challenge);
    raw.write_all(proof).unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0, "no welcome for a replay");
    assert!(server.wait_log("failed authentication"), "{}", server.log());

    // All at once (hello and proof in one write): the challenge, and nothing after it.
    let mut raw = connect_raw(&server);
    raw.write_all(&[hello.as_slice(), proof.as_slice()].concat())
        .unwrap();
    let (header, _) = read_frame(&mut raw).unwrap();
    assert_eq!(header.kind, Kind::Challenge);
    assert_eq!(bytes_until_closed(&mut raw), 0, "no welcome for a replay");

    still_serves(&server).await;
}

/// A fake server on a local port that answers one connection with `script`, and returns
/// every byte the client sent it.
fn fake_server(
    script: impl FnOnce(&mut Recorder) + Send + 'static,
) -> (Endpoint, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::tcp(listener.local_addr().unwrap().to_string());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut recorder = Recorder {
            stream,
            seen: Vec::new(),
        };
        script(&mut recorder);
        // Whatever else the client sends until it hangs up.
        let mut rest = Vec::new();
        let _ = recorder.read_to_end(&mut rest);
        recorder.seen
    });
    (endpoint, handle)
}

/// The fake server's side of the connection; keeps every byte read from the client.
struct Recorder {
    stream: TcpStream,
    seen: Vec<u8>,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn probe_welcome(proof: Option<[u8; PROOF_LEN]>) -> Vec<u8> {
    Welcome {
        version: PROTOCOL_VERSION,
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        max_frame_len: 1 << 20,
        max_in_flight: 16,
        proof,
    }
    .to_frame()
}

/// Connects a probe client with the test secret to the fake server running `script`; returns
/// the connect error and every byte the client sent.
async fn refused_by_client(
    script: impl FnOnce(&mut Recorder) + Send + 'static,
) -> (ConnectError, Vec<u8>) {
    let (endpoint, fake) = fake_server(script);
    let err = ProbeClient::connect_with(endpoint, with_secret(SECRET))
        .await
        .unwrap_err();
    (err, fake.join().unwrap())
}

fn assert_not_authenticated(err: &ConnectError, reason: &str) {
    match err {
        ConnectError::ServerNotAuthenticated { reason: r, .. } => {
            assert!(r.contains(reason), "{err}")
        }
        other => panic!("expected ServerNotAuthenticated, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("did not prove it knows the shared secret"),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_refuses_a_server_that_does_not_know_the_secret() {
    // A welcome without any challenge: the server proved nothing.
    let (err, _) = refused_by_client(|s| {
        read_frame(s).unwrap();
        s.write_all(&probe_welcome(None)).unwrap();
    })
    .await;
    assert_not_authenticated(&err, "without a challenge");

    // A challenge, then a welcome without a proof.
    let (err, _) = refused_by_client(|s| {
        read_frame(s).unwrap();
        s.write_all(&Challenge::random().unwrap().to_frame())
            .unwrap();
        read_frame(s).unwrap();
        s.write_all(&probe_welcome(None)).unwrap();
    })
    .await;
    assert_not_authenticated(&err, "carries no proof");

    // A challenge, then a guessed proof. The client sent its hello and proof, and neither
    // holds the secret.
    let (err, sent) = refused_by_client(|s| {
        read_frame(s).unwrap();
        s.write_all(&Challenge::random().unwrap().to_frame())
            .unwrap();
        read_frame(s).unwrap();
        s.write_all(&probe_welcome(Some([0x42; PROOF_LEN])))
            .unwrap();
    })
    .await;
    assert_not_authenticated(&err, "proof is wrong");
    let sent = frames(&sent, 2);
    assert_eq!((sent[0].1.kind, sent[1].1.kind), (Kind::Hello, Kind::Proof));
    assert!(!contains(&sent[0].0, SECRET.as_bytes()) && !contains(&sent[1].0, SECRET.as_bytes()));
}

#[tokio::test(flavor = "current_thread")]
async fn a_recorded_server_handshake_replayed_to_a_client_is_refused() {
    // The real server's challenge and welcome — with its genuine proof — recorded, then
    // played back by an impostor: the proof covered the old client nonce, not the new one.
    let server = tcp_server(SECRET);
    let recording = record_a_session(&server);
    let recorded = frames(&recording.to_client, 2);
    let (challenge, welcome) = (recorded[0].0.clone(), recorded[1].0.clone());
    assert!(Welcome::parse(&recorded[1].2).unwrap().proof.is_some());
    let (err, _) = refused_by_client(move |s| {
        read_frame(s).unwrap();
        s.write_all(&challenge).unwrap();
        read_frame(s).unwrap();
        s.write_all(&welcome).unwrap();
    })
    .await;
    assert_not_authenticated(&err, "proof is wrong");
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_challenges_fail_the_connect_cleanly() {
    let challenge_frame = |payload: &[u8]| {
        let mut frame = Vec::new();
        encode_frame(&mut frame, Header::new(Kind::Challenge), payload);
        frame
    };
    // Too short, too long, wrong magic: a protocol error, never a panic, and no proof sent
    // (the client sent its hello only).
    for payload in [
        b"CELL".to_vec(),
        [b"CELL".as_slice(), &[1; NONCE_LEN + 1]].concat(),
        [b"LLEC".as_slice(), &[1; NONCE_LEN]].concat(),
    ] {
        let frame = challenge_frame(&payload);
        let (err, sent) = refused_by_client(move |s| {
            read_frame(s).unwrap();
            s.write_all(&frame).unwrap();
        })
        .await;
        assert!(matches!(err, ConnectError::Protocol(_)), "{err:?}");
        let hello = &frames(&sent, 1)[0];
        assert_eq!(hello.1.kind, Kind::Hello);
        assert_eq!(
            hello.0.len(),
            sent.len(),
            "the client sent more than its hello"
        );
    }
    // Truncated: half a challenge, then the server hangs up.
    let (err, _) = refused_by_client(|s| {
        read_frame(s).unwrap();
        let frame = Challenge::random().unwrap().to_frame();
        s.write_all(&frame[..30]).unwrap();
        s.stream.shutdown(Shutdown::Write).unwrap();
    })
    .await;
    assert!(
        matches!(err, ConnectError::ClosedDuringHandshake),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_proofs_close_only_their_connection() {
    let server = tcp_server(SECRET);
    let good = ProbeClient::connect_with(server.endpoint.clone(), with_secret(SECRET))
        .await
        .unwrap();
    let proof_frame = |payload: &[u8]| {
        let mut frame = Vec::new();
        encode_frame(&mut frame, Header::new(Kind::Proof), payload);
        frame
    };
    let mut request = Vec::new();
    encode_frame(&mut request, Header::new(Kind::Request), &[0; 16]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a proof one byte short", proof_frame(&[1; PROOF_LEN - 1])),
        ("a proof one byte long", proof_frame(&[1; PROOF_LEN + 1])),
        ("an empty proof", proof_frame(&[])),
        ("a request instead of a proof", request),
        ("garbage instead of a proof", vec![0xab; 64]),
        // The header of a proof frame and half its payload, then the peer hangs up.
        (
            "a truncated proof",
            proof_frame(&[1; PROOF_LEN])[..30].to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = connect_raw(&server);
        raw.write_all(&probe_hello(PROTOCOL_VERSION, vec![3; NONCE_LEN]).to_frame())
            .unwrap();
        let (header, _) = read_frame(&mut raw).unwrap();
        assert_eq!(header.kind, Kind::Challenge, "{what}");
        raw.write_all(&bytes).unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        assert_eq!(bytes_until_closed(&mut raw), 0, "{what}");
    }
    // A hello whose nonce is not 32 bytes is not even challenged.
    for nonce in [Vec::new(), vec![1; NONCE_LEN - 1], vec![1; NONCE_LEN + 1]] {
        let mut raw = connect_raw(&server);
        raw.write_all(&probe_hello(PROTOCOL_VERSION, nonce).to_frame())
            .unwrap();
        assert_eq!(bytes_until_closed(&mut raw), 0);
    }
    assert!(server.wait_log("failed authentication"), "{}", server.log());
    // The connection opened before, and a new one, are served as if nothing happened.
    assert_eq!(good.add(1, 2).await.unwrap(), 3);
    still_serves(&server).await;
}

#[tokio::test(flavor = "current_thread")]
async fn version_mismatches_on_tcp_reach_only_peers_that_know_the_secret() {
    let server = tcp_server(SECRET);
    let secret = Secret::new(SECRET);
    let expect_version_reject = |raw: &mut TcpStream| {
        let (header, payload) = read_frame(raw).unwrap();
        assert_eq!(header.kind, Kind::Reject);
        let reject = handshake::parse_reject(&header, &payload);
        assert_eq!(reject.code, RejectCode::Version as u8, "{reject:?}");
        // Old clients read the version from the text; newer ones from the header.
        assert!(
            reject
                .reason
                .contains(&format!("server speaks {PROTOCOL_VERSION}")),
            "{reject:?}"
        );
        if header.method != 0 {
            assert_eq!(reject.server_version, Some(PROTOCOL_VERSION));
        }
        assert_eq!(bytes_until_closed(raw), 0);
    };

    // A protocol 2 client sends its secret itself: right, it hears of the mismatch...
    let mut raw = connect_raw(&server);
    raw.write_all(&probe_hello(2, SECRET.as_bytes().to_vec()).to_frame())
        .unwrap();
    expect_version_reject(&mut raw);
    // ...wrong, it hears nothing at all.
    let mut raw = connect_raw(&server);
    raw.write_all(&probe_hello(2, b"a wrong secret".to_vec()).to_frame())
        .unwrap();
    assert_eq!(bytes_until_closed(&mut raw), 0);

    // A client of a later protocol keeps the challenge-response of protocol 3 (with its own
    // version in the transcript): a right proof hears of the mismatch, a wrong one nothing.
    for (proof_secret, told) in [(secret.clone(), true), (Secret::new("wrong"), false)] {
        let hello = probe_hello(PROTOCOL_VERSION + 1, vec![9; NONCE_LEN]);
        let mut raw = connect_raw(&server);
        raw.write_all(&hello.to_frame()).unwrap();
        let (header, payload) = read_frame(&mut raw).unwrap();
        assert_eq!(header.kind, Kind::Challenge);
        let challenge = Challenge::parse(&payload).unwrap();
        let proof = cell_runtime::auth::prove(&proof_secret, Role::Client, &hello, &challenge);
        raw.write_all(&proof.to_frame()).unwrap();
        if told {
            expect_version_reject(&mut raw);
        } else {
            assert_eq!(bytes_until_closed(&mut raw), 0);
        }
    }
    still_serves(&server).await;
}

/// The limit `docs/threat-model.md` states for fake servers: the handshake is not bound to a
/// channel, so a fake server that the client reaches and that can itself reach the real
/// server relays the real server's challenge as its own, passes the client's proof on, and is
/// in — then calls the service as it pleases. (The client only loses its connection.) TLS
/// with this handshake bound to the channel is what ends this; until then, this test keeps
/// the documentation honest.
#[tokio::test(flavor = "current_thread")]
async fn a_fake_server_that_relays_the_real_challenge_gets_in_as_the_client() {
    let server = tcp_server(SECRET);
    let Endpoint::Tcp(real) = server.endpoint.clone() else {
        unreachable!()
    };
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap().to_string();
    let attacker = std::thread::spawn(move || {
        let (mut victim, _) = relay.accept().unwrap();
        victim
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut upstream = TcpStream::connect(&real).unwrap();
        upstream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let pass = |from: &mut TcpStream, to: &mut TcpStream, kind: Kind| {
            let (header, payload) = read_frame(from).unwrap();
            assert_eq!(header.kind, kind);
            let mut frame = Vec::new();
            encode_frame(&mut frame, Header::new(kind), &payload);
            to.write_all(&frame).unwrap();
        };
        pass(&mut victim, &mut upstream, Kind::Hello);
        pass(&mut upstream, &mut victim, Kind::Challenge);
        pass(&mut victim, &mut upstream, Kind::Proof);
        let (welcome, _) = read_frame(&mut upstream).unwrap();
        assert_eq!(welcome.kind, Kind::Welcome);
        drop(victim);
        // Authenticated as the client: `add(40, 2)`, of the attacker's own choosing.
        let mut header = Header::new(Kind::Request);
        header.method = 1;
        header.id = 1;
        let mut request = Vec::new();
        let args = cell_runtime::codec::to_bytes(&(40u64, 2u64)).unwrap();
        encode_frame(&mut request, header, &args);
        upstream.write_all(&request).unwrap();
        read_frame(&mut upstream).unwrap()
    });
    let err = ProbeClient::connect_with(Endpoint::tcp(relay_addr), with_secret(SECRET))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::ClosedDuringHandshake),
        "{err:?}"
    );
    let (reply, payload) = attacker.join().unwrap();
    assert_eq!((reply.kind, reply.id), (Kind::Response, 1));
    assert_eq!(payload, 42u64.to_le_bytes());
}
