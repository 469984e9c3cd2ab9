//! `ping-client`: calls the ping cell. It depends on `ping-api` alone — no server code is
//! compiled into it (the api-crate pattern, `docs/rpc.md`; check with
//! `cargo tree -p ping-client`).

use anyhow::Context;
use cell_sdk::{CallError, Endpoint};
use clap::Parser;
use ping_api::{EchoError, Message, PingClient};

/// Call the ping cell.
#[derive(Parser)]
struct Args {
    /// Unix socket path (default: `$CELL_SOCKET_DIR/ping.sock`).
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// Connect over TCP instead (needs `$CELL_SECRET`).
    #[arg(long, conflicts_with = "socket")]
    tcp: Option<String>,
    /// How many pings to send.
    #[arg(long, default_value_t = 3)]
    count: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = match (args.tcp, args.socket) {
        (Some(addr), _) => Endpoint::tcp(addr),
        (None, Some(path)) => Endpoint::unix(path),
        (None, None) => Endpoint::for_cell("ping"),
    };
    let ping = PingClient::connect_to(endpoint.clone())
        .await
        .with_context(|| format!("connecting to the ping cell at {endpoint}"))?;
    for n in 0..args.count {
        println!("ping({n}) = {}", ping.ping(n).await?);
    }
    let echoed = ping
        .echo(Message {
            seq: 1,
            text: "hello".into(),
        })
        .await?;
    println!("echo = {:?}", echoed.text);
    match ping
        .echo(Message {
            seq: 2,
            text: String::new(),
        })
        .await
    {
        Err(CallError::App(EchoError::Empty)) => println!("echo(\"\") = EchoError::Empty"),
        other => anyhow::bail!("expected EchoError::Empty, got {other:?}"),
    }
    println!("served = {}", ping.served().await?);
    Ok(())
}
