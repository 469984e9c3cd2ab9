//! `ping-demo`: the quickest way to see two cells talk. It serves the ping cell on a socket in
//! a private temporary directory, connects a typed client over that socket (a real Unix
//! socket, the same path as between processes), and calls it: plain values, an application
//! error, 1,000 calls with 32 in flight on one connection, and a server-to-client stream.

use std::time::Instant;

use anyhow::Context;
use cell_sdk::{CallError, Endpoint, Membrane, MembraneConfig};
use futures::StreamExt;
use ping_api::{EchoError, Message, PingClient, PingServer};
use ping_server::PingCell;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = cell_sdk::testkit::temp_socket_dir().context("temporary socket directory")?;
    let socket = dir.path().join("ping.sock");
    let server = Membrane::bind(
        Endpoint::unix(&socket),
        PingServer(PingCell::default()),
        MembraneConfig::default(),
    )?;
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(server.serve());
    println!("ping cell serving on {}", socket.display());

    let ping = PingClient::connect_to(Endpoint::unix(&socket)).await?;
    println!("ping(41)                -> {}", ping.ping(41).await?);
    let echoed = ping
        .echo(Message {
            seq: 7,
            text: "cells talk".into(),
        })
        .await?;
    println!(
        "echo(\"cells talk\")      -> {:?} (seq {})",
        echoed.text, echoed.seq
    );
    match ping
        .echo(Message {
            seq: 8,
            text: String::new(),
        })
        .await
    {
        Err(CallError::App(e @ EchoError::Empty)) => {
            println!("echo(\"\")                -> application error {e:?}")
        }
        other => anyhow::bail!("expected an application error, got {other:?}"),
    }

    let started = Instant::now();
    let calls = 1_000u64;
    let mut next = 0u64;
    let mut in_flight = Vec::new();
    let mut sum = 0u64;
    while next < calls || !in_flight.is_empty() {
        while next < calls && in_flight.len() < 32 {
            let ping = ping.clone();
            let n = next;
            in_flight.push(tokio::spawn(async move { ping.ping(n).await }));
            next += 1;
        }
        let batch = std::mem::take(&mut in_flight);
        for call in batch {
            sum += call.await??;
        }
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(sum == (1..=calls).sum::<u64>(), "wrong replies");
    println!(
        "{calls} pings, 32 in flight -> {:.0} calls/s (debug builds are slower; see the benchmark)",
        calls as f64 / elapsed.as_secs_f64()
    );
    // A server-to-client stream: items arrive as the consumer takes them.
    let countdown: Vec<u64> = ping
        .countdown(5)
        .await?
        .map(|item| item.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!("countdown(5) (a stream) -> {countdown:?}");
    println!("served                  -> {}", ping.served().await?);

    shutdown.shutdown();
    serving.await??;
    println!("ping cell stopped");
    Ok(())
}
