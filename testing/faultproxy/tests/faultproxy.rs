//! cell-faultproxy's tests, one binary, real sockets on loopback. Contents:
//! - `link_*`: one link in front of an echo server: pass, blackhole and heal, reset, loss,
//!   delay (also past the clock's range), half-close, an absent target, dropping the link;
//! - `mesh_*`: links between echo "nodes": dial maps, a one-direction cut, partitions,
//!   isolation, heal, settings for all links.
//!
//! "Silent" is observed as a read that yields nothing within a short wait: a behaviour
//! check (nothing arrives while blackholed), not a measurement of speed. Waits for something
//! that must happen are bounded by a generous `DEADLINE` only so a bug fails instead of hanging.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cell_faultproxy::{Fault, Link, Mesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// How long a silent connection is watched.
const QUIET: Duration = Duration::from_millis(150);
/// A bound on waits for what must happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// An echo server: every connection gets its bytes back, and end of stream when it sends it.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Sends `msg` and expects it back.
async fn round_trip(conn: &mut TcpStream, msg: &[u8]) {
    conn.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    timeout(DEADLINE, conn.read_exact(&mut buf))
        .await
        .expect("echo within the deadline")
        .unwrap();
    assert_eq!(buf, msg);
}

/// Whether `conn` yields nothing (no bytes, no end of stream, no error) for a while.
async fn is_silent(conn: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    timeout(QUIET, conn.read(&mut buf)).await.is_err()
}

/// Sends a probe on a connection and checks nothing comes back.
async fn probe_is_silent(conn: &mut TcpStream) -> bool {
    // A write to a held connection succeeds: the bytes wait in buffers.
    conn.write_all(b"probe").await.unwrap();
    is_silent(conn).await
}

/// Waits until the peer closed `conn` (end of stream or a reset), discarding any bytes.
async fn closed(conn: &mut TcpStream) {
    let mut buf = [0; 1024];
    timeout(DEADLINE, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the connection closes within the deadline");
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect within the deadline")
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Link

#[tokio::test]
async fn link_pass_forwards_both_ways_and_counts() {
    let link = Link::start(echo_server().await).await.unwrap();
    let mut conn = connect(link.addr()).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = conn.split();
    let (_, echoed) = tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
        let mut buf = vec![0; data.len()];
        timeout(DEADLINE, r.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf
    });
    assert_eq!(echoed, data);
    let stats = link.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.open, 1);
    assert_eq!(stats.bytes_to_target, 200_000);
    assert_eq!(stats.bytes_from_target, 200_000);
    assert_eq!(stats.closed_by_fault, 0);
}

#[tokio::test]
async fn link_blackhole_holds_traffic_and_heal_serves_new_connections() {
    let link = Link::start(echo_server().await).await.unwrap();
    let mut before = connect(link.addr()).await;
    round_trip(&mut before, b"hello").await;

    link.set_fault(Fault::Blackhole);
    assert_eq!(link.fault(), Fault::Blackhole);
    // The open connection stays open and silent.
    assert!(probe_is_silent(&mut before).await);
    // A new connection is accepted, and silent too.
    let mut during = connect(link.addr()).await;
    assert!(probe_is_silent(&mut during).await);
    let stats = link.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(
        stats.bytes_to_target, 5,
        "nothing forwarded while blackholed"
    );

    link.set_fault(Fault::Pass);
    // Connections that lived through the blackhole are closed, what they held is gone...
    closed(&mut before).await;
    closed(&mut during).await;
    // ...and new connections pass.
    let mut after = connect(link.addr()).await;
    round_trip(&mut after, b"again").await;
    let stats = link.stats();
    assert_eq!(stats.closed_by_fault, 2);
    assert_eq!(stats.bytes_to_target, 10, "the held probes were discarded");
}

#[tokio::test]
async fn link_reset_closes_open_connections_and_refuses_new_ones() {
    let link = Link::start(echo_server().await).await.unwrap();
    let mut open = connect(link.addr()).await;
    round_trip(&mut open, b"hello").await;

    link.set_fault(Fault::Reset);
    closed(&mut open).await;
    let mut refused = connect(link.addr()).await;
    closed(&mut refused).await;
    assert_eq!(link.stats().closed_by_fault, 2);

    link.set_fault(Fault::Pass);
    let mut conn = connect(link.addr()).await;
    round_trip(&mut conn, b"back").await;
}

#[tokio::test]
async fn link_loss_of_one_closes_on_the_first_chunk() {
    let link = Link::builder(echo_server().await)
        .seed(7)
        .start()
        .await
        .unwrap();
    link.set_loss(1.0);
    assert_eq!(link.loss(), 1.0);
    let mut conn = connect(link.addr()).await;
    conn.write_all(b"lost").await.unwrap();
    closed(&mut conn).await;
    let stats = link.stats();
    assert_eq!(stats.closed_by_fault, 1);
    assert_eq!(stats.bytes_to_target, 0);

    // Out-of-range probabilities are clamped; zero loses nothing.
    link.set_loss(f64::NAN);
    assert_eq!(link.loss(), 0.0);
    let mut conn = connect(link.addr()).await;
    for _ in 0..20 {
        round_trip(&mut conn, b"kept").await;
    }
}

#[tokio::test]
async fn link_delay_holds_each_chunk_and_keeps_order() {
    let link = Link::start(echo_server().await).await.unwrap();
    link.set_delay(Duration::from_millis(400));
    assert_eq!(link.delay(), Duration::from_millis(400));
    let mut conn = connect(link.addr()).await;
    conn.write_all(b"first").await.unwrap();
    // Delayed twice (there and back): nothing yet.
    assert!(is_silent(&mut conn).await);

    // Many writes while delayed: all arrive, in order.
    link.set_delay(Duration::from_millis(5));
    let mut expected = b"first".to_vec();
    for i in 0..300u32 {
        let msg = format!("<{i}>");
        conn.write_all(msg.as_bytes()).await.unwrap();
        expected.extend_from_slice(msg.as_bytes());
    }
    let mut buf = vec![0; expected.len()];
    timeout(DEADLINE, conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn link_half_close_reaches_the_target_and_back() {
    let link = Link::start(echo_server().await).await.unwrap();
    let mut conn = connect(link.addr()).await;
    conn.write_all(b"bye").await.unwrap();
    conn.shutdown().await.unwrap();
    // The echo server sees end of stream, echoes, and ends its side.
    let mut all = Vec::new();
    timeout(DEADLINE, conn.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, b"bye");
    assert_eq!(link.stats().closed_by_fault, 0);
}

#[tokio::test]
async fn link_to_an_absent_target_closes_connections() {
    // A port nobody listens on (bound, then released).
    let absent = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let link = Link::start(absent).await.unwrap();
    let mut conn = connect(link.addr()).await;
    closed(&mut conn).await;
}

#[tokio::test]
async fn link_dropped_closes_its_connections_and_listener() {
    let link = Link::start(echo_server().await).await.unwrap();
    let addr = link.addr();
    let mut conn = connect(addr).await;
    round_trip(&mut conn, b"hello").await;
    drop(link);
    closed(&mut conn).await;
    // The listener goes with it (the abort lands at the task's next poll).
    timeout(DEADLINE, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener closes");
}

// ---------------------------------------------------------------------------------------------
// Mesh

/// `n` echo servers as nodes 1..=n, and a mesh between them.
async fn mesh(n: u64) -> (BTreeMap<u64, SocketAddr>, Mesh) {
    let mut nodes = BTreeMap::new();
    for id in 1..=n {
        nodes.insert(id, echo_server().await);
    }
    let mesh = Mesh::start_seeded(&nodes, 18).await.unwrap();
    (nodes, mesh)
}

#[tokio::test]
async fn mesh_dial_maps_route_through_the_links() {
    let (nodes, mesh) = mesh(3).await;
    assert_eq!(mesh.nodes(), &nodes);
    let map = mesh.dial_map(2);
    assert_eq!(map.len(), 3);
    assert_eq!(map[&2], nodes[&2], "a node dials itself directly");
    for to in [1, 3] {
        let link = mesh.link(2, to).unwrap();
        assert_eq!(map[&to], link.addr());
        assert_eq!(link.target(), nodes[&to]);
        assert_eq!(mesh.addr(2, to), Some(link.addr()));
    }
    assert!(mesh.dial_map(9).is_empty());
    assert_eq!(mesh.addr(1, 9), None);
    assert!(mesh.link(1, 1).is_none());
    // Six distinct links, six distinct ports.
    let ports: std::collections::BTreeSet<u16> = mesh
        .stats()
        .keys()
        .map(|&(a, b)| mesh.addr(a, b).unwrap().port())
        .collect();
    assert_eq!(ports.len(), 6);

    let mut conn = connect(mesh.addr(2, 3).unwrap()).await;
    round_trip(&mut conn, b"via the link").await;
    let stats = mesh.stats();
    assert_eq!(stats[&(2, 3)].bytes_to_target, 12);
    assert_eq!(stats[&(3, 2)].connections, 0);
}

#[tokio::test]
async fn mesh_cut_silences_one_direction_only() {
    let (_, mesh) = mesh(2).await;
    let mut one_to_two = connect(mesh.addr(1, 2).unwrap()).await;
    round_trip(&mut one_to_two, b"before").await;

    mesh.cut(1, 2);
    assert_eq!(mesh.link(1, 2).unwrap().fault(), Fault::Blackhole);
    assert_eq!(mesh.link(2, 1).unwrap().fault(), Fault::Pass);
    // Node 1's requests to node 2 vanish, on old and new connections...
    let mut fresh = connect(mesh.addr(1, 2).unwrap()).await;
    let (old_silent, fresh_silent) = tokio::join!(
        probe_is_silent(&mut one_to_two),
        probe_is_silent(&mut fresh)
    );
    assert!(old_silent && fresh_silent);
    // ...while node 2 still reaches node 1.
    let mut two_to_one = connect(mesh.addr(2, 1).unwrap()).await;
    round_trip(&mut two_to_one, b"still here").await;

    mesh.heal();
    closed(&mut one_to_two).await;
    let mut healed = connect(mesh.addr(1, 2).unwrap()).await;
    round_trip(&mut healed, b"after").await;
    // The reverse direction was never touched: its connection lives on.
    round_trip(&mut two_to_one, b"unbroken").await;
}

#[tokio::test]
async fn mesh_partition_blackholes_links_across_groups() {
    let (_, mesh) = mesh(3).await;
    mesh.partition(&[&[1], &[2, 3]]);
    let faults: BTreeMap<(u64, u64), Fault> = mesh
        .stats()
        .keys()
        .map(|&(a, b)| ((a, b), mesh.link(a, b).unwrap().fault()))
        .collect();
    for (&(from, to), &fault) in &faults {
        let across = (from == 1) != (to == 1);
        let expected = if across {
            Fault::Blackhole
        } else {
            Fault::Pass
        };
        assert_eq!(fault, expected, "{from} -> {to}");
    }
    // Traffic agrees: within the majority it flows, across it does not.
    let mut inside = connect(mesh.addr(3, 2).unwrap()).await;
    round_trip(&mut inside, b"majority").await;
    let mut out = connect(mesh.addr(1, 3).unwrap()).await;
    let mut back = connect(mesh.addr(2, 1).unwrap()).await;
    let (out_silent, back_silent) =
        tokio::join!(probe_is_silent(&mut out), probe_is_silent(&mut back));
    assert!(out_silent && back_silent);

    // A new partition replaces the old one; a node in no group is alone.
    mesh.partition(&[&[1, 2]]);
    assert_eq!(mesh.link(1, 2).unwrap().fault(), Fault::Pass);
    assert_eq!(mesh.link(2, 3).unwrap().fault(), Fault::Blackhole);
    assert_eq!(mesh.link(3, 1).unwrap().fault(), Fault::Blackhole);
    let mut healed = connect(mesh.addr(1, 2).unwrap()).await;
    round_trip(&mut healed, b"together").await;
}

#[tokio::test]
async fn mesh_isolate_and_heal() {
    let (_, mesh) = mesh(3).await;
    mesh.isolate(2);
    for (&(from, to), _) in mesh.stats().iter() {
        let touches = from == 2 || to == 2;
        let fault = mesh.link(from, to).unwrap().fault();
        assert_eq!(fault == Fault::Blackhole, touches, "{from} -> {to}");
    }
    let mut conn = connect(mesh.addr(1, 3).unwrap()).await;
    round_trip(&mut conn, b"others talk").await;
    let mut to_isolated = connect(mesh.addr(3, 2).unwrap()).await;
    assert!(probe_is_silent(&mut to_isolated).await);

    mesh.heal();
    assert!(
        mesh.stats()
            .keys()
            .all(|&(a, b)| mesh.link(a, b).unwrap().fault() == Fault::Pass)
    );
    closed(&mut to_isolated).await;
    let mut conn = connect(mesh.addr(3, 2).unwrap()).await;
    round_trip(&mut conn, b"rejoined").await;
}

#[tokio::test]
async fn mesh_settings_apply_to_every_link() {
    let (_, mesh) = mesh(3).await;
    mesh.set_delay(Duration::from_millis(3));
    mesh.set_loss(0.25);
    for &(a, b) in mesh.stats().keys() {
        let link = mesh.link(a, b).unwrap();
        assert_eq!(link.delay(), Duration::from_millis(3));
        assert_eq!(link.loss(), 0.25);
    }
    mesh.set_loss(1.0);
    let mut conn = connect(mesh.addr(1, 2).unwrap()).await;
    conn.write_all(b"x").await.unwrap();
    closed(&mut conn).await;
    assert_eq!(mesh.stats()[&(1, 2)].closed_by_fault, 1);
}

#[tokio::test]
async fn link_delay_beyond_the_clock_holds_bytes_for_good() {
    let link = Link::start(echo_server().await).await.unwrap();
    link.set_delay(Duration::MAX);
    let mut held = connect(link.addr()).await;
    // Held, and the connection stays up (a panicking task would have closed it).
    assert!(probe_is_silent(&mut held).await);
    link.set_delay(Duration::ZERO);
    let mut conn = connect(link.addr()).await;
    round_trip(&mut conn, b"prompt").await;
    assert!(is_silent(&mut held).await);
}
