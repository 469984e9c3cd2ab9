//! Server-to-client streams (protocol 5) against a real server process: items in order and a
//! clean end, on a Unix socket and on authenticated TCP; an application error in the middle;
//! a slow consumer bounds what the server's producer runs ahead (credit); dropping the stream
//! stops the server's producer; a server killed mid-stream and a stream past its deadline end
//! with their call outcomes; a peer of protocol 4 is refused clearly.

use std::io::Write;
use std::time::Duration;

use cell_runtime::frame::Kind;
use cell_runtime::handshake::{self, Hello, PROTOCOL_VERSION};
use cell_sdk::{CallError, CallOutcome, Protocol, Secret, SynapseConfig, testkit::temp_socket_dir};
use futures::StreamExt;

use super::rpc::probe::{ProbeClient, ProbeError};
use super::rpc::{Server, read_frame, tcp_server};

/// A client of `server` whose streams have a credit window of `window` items.
async fn client(server: &Server, window: u32) -> ProbeClient {
    let config = SynapseConfig {
        stream_window: window,
        secret: Some(Secret::new("correct horse")),
        ..SynapseConfig::default()
    };
    ProbeClient::connect_with(server.endpoint.clone(), config)
        .await
        .expect("the probe server accepts clients")
}

/// Waits (up to 10 s) until the server reports no running `produce` producer.
async fn producers_stop(probe: &ProbeClient) -> bool {
    for _ in 0..400 {
        if probe.producers().await.expect("producers answers") == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_delivers_every_item_in_order_then_ends_cleanly() {
    let dir = temp_socket_dir().unwrap();
    let unix = Server::unix(&dir);
    let tcp = tcp_server("correct horse");
    for server in [&unix, &tcp] {
        // A window far smaller than the stream: credit is granted again and again.
        let probe = client(server, 4).await;
        let mut stream = probe.count(1000).await.unwrap();
        let mut next = 0;
        while let Some(item) = stream.next().await {
            assert_eq!(item.unwrap(), next);
            next += 1;
        }
        assert_eq!(next, 1000, "{}", server.endpoint);
        // Ended for good, and the connection serves other calls.
        assert!(stream.next().await.is_none());
        assert_eq!(probe.add(1, 2).await.unwrap(), 3);
        // An empty stream ends at once.
        assert!(probe.count(0).await.unwrap().next().await.is_none());
        // Streams and unary calls share the connection concurrently.
        let (a, b, sum) = futures::join!(
            probe.count(300).await.unwrap().collect::<Vec<_>>(),
            probe.count(200).await.unwrap().collect::<Vec<_>>(),
            probe.add(20, 22),
        );
        assert_eq!((a.len(), b.len(), sum.unwrap()), (300, 200, 42));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_error_in_the_middle_of_a_stream_ends_it_with_the_application_error() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server, 2).await;
    let mut stream = probe.count_then_fail(5).await.unwrap();
    let mut items = Vec::new();
    let err = loop {
        match stream.next().await {
            Some(Ok(n)) => items.push(n),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without its error"),
        }
    };
    assert_eq!(items, [0, 1, 2, 3, 4]);
    assert!(
        matches!(err, CallError::App(ProbeError::Negative(5))),
        "{err:?}"
    );
    assert_eq!(err.outcome(), CallOutcome::Failed);
    assert!(stream.next().await.is_none(), "nothing after the error");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_consumer_bounds_what_the_server_produces() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    const WINDOW: u64 = 8;
    let probe = client(&server, WINDOW as u32).await;
    let watcher = client(&server, 1).await;
    let mut stream = probe.produce(16 * 1024).await.unwrap();
    let mut taken = 0u64;
    for round in 0..5 {
        for _ in 0..10 {
            let item = stream.next().await.unwrap().unwrap();
            assert_eq!(item.len(), 16 * 1024);
            taken += 1;
        }
        // The consumer stalls: the producer could run ahead, and must not. What it produced
        // beyond what was taken is bounded by the credit window (items queued in this client
        // or on their way), the one item the server holds ready, and the producer's own
        // channel of 4 — whatever the stall's length.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let produced = watcher.produced().await.unwrap();
        assert!(
            produced <= taken + WINDOW + 1 + 4,
            "round {round}: {produced} produced for {taken} taken with a window of {WINDOW}"
        );
    }
    drop(stream);
    assert!(producers_stop(&watcher).await, "the producer kept running");
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_stream_stops_the_servers_producer() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server, 16).await;
    let mut stream = probe.produce(64).await.unwrap();
    for _ in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 64);
    }
    assert_eq!(probe.producers().await.unwrap(), 1);
    drop(stream);
    // The cancel reaches the server, which drops the stream: the producer's send fails.
    assert!(producers_stop(&probe).await, "the producer kept running");
    // A stream dropped before its first item is cancelled too.
    let stream = probe.produce(64).await.unwrap();
    drop(stream);
    assert!(producers_stop(&probe).await, "the producer kept running");
    // The connection is unaffected, and a late item of the cancelled streams confused nothing.
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    let all: Vec<_> = probe.count(10).await.unwrap().collect().await;
    assert_eq!(all.len(), 10);
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_killed_in_the_middle_of_a_stream_leaves_its_outcome_unknown() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server, 4).await;
    let mut stream = probe.produce(8).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    server.signal(libc::SIGKILL);
    // Items already received come first, then the failure, then the end.
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly after its server died"),
        }
    };
    assert!(matches!(err, CallError::Disconnected(_)), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
    assert!(stream.next().await.is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_past_its_deadline_ends_with_a_timeout_and_stops_its_producer() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = client(&server, 4).await;
    let mut stream = probe
        .with_timeout(Duration::from_millis(300))
        .produce(8)
        .await
        .unwrap();
    // Consumed slowly, it outlives its deadline.
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly"),
        }
    };
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
    assert!(producers_stop(&probe).await, "the producer kept running");
}

#[test]
fn a_peer_of_protocol_4_is_refused_with_the_servers_version() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let cell_sdk::Endpoint::Unix(path) = &server.endpoint else {
        panic!("unix")
    };
    let mut raw = std::os::unix::net::UnixStream::connect(path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = Hello {
        version: 4,
        service: "probe".into(),
        fingerprint: <ProbeClient as Protocol>::FINGERPRINT,
        nonce: Vec::new(),
        max_frame_len: 1 << 20,
    };
    raw.write_all(&hello.to_frame()).unwrap();
    let (header, payload) = read_frame(&mut raw).expect("a reject");
    assert_eq!(header.kind, Kind::Reject);
    let reject = handshake::parse_reject(&header, &payload);
    assert_eq!(reject.server_version, Some(PROTOCOL_VERSION));
    assert_eq!(PROTOCOL_VERSION, 5);
    assert!(reject.reason.contains("mismatch"), "{}", reject.reason);
}
