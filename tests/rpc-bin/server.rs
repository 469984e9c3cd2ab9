//! `rpc-probe-server`: serves the `probe` protocol for the integration tests. Prints
//! `ready <endpoint>` on stdout once it listens. `--socket PATH` or `--tcp ADDR` (the secret
//! comes from `$CELL_SECRET`).

#[path = "probe.rs"]
mod probe;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cell_sdk::{Endpoint, Membrane, MembraneConfig};
use probe::{Probe, ProbeError, ProbeServer};

#[derive(Default)]
struct ProbeCell {
    holding: Arc<AtomicU64>,
    sleeping: Arc<AtomicU64>,
}

/// Decrements a counter of running calls when the call's future ends or is dropped.
struct Held(Arc<AtomicU64>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe for ProbeCell {
    async fn echo(&self, text: String) -> String {
        text
    }
    async fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    async fn sleep(&self, ms: u64) -> u64 {
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let _asleep = Held(self.sleeping.clone());
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        ms
    }
    async fn panic(&self, message: String) -> u64 {
        panic!("{message}")
    }
    async fn check(&self, n: i64) -> Result<u64, ProbeError> {
        u64::try_from(n).map_err(|_| ProbeError::Negative(n))
    }
    async fn pid(&self) -> u32 {
        std::process::id()
    }
    async fn hold(&self) -> u64 {
        self.holding.fetch_add(1, Ordering::SeqCst);
        let _held = Held(self.holding.clone());
        std::future::pending::<()>().await;
        0
    }
    async fn holding(&self) -> u64 {
        self.holding.load(Ordering::SeqCst)
    }
    async fn sleeping(&self) -> u64 {
        self.sleeping.load(Ordering::SeqCst)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut args = std::env::args().skip(1);
    let endpoint = match (args.next().as_deref(), args.next()) {
        (Some("--socket"), Some(path)) => Endpoint::unix(path),
        (Some("--tcp"), Some(addr)) => Endpoint::tcp(addr),
        _ => anyhow::bail!("usage: rpc-probe-server (--socket PATH | --tcp ADDR)"),
    };
    let config = MembraneConfig {
        max_frame_len: 64 * 1024,
        ..MembraneConfig::default()
    };
    let membrane = Membrane::bind(endpoint, ProbeServer(ProbeCell::default()), config)?;
    let shutdown = membrane.shutdown_handle();
    println!("ready {}", membrane.endpoint());
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        term.recv().await;
        shutdown.shutdown();
        Ok::<_, std::io::Error>(())
    });
    membrane.serve().await?;
    Ok(())
}
