//! The call context (`CallContext`) seen by a handler in a real server process
//! (`rpc-probe-server`), on a Unix socket and on authenticated TCP: the connection's id and
//! peer, the request id, the method and the deadline; and the service told when a connection
//! closes (`Connection::on_close`).

use std::time::Duration;

use cell_sdk::{Secret, SynapseConfig, testkit::temp_socket_dir};

use super::rpc::probe::ProbeClient;
use super::rpc::{Server, tcp_server};

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
