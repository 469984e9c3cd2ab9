//! RPC round trip and pipelined throughput: Cell against a raw tokio Unix-socket ping-pong and
//! tarpc, all on `current_thread` runtimes (server and client each on their own thread), with
//! the same payload.
//!
//! Each subject runs with its own defaults (all three park in `epoll_wait` when they wait:
//! Cell's `spin` is zero unless `$CELL_SPIN_US` is set) or with an idle-time treatment, the
//! same for all where it applies: `+park` (Cell with `spin` zero), `+spin` (a bounded
//! busy-poll of the socket before parking, `--spin-us`: Cell's `spin` setting on both sides,
//! and the same loop written by hand for raw; tarpc has no such hook) and `+busy` (a task on
//! each runtime that never lets its thread park unless it backs off: the upper bound of
//! spinning, which applies to any tokio program, tarpc included). The hand-written spinning
//! uses `cell_bench::spin`, the runtime's guards (throttled `sched_yield`, back-off after
//! losing the CPU), so treatments are equivalent. The report also gives the CPU time per
//! request of the whole process (both threads), the voluntary context switches and the vCPU
//! halts per request, so that spinning's cost is visible next to its gain.
//!
//! Placement matters on a VM: `--cpus 0,1` pins the client and server threads to different
//! CPUs (`taskset -c 0` runs both on one). `--gap-us` spaces the calls out (sparse traffic),
//! `--connections` spreads them over several connections, `--contend` runs one busy thread
//! per CPU for the whole run (a loaded CI machine). Method and figures: `docs/benchmarks.md`.
//!
//! Two more Cell subjects measure protocol 4's extension points against plain `cell` in the
//! same run: `cell-ctx` (the handler reads its `CallContext`) and `cell-md` (every call carries
//! 64 B of metadata); treatments (`+spin`, …) apply to them as to `cell`. `cell-owned` and
//! `cell-borrowed` send the payload to a handler that sums its bytes from a deserialized
//! `Vec<u8>` or in place from the borrowed archive (run them with `--payload 65536`).
//! `cell-stream` (protocol 5) measures its latency like `cell` and its throughput as items per
//! second of one server-to-client stream of `--thr-requests` items of `--payload` bytes
//! (default credit window, 32): the report prints its ratio to `cell`'s pipelined unary calls
//! (`--depth` in flight) when both ran.
//!
//! ```sh
//! cargo run --release -p cell-bench --bin rpc                # 3 rounds, 64-byte payload
//! cargo run --release -p cell-bench --bin rpc -- --rounds 5 --requests 20000
//! cargo run --release -p cell-bench --bin rpc -- --rounds 5 --requests 20000 --cpus 0,1
//! cargo run --release -p cell-bench --bin rpc -- --subjects raw,tarpc,cell  # defaults only
//! cargo run --release -p cell-bench --bin rpc -- --rounds 3 --contend --subjects cell,cell+spin
//! cargo run --release -p cell-bench --bin rpc -- --rounds 3 --requests 5000 --subjects cell,cell-ctx,cell-md
//! cargo run --release -p cell-bench --bin rpc -- --rounds 3 --requests 2000 --subjects cell,cell-stream
//! ```

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use cell_bench::{Contention, Sample, Usage, latency, median_range, run_children, spin};
use clap::Parser;
use futures::{StreamExt, future};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
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
    /// Requests of the throughput run (longer than the latency run: it is over in a few ms
    /// otherwise, and one hiccup of a shared VM decides the figure).
    #[arg(long, default_value_t = 100_000)]
    thr_requests: usize,
    /// Connections the tarpc and Cell clients open; calls take them in turn (one server
    /// thread serves them all). The raw anchor always uses one.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight for the throughput measurement.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Pin the client thread to the first CPU and the server thread to the second
    /// (`--cpus 0,1`: every wake-up crosses vCPUs; `--cpus 0,0`: like `taskset -c 0`).
    /// Unpinned by default.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    cpus: Option<Vec<usize>>,
    /// Pause between the calls of the latency run, in microseconds (the thread sleeps; not
    /// timed): shows what spinning costs when calls are sparse.
    #[arg(long, default_value_t = 0)]
    gap_us: u64,
    /// Run one busy thread per CPU in this (parent) process while the subjects run, as on a
    /// loaded CI machine. They stop when the benchmark ends.
    #[arg(long)]
    contend: bool,
    /// Busy-poll budget of the `+spin` subjects, in microseconds.
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// Subjects to run, comma-separated: raw, tarpc, cell, each optionally with `+park`,
    /// `+spin` (not tarpc) or `+busy`; `cell+cspin` and `cell+sspin` spin on the client or the
    /// server side only. The first is the anchor of the p50 ratio.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,tarpc,cell,raw+spin,tarpc+busy,cell+spin"
    )]
    subjects: Vec<String>,
}

/// What a thread does when it has nothing to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Idle {
    /// The subject's own default: all park in `epoll_wait` at once (Cell spins only if
    /// `$CELL_SPIN_US` sets a default budget).
    Default,
    /// Parks in `epoll_wait` at once (Cell with `spin` zero on both sides).
    Park,
    /// Busy-polls its socket for up to `--spin-us` before parking.
    Spin,
    /// Never parks: a task yields forever on each runtime (except while backing off).
    Busy,
    /// Cell only: `spin` on the client side only.
    ClientSpin,
    /// Cell only: `spin` on the server side only.
    ServerSpin,
}

fn parse_subject(subject: &str) -> anyhow::Result<(&str, Idle)> {
    let (name, idle) = match subject.split_once('+') {
        None => (subject, Idle::Default),
        Some((name, "park")) => (name, Idle::Park),
        Some((name, "spin")) => (name, Idle::Spin),
        Some((name, "busy")) => (name, Idle::Busy),
        Some((cell @ ("cell" | "cell-ctx" | "cell-md"), "cspin")) => (cell, Idle::ClientSpin),
        Some((cell @ ("cell" | "cell-ctx" | "cell-md"), "sspin")) => (cell, Idle::ServerSpin),
        Some((_, other)) => anyhow::bail!("unknown treatment +{other} in {subject:?}"),
    };
    match (name, idle) {
        ("tarpc", Idle::Spin) => anyhow::bail!("tarpc has no spin hook; use tarpc+busy"),
        (
            "raw" | "tarpc" | "cell" | "cell-ctx" | "cell-md" | "cell-owned" | "cell-borrowed"
            | "cell-stream",
            _,
        ) => Ok((name, idle)),
        _ => anyhow::bail!("unknown subject {subject:?}"),
    }
}

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
        "--spin-us".to_string(),
        args.spin_us.to_string(),
        "--gap-us".to_string(),
        args.gap_us.to_string(),
        "--thr-requests".to_string(),
        args.thr_requests.to_string(),
        "--connections".to_string(),
        args.connections.to_string(),
    ];
    for subject in &args.subjects {
        parse_subject(subject)?;
    }
    let mut extra = extra;
    if let Some(cpus) = &args.cpus {
        anyhow::ensure!(cpus.len() == 2, "--cpus takes two CPUs: client,server");
        extra.push("--cpus".to_string());
        extra.push(format!("{},{}", cpus[0], cpus[1]));
    }
    let subjects: Vec<&str> = args.subjects.iter().map(String::as_str).collect();
    let contention = args.contend.then(Contention::start);
    if let Some(c) = &contention {
        eprintln!("contention: {} busy threads", c.threads());
    }
    let results = run_children(&subjects, args.rounds, &extra);
    // Stop the busy threads before reporting (and on error: the guard's drop joins them).
    drop(contention);
    report(&results?, &args);
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
        "\nRPC over a Unix socket, {} B payload, current_thread runtimes, {} processes per \
         subject, +spin = {} µs{}",
        args.payload,
        args.rounds,
        args.spin_us,
        if args.contend {
            ", one busy thread per CPU"
        } else {
            ""
        }
    );
    println!(
        "{:<11} {:>20} {:>8} {:>9} {:>7} {:>7} {:>26} {:>9} {:>8} {:>9} {:>10}",
        "subject",
        "p50 µs (range)",
        "p99 µs",
        "cpu µs/rq",
        "csw/rq",
        "hlt/rq",
        "throughput/s (range)",
        "cpu µs/rq",
        "p50/raw",
        "tarpc/p50",
        "thr/tarpc"
    );
    let anchor = results.first().map(|(n, _)| n.as_str()).unwrap_or("raw");
    let (raw_p50, _, _) = stat(anchor, &|s| s.p50_ns as f64);
    let measured = |subject: &str| results.iter().any(|(n, _)| n == subject);
    // Cell against tarpc with the same idle-time treatment: tarpc parks by default and has
    // no spin hook, so spinning subjects meet `tarpc+busy` (the upper bound of spinning).
    let ratio = |name: &str, value: f64, metric: &dyn Fn(&Sample) -> f64, tarpc_over: bool| {
        let like = match parse_subject(name).map(|(_, idle)| idle) {
            Ok(Idle::Default | Idle::Park) => "tarpc",
            _ => "tarpc+busy",
        };
        if !measured(like) {
            return "-".to_string();
        }
        let (tarpc, _, _) = stat(like, metric);
        let r = if tarpc_over {
            tarpc / value
        } else {
            value / tarpc
        };
        format!("{r:.2}x")
    };
    for (name, _) in results {
        let (p50, lo, hi) = stat(name, &|s| s.p50_ns as f64);
        let (p99, _, _) = stat(name, &|s| s.p99_ns as f64);
        let (cpu, _, _) = stat(name, &|s| s.cpu_ns);
        let (csw, _, _) = stat(name, &|s| s.switches);
        let (hlt, _, _) = stat(name, &|s| s.halts);
        let (thr, tlo, thi) = stat(name, &|s| s.throughput);
        let (thr_cpu, _, _) = stat(name, &|s| s.thr_cpu_ns);
        println!(
            "{:<11} {:>6.1} ({:>5.1}-{:>5.1}) {:>8.1} {:>9.1} {:>7.2} {:>7.2} {:>9.0} ({:>6.0}-{:>7.0}) \
             {:>9.2} {:>7.2}x {:>9} {:>10}",
            name,
            p50 / 1e3,
            lo / 1e3,
            hi / 1e3,
            p99 / 1e3,
            cpu / 1e3,
            csw,
            hlt,
            thr,
            tlo,
            thi,
            thr_cpu / 1e3,
            p50 / raw_p50,
            ratio(name, p50, &|s| s.p50_ns as f64, true),
            ratio(name, thr, &|s| s.throughput, false),
        );
    }
    println!(
        "tarpc/p50, thr/tarpc: against tarpc with the same idle treatment (parking subjects: \
         tarpc; +spin, +busy: tarpc+busy); - when that tarpc subject was not run"
    );
    if measured("cell") && measured("cell-stream") {
        let (unary, _, _) = stat("cell", &|s| s.throughput);
        let (stream, lo, hi) = stat("cell-stream", &|s| s.throughput);
        println!(
            "stream of {} B items: {stream:.0} items/s ({lo:.0}-{hi:.0}) = {:.2}x cell's \
             pipelined unary calls ({unary:.0}/s, {} in flight)",
            args.payload,
            stream / unary,
            args.depth
        );
    }
}

/// One measurement in this process: a server thread and a client on the main thread.
fn child(subject: &str, args: &Args) -> anyhow::Result<Sample> {
    let (name, idle) = parse_subject(subject)?;
    // `None`: the library's default (for raw: park).
    let budget = Some(Duration::from_micros(args.spin_us));
    let zero = Some(Duration::ZERO);
    let (spin, server_spin) = match idle {
        Idle::Default => (None, None),
        Idle::Spin => (budget, budget),
        Idle::ClientSpin => (budget, zero),
        Idle::ServerSpin => (zero, budget),
        Idle::Park | Idle::Busy => (zero, zero),
    };
    let busy = idle == Idle::Busy;
    let (client_cpu, server_cpu) = match args.cpus.as_deref() {
        Some([client, server]) => (Some(*client), Some(*server)),
        _ => (None, None),
    };
    if let Some(cpu) = client_cpu {
        pin_to(cpu)?;
    }
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("bench.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = async {
        if busy {
            tokio::spawn(never_park());
        }
        match name {
            "raw" => raw_client(&socket, args, spin.unwrap_or_default()).await,
            "tarpc" => tarpc_client(&socket, args).await,
            cell => cell_client(&socket, args, spin, cell).await,
        }
    };
    let pin_server = move || {
        if let Some(cpu) = server_cpu
            && let Err(e) = pin_to(cpu)
        {
            eprintln!("pinning the server thread: {e}");
        }
    };
    match name {
        "raw" => {
            let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
            std::thread::spawn(move || {
                pin_server();
                serve_thread(busy, move || {
                    raw_server(std_listener, server_spin.unwrap_or_default())
                })
            });
        }
        "tarpc" => {
            let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
            std::thread::spawn(move || {
                pin_server();
                serve_thread(busy, move || tarpc_server(std_listener))
            });
        }
        _ => {
            let server_socket = socket.clone();
            std::thread::spawn(move || {
                pin_server();
                serve_thread(busy, move || cell_server(server_socket, server_spin))
            });
        }
    }
    rt.block_on(client)
}

/// Pins the calling thread to one CPU.
#[expect(unsafe_code, reason = "sched_setaffinity, which std does not wrap")]
fn pin_to(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: `set` is a plain bit set on the stack, fully initialised by CPU_ZERO, and
    // sched_setaffinity only reads it; pid 0 is the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    anyhow::ensure!(
        rc == 0,
        "sched_setaffinity to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The `+busy` treatment: keeps its runtime from ever parking. Each round hands the CPU to
/// any other runnable thread (`spin::round`), then lets the runtime poll its I/O driver
/// without blocking; after losing the CPU it sleeps out the back-off, as Cell's spin would.
async fn never_park() {
    loop {
        if spin::round() {
            tokio::task::yield_now().await;
        } else {
            let pause = spin::backing_off().unwrap_or(Duration::from_millis(1));
            tokio::time::sleep(pause).await;
        }
    }
}

fn serve_thread<F, Fut>(busy: bool, make: F)
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
    if let Err(e) = rt.block_on(async {
        if busy {
            tokio::spawn(never_park());
        }
        make().await
    }) {
        eprintln!("server: {e:#}");
    }
}

// ---- raw tokio: length-prefixed echo ------------------------------------------------------

async fn raw_server(
    listener: std::os::unix::net::UnixListener,
    spin: Duration,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        if !spin.is_zero() {
            tokio::spawn(raw_spin_echo(stream, spin));
            continue;
        }
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

/// The raw echo with `+spin`: the same length-prefixed echo, reading through a buffer with
/// [`SpinRead`], so that it busy-polls its socket before parking exactly like Cell's `spin`.
async fn raw_spin_echo(stream: UnixStream, spin: Duration) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = SpinRead::new(rd, spin);
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_le_bytes(len) as usize;
        buf.resize(4 + n, 0);
        buf[..4].copy_from_slice(&len);
        if rd.read_exact(&mut buf[4..]).await.is_err() || wr.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// A buffered reader that, when its socket has nothing, polls it again after letting the
/// runtime check for readiness without blocking (`yield_now`), for up to `spin` before
/// parking: the mechanism of Cell's `spin` setting, written by hand for the raw anchor.
struct SpinRead {
    rd: OwnedReadHalf,
    spin: Duration,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl SpinRead {
    fn new(rd: OwnedReadHalf, spin: Duration) -> SpinRead {
        SpinRead {
            rd,
            spin,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    async fn read_exact(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.start == self.end {
                self.start = 0;
                self.end = self.fill().await?;
            }
            let n = (self.end - self.start).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            filled += n;
        }
        Ok(())
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let idle_since = Instant::now();
        // As in the runtime: no `sched_yield` in the first round, then the shared guards.
        let mut first = true;
        loop {
            match self.rd.try_read(&mut self.buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if idle_since.elapsed() < self.spin
                        && (std::mem::take(&mut first) && spin::backing_off().is_none()
                            || spin::round())
                    {
                        tokio::task::yield_now().await;
                    } else {
                        self.rd.readable().await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn raw_client(socket: &Path, args: &Args, spin: Duration) -> anyhow::Result<Sample> {
    let mut frame = (args.payload as u32).to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(7u8, args.payload));
    let mut reply = vec![0u8; frame.len()];
    let mut hist = cell_bench::histogram();
    let before = Usage::now();
    let rounds = args.requests + args.requests / 10;
    if spin.is_zero() {
        let mut stream = UnixStream::connect(socket).await?;
        for i in 0..rounds {
            if args.gap_us > 0 {
                std::thread::sleep(Duration::from_micros(args.gap_us));
            }
            let start = Instant::now();
            stream.write_all(&frame).await?;
            stream.read_exact(&mut reply).await?;
            if i >= args.requests / 10 {
                hist.record(cell_bench::nanos(start.elapsed()))?;
            }
        }
    } else {
        let (rd, mut wr): (OwnedReadHalf, OwnedWriteHalf) =
            UnixStream::connect(socket).await?.into_split();
        let mut rd = SpinRead::new(rd, spin);
        for i in 0..rounds {
            if args.gap_us > 0 {
                std::thread::sleep(Duration::from_micros(args.gap_us));
            }
            let start = Instant::now();
            wr.write_all(&frame).await?;
            rd.read_exact(&mut reply).await?;
            if i >= args.requests / 10 {
                hist.record(cell_bench::nanos(start.elapsed()))?;
            }
        }
    }
    let used = Usage::now().since(before);
    // Pipelined: a writer keeps `depth` frames outstanding, a reader consumes replies.
    let stream = UnixStream::connect(socket).await?;
    let (mut rd, mut wr) = stream.into_split();
    let total = args.thr_requests;
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
    let before_thr = Usage::now();
    let (w, r) = tokio::join!(writer, reader);
    w?;
    r?;
    let throughput = total as f64 / start.elapsed().as_secs_f64();
    let used_thr = Usage::now().since(before_thr);
    Ok(Sample {
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        throughput,
        cpu_ns: used.cpu_ns as f64 / rounds as f64,
        switches: used.switches as f64 / rounds as f64,
        halts: used.halts as f64 / rounds as f64,
        thr_cpu_ns: used_thr.cpu_ns as f64 / total as f64,
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
    let before = Usage::now();
    let gap = Duration::from_micros(args.gap_us);
    let hist = latency(args.requests / 10, args.requests, gap, || {
        call(payload.clone())
    })
    .await?;
    let used = Usage::now().since(before);
    let rounds = (args.requests + args.requests / 10) as f64;
    let per_task = args.thr_requests / args.depth;
    let before_thr = Usage::now();
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
    let used_thr = Usage::now().since(before_thr);
    Ok(Sample {
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        throughput,
        cpu_ns: used.cpu_ns as f64 / rounds,
        switches: used.switches as f64 / rounds,
        halts: used.halts as f64 / rounds,
        thr_cpu_ns: used_thr.cpu_ns as f64 / (per_task * args.depth) as f64,
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
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let stream = UnixStream::connect(socket).await?;
        let framed = tarpc::tokio_util::codec::length_delimited::Builder::new().new_framed(stream);
        let transport =
            tarpc::serde_transport::new(framed, tarpc::tokio_serde::formats::Bincode::default());
        clients.push(EchoClient::new(tarpc::client::Config::default(), transport).spawn());
    }
    let turn = std::cell::Cell::new(0usize);
    measure(args, move |payload| {
        turn.set(turn.get().wrapping_add(1));
        let client = clients[turn.get() % clients.len()].clone();
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
    /// Returns the payload unchanged after reading the call's context (`cell-ctx`).
    async fn echo_ctx(&self, payload: Vec<u8>) -> Vec<u8>;
    /// The payload's byte sum, from a deserialized copy (`cell-owned`).
    async fn sum_owned(&self, payload: Vec<u8>) -> u64;
    /// The payload's byte sum, read in place from the archive (`cell-borrowed`).
    async fn sum_borrowed(&self, payload: &cell_sdk::Archived<Vec<u8>>) -> u64;
    /// `n` items of `size` bytes (`cell-stream`).
    async fn items(&self, n: u64, size: u32) -> cell_sdk::Streaming<Vec<u8>>;
}

struct CellEchoImpl;

impl CellEcho for CellEchoImpl {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
    async fn echo_ctx(&self, payload: Vec<u8>) -> Vec<u8> {
        // What a handler that uses its context does: read the connection id and request id.
        let seen = cell_sdk::CallContext::with_current(|ctx| {
            ctx.map(|c| (c.connection().id().get(), c.request_id()))
        });
        std::hint::black_box(seen);
        payload
    }
    async fn sum_owned(&self, payload: Vec<u8>) -> u64 {
        payload.iter().map(|b| u64::from(*b)).sum()
    }
    async fn sum_borrowed(&self, payload: &cell_sdk::Archived<Vec<u8>>) -> u64 {
        payload.iter().map(|b| u64::from(*b)).sum()
    }
    async fn items(&self, n: u64, size: u32) -> cell_sdk::Streaming<Vec<u8>> {
        // One fresh item per step, as an echo handler has one fresh payload per call.
        cell_sdk::Streaming::iter((0..n).map(move |_| vec![7u8; size as usize]))
    }
}

async fn cell_server(socket: std::path::PathBuf, spin: Option<Duration>) -> anyhow::Result<()> {
    let mut config = cell_sdk::MembraneConfig::default();
    if let Some(spin) = spin {
        config.spin = spin;
    }
    let membrane = cell_sdk::Membrane::bind(
        cell_sdk::Endpoint::unix(&socket),
        CellEchoServer(CellEchoImpl),
        config,
    )?;
    membrane.serve().await?;
    Ok(())
}

/// `subject`: `cell` (plain calls), `cell-ctx` (the handler reads its context) or `cell-md`
/// (every call carries 64 B of metadata).
async fn cell_client(
    socket: &Path,
    args: &Args,
    spin: Option<Duration>,
    subject: &str,
) -> anyhow::Result<Sample> {
    let mut config = cell_sdk::SynapseConfig::default();
    if let Some(spin) = spin {
        config.spin = spin;
    }
    // The server thread binds asynchronously: retry the first connect briefly.
    let mut client = None;
    for _ in 0..200 {
        match CellEchoClient::connect_with(cell_sdk::Endpoint::unix(socket), config.clone()).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    let mut clients = vec![client.context("connecting to the Cell echo server")?];
    while clients.len() < args.connections {
        clients.push(
            CellEchoClient::connect_with(cell_sdk::Endpoint::unix(socket), config.clone()).await?,
        );
    }
    if subject == "cell-md" {
        // 64 bytes of metadata on the wire: 4 (block length) + 1 + 9 ("x-request") + 2 + 48.
        let mut md = cell_sdk::Metadata::new();
        md.insert("x-request", &[7u8; 48])?;
        clients = clients
            .iter()
            .map(|c| c.with_metadata(md.clone()))
            .collect();
    }
    if subject == "cell-stream" {
        // Latency as `cell` (one echo in flight), throughput as one stream's items per second.
        let client = clients[0].clone();
        let mut sample = measure(args, |payload| {
            let client = client.clone();
            async move {
                client.echo(payload).await.context("cell call")?;
                Ok(())
            }
        })
        .await?;
        let n = args.thr_requests as u64;
        let before = Usage::now();
        let start = Instant::now();
        let mut stream = client
            .items(n, args.payload as u32)
            .await
            .context("opening the stream")?;
        let mut got = 0u64;
        while let Some(item) = stream.next().await {
            anyhow::ensure!(
                item.context("stream item")?.len() == args.payload,
                "short item"
            );
            got += 1;
        }
        anyhow::ensure!(got == n, "the stream ended after {got} of {n} items");
        sample.throughput = n as f64 / start.elapsed().as_secs_f64();
        sample.thr_cpu_ns = Usage::now().since(before).cpu_ns as f64 / n as f64;
        return Ok(sample);
    }
    let read_context = subject == "cell-ctx";
    let sum = match subject {
        "cell-owned" => Some(false),
        "cell-borrowed" => Some(true),
        _ => None,
    };
    let turn = std::cell::Cell::new(0usize);
    measure(args, move |payload| {
        turn.set(turn.get().wrapping_add(1));
        let client = clients[turn.get() % clients.len()].clone();
        async move {
            if let Some(borrowed) = sum {
                let expected: u64 = payload.iter().map(|b| u64::from(*b)).sum();
                let got = if borrowed {
                    client.sum_borrowed(payload).await
                } else {
                    client.sum_owned(payload).await
                }
                .context("cell call")?;
                anyhow::ensure!(got == expected, "wrong sum");
                return Ok(());
            }
            let reply = if read_context {
                client.echo_ctx(payload).await
            } else {
                client.echo(payload).await
            }
            .context("cell call")?;
            anyhow::ensure!(reply.len() == args.payload, "short reply");
            Ok(())
        }
    })
    .await
}
