//! Memory per connection (issue 12): a header announcing a large request must not make the
//! server allocate it before its bytes arrive, and the bytes held for incomplete frames across
//! all connections are bounded (`MembraneConfig::max_read_buffer_bytes`). Measured on a real
//! server process through `/proc/<pid>/status` (VmRSS), with generous bounds: the defect
//! this reproduces took 16 MiB per connection.

use std::io::Write;
use std::time::Duration;

use cell_runtime::frame::{Header, Kind};
use cell_sdk::testkit::temp_socket_dir;

use super::rpc::probe::ProbeClient;
use super::rpc::{Server, raw_handshake};

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS: <n> kB");
    kib * 1024
}

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "current_thread")]
async fn announced_max_size_frames_do_not_cost_their_size_and_clients_are_still_served() {
    let dir = temp_socket_dir().unwrap();
    let socket = dir.path().join("probe.sock");
    let server = Server::start(
        &[
            "--socket",
            socket.to_str().unwrap(),
            "--max-frame",
            &(16 * MIB).to_string(),
            "--read-budget",
            &(16 * MIB).to_string(),
        ],
        &[],
    );
    let pid = server.child.id();
    let probe = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    let before = rss(pid);

    // 60 connections each announce a 16 MiB request. The first 30 send nothing more; the others
    // send 2 MiB of it (far past the budget together: the server closes some of them).
    let mut hostile = Vec::new();
    for i in 0..60 {
        let mut stream = raw_handshake(&server.endpoint);
        let mut header = Header::new(Kind::Request);
        header.len = (16 * MIB) as u32;
        header.id = 1;
        stream.write_all(&header.to_bytes()).unwrap();
        if i >= 30 {
            // A closed connection makes this fail (EPIPE): that is the budget at work.
            let _ = stream.write_all(&vec![0u8; (2 * MIB) as usize]);
        }
        hostile.push(stream);
    }
    // Well-behaved clients are served meanwhile, a request above the uncharged 64 KiB
    // included (the budget is not all spent by the connections it closed).
    let other = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    for i in 0..50 {
        assert_eq!(probe.add(i, 1).await.unwrap(), i + 1);
        assert_eq!(
            other.echo(format!("call {i}")).await.unwrap(),
            format!("call {i}")
        );
    }
    let text = "x".repeat(32 * 1024);
    assert_eq!(other.echo(text.clone()).await.unwrap(), text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss(pid);
    let grown = after.saturating_sub(before);
    // Unfixed: ≥ 60 × 16 MiB. With buffers that only follow the bytes received, but no
    // budget: ~30 × 4 MiB. Bounded: the budget (16 MiB) plus 60 × 64 KiB plus slack.
    assert!(
        grown < 100 * MIB,
        "the server grew by {} MiB (from {} MiB) for 60 announced 16 MiB frames",
        grown / MIB,
        before / MIB
    );
    drop(hostile);
}
