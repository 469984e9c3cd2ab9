//! `ping-server`: serves the ping cell on `$CELL_SOCKET_DIR/ping.sock` (or `--socket`), or on
//! TCP with `--tcp` (the shared secret comes from `$CELL_SECRET`). Stops gracefully on
//! SIGINT/SIGTERM.

use anyhow::Context;
use cell_sdk::{Endpoint, MembraneConfig};
use clap::Parser;
use ping_api::PingServer;
use ping_server::PingCell;

/// Serve the ping cell.
#[derive(Parser)]
struct Args {
    /// Unix socket path (default: `$CELL_SOCKET_DIR/ping.sock`).
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// Serve on TCP at this address instead (needs `$CELL_SECRET`).
    #[arg(long, conflicts_with = "socket")]
    tcp: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or CI output shows escape codes as text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let endpoint = match (args.tcp, args.socket) {
        (Some(addr), _) => Endpoint::tcp(addr),
        (None, Some(path)) => Endpoint::unix(path),
        (None, None) => Endpoint::for_cell("ping"),
    };
    cell_sdk::serve_at(
        endpoint,
        PingServer(PingCell::default()),
        MembraneConfig::default(),
    )
    .await
    .context("ping server")
}
