//! RPC round trip and pipelined throughput: Cell against a raw tokio Unix-socket ping-pong and
//! tarpc, all on `current_thread` runtimes (server and client each on their own thread), with
//! the same payload.
//!
//! ```sh
//! cargo run --release -p cell-bench --bin rpc                # 3 rounds, 64-byte payload
//! cargo run --release -p cell-bench --bin rpc -- --rounds 5 --payload 100
//! ```

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::Context;
use cell_bench::{Sample, latency, median_range, run_children};
use clap::Parser;
use futures::{StreamExt, future};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};

#[derive(Parser, Debug)]
#[command(about = "RPC round trip and pipelined throughput: Cell vs raw tokio vs tarpc")]
struct Args {
    /// Internal: run one measurement of this subject and print a JSON sample.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Separate processes per subject.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Measured round trips per process (10% more are run first as warm-up).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight for the throughput measurement.
    #[arg(long, default_value_t = 32)]
    depth: usize,
}

const SUBJECTS: [&str; 3] = ["raw", "tarpc", "cell"];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(subject) = &args.child {
        let sample = child(subject, &args)?;
        println!("{}", serde_json::to_string(&sample)?);
        return Ok(());
    }
    let extra = vec![
        "--payload".to_string(),
        args.payload.to_string(),
        "--requests".to_string(),
        args.requests.to_string(),
        "--depth".to_string(),
        args.depth.to_string(),
    ];
    let results = run_children(&SUBJECTS, args.rounds, &extra)?;
    report(&results, &args);
    Ok(())
}

fn report(results: &[(String, Vec<Sample>)], args: &Args) {
    let stat = |name: &str, f: &dyn Fn(&Sample) -> f64| {
        let samples = &results
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        median_range(samples.iter().map(f).collect())
    };
    println!(
        "\nRPC over a Unix socket, {} B payload, current_thread runtimes, {} processes per subject",
        args.payload, args.rounds
    );
    println!(
        "{:<8} {:>22} {:>12} {:>26} {:>10} {:>12}",
        "subject", "p50 µs (range)", "p99 µs", "throughput/s @depth", "p50/raw", "thr/tarpc"
    );
    let (raw_p50, _, _) = stat("raw", &|s| s.p50_ns as f64);
    let (tarpc_thr, _, _) = stat("tarpc", &|s| s.throughput);
    for (name, _) in results {
        let (p50, lo, hi) = stat(name, &|s| s.p50_ns as f64);
        let (p99, _, _) = stat(name, &|s| s.p99_ns as f64);
        let (thr, tlo, thi) = stat(name, &|s| s.throughput);
        println!(
            "{:<8} {:>8.1} ({:>5.1}-{:>5.1}) {:>12.1} {:>10.0} ({:.0}-{:.0}) {:>9.2}x {:>11.2}x",
            name,
            p50 / 1e3,
            lo / 1e3,
            hi / 1e3,
            p99 / 1e3,
            thr,
            tlo,
            thi,
            p50 / raw_p50,
            thr / tarpc_thr
        );
    }
}

/// One measurement in this process: a server thread and a client on the main thread.
fn child(subject: &str, args: &Args) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("bench.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match subject {
        "raw" => {
            let server_socket = socket.clone();
            let std_listener = std::os::unix::net::UnixListener::bind(&server_socket)?;
            std::thread::spawn(move || serve_thread(move || raw_server(std_listener)));
            rt.block_on(raw_client(&socket, args))
        }
        "tarpc" => {
            let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
            std::thread::spawn(move || serve_thread(move || tarpc_server(std_listener)));
            rt.block_on(tarpc_client(&socket, args))
        }
        "cell" => {
            let server_socket = socket.clone();
            std::thread::spawn(move || serve_thread(move || cell_server(server_socket)));
            rt.block_on(cell_client(&socket, args))
        }
        other => anyhow::bail!("unknown subject {other:?}"),
    }
}

fn serve_thread<F, Fut>(make: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server runtime: {e}");
            return;
        }
    };
    if let Err(e) = rt.block_on(make()) {
        eprintln!("server: {e:#}");
    }
}

// ---- raw tokio: length-prefixed echo ------------------------------------------------------

async fn raw_server(listener: std::os::unix::net::UnixListener) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // Buffered reads: one read syscall per request in the common case, as any
            // well-written raw server would do.
            let (rd, mut stream) = stream.into_split();
            let mut rd = tokio::io::BufReader::new(rd);
            let mut buf = Vec::new();
            loop {
                let mut len = [0u8; 4];
                if rd.read_exact(&mut len).await.is_err() {
                    return;
                }
                let n = u32::from_le_bytes(len) as usize;
                buf.resize(4 + n, 0);
                buf[..4].copy_from_slice(&len);
                if rd.read_exact(&mut buf[4..]).await.is_err() {
                    return;
                }
                if stream.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn raw_client(socket: &Path, args: &Args) -> anyhow::Result<Sample> {
    let mut frame = (args.payload as u32).to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(7u8, args.payload));
    let mut stream = UnixStream::connect(socket).await?;
    let mut reply = vec![0u8; frame.len()];
    let mut hist = cell_bench::histogram();
    for i in 0..args.requests + args.requests / 10 {
        let start = Instant::now();
        stream.write_all(&frame).await?;
        stream.read_exact(&mut reply).await?;
        if i >= args.requests / 10 {
            hist.record(cell_bench::nanos(start.elapsed()))?;
        }
    }
    // Pipelined: a writer keeps `depth` frames outstanding, a reader consumes replies.
    let stream = UnixStream::connect(socket).await?;
    let (mut rd, mut wr) = stream.into_split();
    let total = args.requests;
    let permits = Arc::new(Semaphore::new(args.depth));
    let start = Instant::now();
    let writer = {
        let permits = permits.clone();
        let frame = frame.clone();
        async move {
            for _ in 0..total {
                permits.acquire().await?.forget();
                wr.write_all(&frame).await?;
            }
            anyhow::Ok(())
        }
    };
    let reader = async move {
        let mut reply = vec![0u8; frame.len()];
        for _ in 0..total {
            rd.read_exact(&mut reply).await?;
            permits.add_permits(1);
        }
        anyhow::Ok(())
    };
    let (w, r) = tokio::join!(writer, reader);
    w?;
    r?;
    let throughput = total as f64 / start.elapsed().as_secs_f64();
    Ok(Sample {
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        throughput,
    })
}

/// Latency (one call in flight) and throughput (`depth` tasks sharing the client) of one
/// echo call, made by `call` with a fresh payload each time.
async fn measure<F, Fut>(args: &Args, call: F) -> anyhow::Result<Sample>
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let payload = vec![7u8; args.payload];
    let hist = latency(args.requests / 10, args.requests, || call(payload.clone())).await?;
    let per_task = args.requests / args.depth;
    let start = Instant::now();
    let tasks = (0..args.depth).map(|_| async {
        for _ in 0..per_task {
            call(payload.clone()).await?;
        }
        anyhow::Ok(())
    });
    for r in future::join_all(tasks).await {
        r?;
    }
    let throughput = (per_task * args.depth) as f64 / start.elapsed().as_secs_f64();
    Ok(Sample {
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        throughput,
    })
}

// ---- tarpc ----------------------------------------------------------------------------------

#[tarpc::service]
trait Echo {
    async fn echo(payload: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: tarpc::context::Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

async fn tarpc_server(listener: std::os::unix::net::UnixListener) -> anyhow::Result<()> {
    use tarpc::server::{BaseChannel, Channel};
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let framed = tarpc::tokio_util::codec::length_delimited::Builder::new().new_framed(stream);
        let transport =
            tarpc::serde_transport::new(framed, tarpc::tokio_serde::formats::Bincode::default());
        let channel = BaseChannel::with_defaults(transport);
        tokio::spawn(
            channel
                .execute(EchoServer.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                }),
        );
    }
}

async fn tarpc_client(socket: &Path, args: &Args) -> anyhow::Result<Sample> {
    let stream = UnixStream::connect(socket).await?;
    let framed = tarpc::tokio_util::codec::length_delimited::Builder::new().new_framed(stream);
    let transport =
        tarpc::serde_transport::new(framed, tarpc::tokio_serde::formats::Bincode::default());
    let client = EchoClient::new(tarpc::client::Config::default(), transport).spawn();
    measure(args, move |payload| {
        let client = client.clone();
        async move {
            let reply = client
                .echo(tarpc::context::current(), payload)
                .await
                .context("tarpc call")?;
            anyhow::ensure!(reply.len() == args.payload, "short reply");
            Ok(())
        }
    })
    .await
}

// ---- Cell -----------------------------------------------------------------------------------

/// The same echo protocol as the anchors, as a Cell service (api-trait form).
#[cell_sdk::service(name = "bench-echo")]
pub trait CellEcho {
    /// Returns the payload unchanged.
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8>;
}

struct CellEchoImpl;

impl CellEcho for CellEchoImpl {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

async fn cell_server(socket: std::path::PathBuf) -> anyhow::Result<()> {
    let membrane = cell_sdk::Membrane::bind_unix(&socket, CellEchoServer(CellEchoImpl))?;
    membrane.serve().await?;
    Ok(())
}

async fn cell_client(socket: &Path, args: &Args) -> anyhow::Result<Sample> {
    // The server thread binds asynchronously: retry the first connect briefly.
    let mut client = None;
    for _ in 0..200 {
        match CellEchoClient::connect_to(cell_sdk::Endpoint::unix(socket)).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    let client = client.context("connecting to the Cell echo server")?;
    measure(args, move |payload| {
        let client = client.clone();
        async move {
            let reply = client.echo(payload).await.context("cell call")?;
            anyhow::ensure!(reply.len() == args.payload, "short reply");
            Ok(())
        }
    })
    .await
}
