//! The call context (`CallContext`) seen by a handler in a real server process
//! (`rpc-probe-server`), on a Unix socket and on authenticated TCP: the connection's id and
//! peer, the request id, the method and the deadline; the service told when a connection
//! closes (`Connection::on_close`). Protocol 4: per-call metadata and its bounds, trace
//! context across two hops of real processes, the negotiated version and structured reject.

use std::io::Write;
use std::time::Duration;

use cell_runtime::frame::{Header, Kind, encode_frame};
use cell_runtime::handshake::{self, Hello, PROTOCOL_VERSION, RejectCode};
use cell_runtime::metadata::{MAX_ENTRIES, MAX_METADATA_LEN, TRACEPARENT};
use cell_sdk::{
    ConnectError, Endpoint, Metadata, Protocol, Secret, Status, SynapseConfig, TraceParent,
    testkit::temp_socket_dir,
};

use super::rpc::probe::ProbeClient;
use super::rpc::{Server, bytes_until_closed, raw_handshake, read_frame, tcp_server};

#[tokio::test(flavor = "current_thread")]
async fn a_handler_sees_its_unix_connection_peer_and_call() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let first = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let budget = SynapseConfig {
        timeout: Some(Duration::from_secs(60)),
        ..SynapseConfig::default()
    };
    let second = ProbeClient::connect_with(server.endpoint.clone(), budget)
        .await
        .unwrap();

    // Two calls in flight on one connection: one connection id, two request ids.
    let (a, b) = futures::join!(first.context(), first.context());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.transport, "unix");
    assert_eq!(a.uid, Some(cell_runtime::current_uid()));
    assert_eq!(
        a.pid,
        Some(std::process::id() as i32),
        "SO_PEERCRED names this test process"
    );
    assert_eq!(a.method, "context");
    assert_eq!(a.connection, b.connection);
    assert_ne!(a.request_id, b.request_id);
    assert_eq!(a.deadline_left_ms, None, "no timeout, no deadline");
    assert_eq!(a.addr, None);

    // Another connection: another id; its calls carry the client's deadline.
    let c = second.context().await.unwrap();
    assert_ne!(c.connection, a.connection);
    let left = c.deadline_left_ms.expect("a 60 s timeout is a deadline");
    assert!(left > 0 && left <= 60_000, "{left} ms left of 60 s");
    // The id is stable for the connection's life.
    assert_eq!(first.context().await.unwrap().connection, a.connection);
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_sees_its_authenticated_tcp_peer() {
    let server = tcp_server("correct horse");
    let config = SynapseConfig {
        secret: Some(Secret::new("correct horse")),
        ..SynapseConfig::default()
    };
    let probe = ProbeClient::connect_with(server.endpoint.clone(), config.clone())
        .await
        .unwrap();
    let seen = probe.context().await.unwrap();
    assert_eq!(seen.transport, "tcp");
    assert!(seen.authenticated);
    assert_eq!(seen.uid, None);
    let addr: std::net::SocketAddr = seen.addr.as_deref().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let cell_sdk::Endpoint::Tcp(server_addr) = &server.endpoint else {
        panic!("a TCP server");
    };
    let server_addr: std::net::SocketAddr = server_addr.parse().unwrap();
    assert_ne!(addr.port(), server_addr.port(), "the client's own port");
    let other = ProbeClient::connect_with(server.endpoint.clone(), config)
        .await
        .unwrap();
    assert_ne!(other.context().await.unwrap().connection, seen.connection);
}

#[tokio::test(flavor = "current_thread")]
async fn the_service_learns_when_a_connection_closes() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let watcher = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let watcher_id = watcher.context().await.unwrap().connection;
    let leaving = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let leaving_id = leaving.context().await.unwrap().connection;
    assert!(!watcher.closed().await.unwrap().contains(&leaving_id));
    drop(leaving);
    let mut closed = Vec::new();
    for _ in 0..200 {
        closed = watcher.closed().await.unwrap();
        if closed.contains(&leaving_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closed,
        vec![leaving_id],
        "only the dropped client's connection closed"
    );
    assert!(!closed.contains(&watcher_id));
}

#[tokio::test(flavor = "current_thread")]
async fn metadata_reaches_the_handler_and_plain_calls_carry_none() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let plain = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let mut md = Metadata::new();
    md.insert("authorization", b"token 7").unwrap();
    md.insert("tenant", &[0, 1, 2, 255]).unwrap();
    let with = plain.with_metadata(md);
    let seen = with.context().await.unwrap();
    assert_eq!(
        seen.metadata,
        vec![
            ("authorization".to_string(), b"token 7".to_vec()),
            ("tenant".to_string(), vec![0, 1, 2, 255]),
        ]
    );
    assert_eq!(seen.traceparent, None);
    // Same connection; the plain handle sends no metadata.
    let bare = plain.context().await.unwrap();
    assert_eq!(bare.connection, seen.connection);
    assert!(bare.metadata.is_empty());
}

/// A `MetaRequest` for `context` (no arguments: the archive of `()` is empty) whose metadata
/// block is `block` (length field included).
fn meta_request(block: &[u8]) -> Vec<u8> {
    let mut payload = block.to_vec();
    payload.resize(cell_runtime::frame::padded(payload.len()), 0);
    let mut header = Header::new(Kind::MetaRequest);
    header.id = 1;
    header.method = <ProbeClient as Protocol>::METHODS
        .iter()
        .position(|m| *m == "context")
        .expect("probe has a `context` method") as u16;
    let mut frame = Vec::new();
    encode_frame(&mut frame, header, &payload);
    frame
}

#[tokio::test(flavor = "current_thread")]
async fn oversized_or_malformed_metadata_closes_only_its_connection() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let good = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);

    // Over the 4 KiB bound (the frame itself is within the server's 64 KiB limit).
    let mut oversized = ((MAX_METADATA_LEN + 1) as u32).to_le_bytes().to_vec();
    oversized.extend(std::iter::repeat_n(0u8, MAX_METADATA_LEN + 1));
    // Over the entry bound: 33 one-byte keys with empty values.
    let mut many = Vec::new();
    for _ in 0..=MAX_ENTRIES {
        many.extend_from_slice(&[1, b'k', 0, 0]);
    }
    let mut too_many = (many.len() as u32).to_le_bytes().to_vec();
    too_many.extend_from_slice(&many);
    // A key that is not visible ASCII.
    let bad_key = [4u8, 0, 0, 0, 1, b' ', 0, 0];
    for block in [oversized, too_many, bad_key.to_vec()] {
        let mut raw = raw_handshake(&server.endpoint);
        raw.write_all(&meta_request(&block)).unwrap();
        assert_eq!(
            bytes_until_closed(&mut raw),
            0,
            "the server answered instead of closing"
        );
    }
    assert!(server.wait_log("metadata"), "{}", server.log());
    // A well-formed block on a raw socket gets its reply.
    let mut raw = raw_handshake(&server.endpoint);
    raw.write_all(&meta_request(&[5, 0, 0, 0, 1, b'k', 1, 0, b'v']))
        .unwrap();
    let (header, _) = read_frame(&mut raw).unwrap();
    assert_eq!((header.kind, header.status), (Kind::Response, Status::Ok));
    // Everyone else is served throughout.
    assert_eq!(good.add(2, 2).await.unwrap(), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn trace_context_crosses_two_hops_of_real_processes() {
    let dir = temp_socket_dir().unwrap();
    let debug = [("RUST_LOG", "debug")];
    let first_socket = dir.path().join("first.sock");
    let second_socket = dir.path().join("second.sock");
    let first = Server::start(&["--socket", first_socket.to_str().unwrap()], &debug);
    let second = Server::start(&["--socket", second_socket.to_str().unwrap()], &debug);

    let root = TraceParent::new_root().unwrap();
    let mut md = Metadata::new();
    md.insert(TRACEPARENT, root.to_string().as_bytes()).unwrap();
    let probe = ProbeClient::connect_to(first.endpoint.clone())
        .await
        .unwrap()
        .with_metadata(md);
    let relayed = probe
        .relay(second_socket.to_str().unwrap().to_string())
        .await
        .unwrap();

    // Hop 1 continues our trace, with us as the parent.
    assert_eq!(relayed.here.traceparent, Some(root.to_string()));
    let here_span = relayed
        .here
        .span_id
        .clone()
        .expect("a traced call has a span id");
    // Hop 2 continues the same trace, with hop 1's span as its parent.
    let there = relayed
        .there
        .traceparent
        .as_deref()
        .and_then(|t| TraceParent::parse(t.as_bytes()))
        .expect("the trace reached the second hop");
    assert_eq!(there.trace_id, root.trace_id);
    assert_eq!(there.parent_id_hex(), here_span);
    assert_ne!(relayed.there.span_id, relayed.here.span_id);
    // Both servers' call spans carry the trace id in their logs.
    let needle = format!("trace_id={}", root.trace_id_hex());
    assert!(first.wait_log(&needle), "{}", first.log());
    assert!(second.wait_log(&needle), "{}", second.log());
    assert!(
        second.wait_log(&format!("parent_span={here_span}")),
        "{}",
        second.log()
    );
}

#[test]
fn the_protocol_version_is_negotiated_and_old_peers_get_a_clear_refusal() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let Endpoint::Unix(path) = &server.endpoint else {
        panic!("a Unix socket")
    };
    let hello = |version| Hello {
        version,
        service: "probe".into(),
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        nonce: Vec::new(),
        max_frame_len: 1 << 20,
    };
    // A protocol-3 client reads `code, text`, and finds the version in the text as before.
    let mut old = std::os::unix::net::UnixStream::connect(path).unwrap();
    old.write_all(&hello(3).to_frame()).unwrap();
    let (header, payload) = read_frame(&mut old).unwrap();
    assert_eq!((header.kind, header.method), (Kind::Reject, 0));
    assert_eq!(payload[0], RejectCode::Version as u8);
    let text = String::from_utf8_lossy(&payload[1..]).to_string();
    assert!(
        text.contains(&format!(
            "client speaks 3, server speaks {PROTOCOL_VERSION}"
        )),
        "{text}"
    );
    // A newer client gets the structured reject: no text to parse.
    let mut newer = std::os::unix::net::UnixStream::connect(path).unwrap();
    newer
        .write_all(&hello(PROTOCOL_VERSION + 1).to_frame())
        .unwrap();
    let (header, payload) = read_frame(&mut newer).unwrap();
    let reject = handshake::parse_reject(&header, &payload);
    assert_eq!(reject.code, RejectCode::Version as u8);
    assert_eq!(reject.server_version, Some(PROTOCOL_VERSION));
    assert_eq!(
        reject.server_fingerprint,
        Some(<ProbeClient as Protocol>::FINGERPRINT)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_refused_by_a_protocol_3_server_says_so_clearly() {
    // A fake server of protocol 3: it refuses our hello the way protocol 3 did (code, text).
    let dir = temp_socket_dir().unwrap();
    let path = dir.path().join("old.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = read_frame(&mut stream);
        let mut payload = vec![RejectCode::Version as u8];
        payload.extend_from_slice(b"protocol version mismatch: client speaks 4, server speaks 3");
        let mut frame = Vec::new();
        encode_frame(&mut frame, Header::new(Kind::Reject), &payload);
        stream.write_all(&frame).unwrap();
    });
    let err = ProbeClient::connect_to(Endpoint::unix(&path))
        .await
        .unwrap_err();
    fake.join().unwrap();
    match &err {
        ConnectError::VersionMismatch { client, server } => {
            assert_eq!((*client, *server), (PROTOCOL_VERSION, None));
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("an older one") && message.contains("upgrade"),
        "{message}"
    );
}
