//! `rpc-probe-server`: serves the `probe` protocol for the integration tests. Prints
//! `ready <endpoint>` on stdout once it listens. `--socket PATH` or `--tcp ADDR` (the secret
//! comes from `$CELL_SECRET`), then optionally `--max-frame BYTES` (default 64 KiB) and
//! `--read-budget BYTES` (`MembraneConfig::max_read_buffer_bytes`).

#[path = "probe.rs"]
mod probe;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cell_sdk::{
    Admission, Authenticated, CallContext, Endpoint, Membrane, MembraneConfig, Peer, Service,
    Streaming,
};
use probe::{Probe, ProbeClient, ProbeError, ProbeServer, Relayed, SeenContext};

#[derive(Default)]
struct ProbeCell {
    holding: Arc<AtomicU64>,
    sleeping: Arc<AtomicU64>,
    /// Connections asked to report their close (once each).
    watched: Mutex<HashSet<u64>>,
    /// Connections seen closing, in order.
    closed: Arc<Mutex<Vec<u64>>>,
    /// Items produced by `produce` streams.
    produced: Arc<AtomicU64>,
    /// `produce` producer tasks running.
    producers: Arc<AtomicU64>,
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
    async fn context(&self) -> SeenContext {
        let Some(ctx) = CallContext::current() else {
            panic!("a handler runs without a call context");
        };
        let connection = ctx.connection();
        let id = connection.id().get();
        let first = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        if first {
            let closed = self.closed.clone();
            connection.on_close(move || closed.lock().unwrap_or_else(|p| p.into_inner()).push(id));
        }
        let mut seen = SeenContext {
            connection: id,
            transport: String::new(),
            uid: None,
            pid: None,
            addr: None,
            authenticated: false,
            request_id: ctx.request_id(),
            method: ctx.method().to_string(),
            deadline_left_ms: ctx.deadline().map(|d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_millis() as u64
            }),
            metadata: ctx
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            traceparent: ctx.trace().map(|t| t.to_string()),
            span_id: ctx
                .span_id()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        };
        // Shown with the call's span (and its trace fields) when the log level allows.
        tracing::info!(connection = id, "context asked");
        match connection.peer() {
            Peer::Unix { uid, pid, .. } => {
                seen.transport = "unix".into();
                seen.uid = Some(*uid);
                seen.pid = *pid;
            }
            Peer::Tcp {
                addr,
                authenticated,
            } => {
                seen.transport = "tcp".into();
                seen.addr = Some(addr.to_string());
                seen.authenticated = *authenticated == Authenticated::SharedSecret;
            }
            other => seen.transport = format!("other: {other}"),
        }
        seen
    }
    async fn closed(&self) -> Vec<u64> {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    async fn relay(&self, socket: String) -> Result<Relayed, ProbeError> {
        let here = self.context().await;
        let failed = |e: &dyn std::fmt::Display| ProbeError::Failed(e.to_string());
        let next = ProbeClient::connect_to(Endpoint::unix(socket))
            .await
            .map_err(|e| failed(&e))?;
        let there = next.context().await.map_err(|e| failed(&e))?;
        Ok(Relayed { here, there })
    }
    async fn count(&self, n: u64) -> Streaming<u64> {
        Streaming::iter(0..n)
    }
    async fn count_then_fail(&self, fail_at: u64) -> Streaming<u64, ProbeError> {
        let items = (0..fail_at)
            .map(Ok)
            .chain(std::iter::once(Err(ProbeError::Negative(fail_at as i64))));
        Streaming::new(futures::stream::iter(items))
    }
    async fn produce(&self, size: u32) -> Streaming<Vec<u8>> {
        // A small channel: what the producer may run ahead of the client's credit.
        let (sender, stream) = Streaming::channel(4);
        let produced = self.produced.clone();
        self.producers.fetch_add(1, Ordering::SeqCst);
        let running = Held(self.producers.clone());
        tokio::spawn(async move {
            let _running = running;
            let mut n = 0u8;
            loop {
                let item = vec![n; size as usize];
                if sender.send(item).await.is_err() {
                    return; // The client is gone.
                }
                produced.fetch_add(1, Ordering::SeqCst);
                n = n.wrapping_add(1);
            }
        });
        stream
    }
    async fn produced(&self) -> u64 {
        self.produced.load(Ordering::SeqCst)
    }
    async fn producers(&self) -> u64 {
        self.producers.load(Ordering::SeqCst)
    }
    async fn stamp(&self, text: String) -> String {
        if !text.is_empty() {
            let mut md = cell_sdk::Metadata::new();
            md.insert("x-stamp", text.as_bytes())
                .expect("a short stamp");
            CallContext::current()
                .expect("inside a call")
                .set_reply_metadata(md);
        }
        text
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
    const USAGE: &str = "usage: rpc-probe-server (--socket PATH | --tcp ADDR) \
                         [--max-frame BYTES] [--read-budget BYTES] [--require KEY]";
    let mut args = std::env::args().skip(1);
    let endpoint = match (args.next().as_deref(), args.next()) {
        (Some("--socket"), Some(path)) => Endpoint::unix(path),
        (Some("--tcp"), Some(addr)) => Endpoint::tcp(addr),
        _ => anyhow::bail!(USAGE),
    };
    let mut config = MembraneConfig {
        max_frame_len: 64 * 1024,
        ..MembraneConfig::default()
    };
    let mut require = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow::anyhow!(USAGE))?;
        match flag.as_str() {
            "--max-frame" => config.max_frame_len = value.parse()?,
            "--read-budget" => config.max_read_buffer_bytes = value.parse()?,
            "--require" => require = Some(value),
            _ => anyhow::bail!(USAGE),
        }
    }
    let service = ProbeServer(ProbeCell::default());
    match require {
        // An admission check (what an auth layer does): calls without the metadata key are
        // refused before their handler runs — except `holding`, so tests can look.
        Some(key) => {
            let admission = Admission::new(service, move |ctx: &CallContext| {
                if ctx.method() == "holding" || ctx.metadata().get(&key).is_some() {
                    Ok(())
                } else {
                    Err(format!("metadata `{key}` is required"))
                }
            });
            serve(endpoint, admission, config).await
        }
        None => serve(endpoint, service, config).await,
    }
}

/// Serves until SIGTERM, after printing `ready <endpoint>`.
async fn serve<S: Service>(
    endpoint: Endpoint,
    service: S,
    config: MembraneConfig,
) -> anyhow::Result<()> {
    let membrane = Membrane::bind(endpoint, service, config)?;
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
