//! A quick latency probe, not the project's benchmark: one round trip at a time over a Unix
//! socket, Cell RPC (`Membrane` + `Synapse`, hand-written service) against a raw tokio
//! `current_thread` ping-pong of the same payload size, both in this process with the server
//! on its own thread and runtime. Run with
//! `cargo run --release -p cell-runtime --example pingpong`.

use std::time::{Duration, Instant};

use cell_runtime::codec::{self, Bytes, EncodeError};
use cell_runtime::{
    DispatchError, Endpoint, Membrane, Protocol, Service, Status, Synapse, SynapseConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Protocol for Echo {
    const NAME: &'static str = "echo";
    const FINGERPRINT: u64 = 1;
    const METHODS: &'static [&'static str] = &["echo"];
}

impl Service for Echo {
    type Call = u64;
    type Reply = u64;
    fn decode(_: u16, payload: &[u8]) -> Result<u64, DispatchError> {
        Ok(codec::from_bytes(payload)?)
    }
    async fn call(&self, n: u64) -> u64 {
        n + 1
    }
    fn encode(reply: &u64, out: &mut Bytes) -> Result<Status, EncodeError> {
        codec::append(reply, out).map(|()| Status::Ok)
    }
}

const ROUNDS: usize = 20_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let dir = cell_runtime::testkit::temp_socket_dir().expect("dir");
    let raw_path = dir.path().join("raw.sock");
    let rpc_path = dir.path().join("echo.sock");

    // Raw server: read 32 bytes, write 32 bytes.
    let listener = std::os::unix::net::UnixListener::bind(&raw_path).expect("bind");
    std::thread::spawn(move || {
        rt().block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 32];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        })
    });
    let rpc_server_path = rpc_path.clone();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let m = Membrane::bind_unix(&rpc_server_path, Echo).expect("bind");
            m.serve().await.expect("serve");
        })
    });
    std::thread::sleep(Duration::from_millis(200));

    rt().block_on(async move {
        let mut raw = tokio::net::UnixStream::connect(&raw_path)
            .await
            .expect("connect");
        let mut buf = [0u8; 32];
        let mut raw_samples = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS + ROUNDS / 10 {
            let t = Instant::now();
            raw.write_all(&buf).await.expect("write");
            raw.read_exact(&mut buf).await.expect("read");
            if i >= ROUNDS / 10 {
                raw_samples.push(t.elapsed());
            }
        }
        let client = Synapse::connect::<Echo>(Endpoint::unix(&rpc_path), SynapseConfig::default())
            .await
            .expect("connect");
        let mut rpc_samples = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS + ROUNDS / 10 {
            let t = Instant::now();
            let r: u64 = client.call_infallible(0, &(i as u64)).await.expect("call");
            assert_eq!(r, i as u64 + 1);
            if i >= ROUNDS / 10 {
                rpc_samples.push(t.elapsed());
            }
        }
        // Pipelined: 32 in flight on one connection.
        let start = Instant::now();
        let total = 64_000u64;
        let mut calls = futures::stream::FuturesUnordered::new();
        let mut next = 0u64;
        let mut done = 0u64;
        use futures::StreamExt;
        while done < total {
            while next < total && calls.len() < 32 {
                let c = client.clone();
                let n = next;
                calls.push(async move { c.call_infallible::<u64, u64>(0, &n).await });
                next += 1;
            }
            if let Some(r) = calls.next().await {
                r.expect("call");
                done += 1;
            }
        }
        let throughput = total as f64 / start.elapsed().as_secs_f64();
        let (rp50, rp99) = (
            percentile(&mut raw_samples, 0.5),
            percentile(&mut raw_samples, 0.99),
        );
        let (cp50, cp99) = (
            percentile(&mut rpc_samples, 0.5),
            percentile(&mut rpc_samples, 0.99),
        );
        println!("raw tokio ping-pong: p50 {rp50:?} p99 {rp99:?}");
        println!(
            "cell rpc:            p50 {cp50:?} p99 {cp99:?}  (p50 ratio {:.2}x)",
            cp50.as_secs_f64() / rp50.as_secs_f64()
        );
        println!("cell rpc pipelined (32 in flight): {throughput:.0} calls/s");
    });
}
