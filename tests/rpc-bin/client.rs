//! `rpc-probe-client`: a client process for the integration tests. Connects to a probe
//! server (`--socket PATH` or `--tcp ADDR`; the secret comes from `$CELL_SECRET`), makes
//! `--calls N` calls with 8 in flight, and prints `ok <calls> pid <server pid>`; on failure it
//! prints the error and exits with status 1.

#[path = "probe.rs"]
mod probe;

use anyhow::Context;
use cell_sdk::Endpoint;
use probe::ProbeClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = match args.first().map(String::as_str) {
        Some("--socket") => Endpoint::unix(args.get(1).context("--socket PATH")?),
        Some("--tcp") => Endpoint::tcp(args.get(1).context("--tcp ADDR")?.clone()),
        _ => anyhow::bail!("usage: rpc-probe-client (--socket PATH | --tcp ADDR) [--calls N]"),
    };
    let calls: u64 = match args.get(2).map(String::as_str) {
        Some("--calls") => args.get(3).context("--calls N")?.parse()?,
        _ => 100,
    };
    let probe = ProbeClient::connect_to(endpoint).await?;
    let mut done = 0;
    while done < calls {
        let batch = (done..calls.min(done + 8)).map(|i| {
            let probe = probe.clone();
            async move { (i, probe.add(i, 1).await) }
        });
        for (i, sum) in futures::future::join_all(batch).await {
            anyhow::ensure!(sum? == i + 1, "wrong sum for {i}");
            done += 1;
        }
    }
    let pid = probe.pid().await?;
    println!("ok {done} pid {pid}");
    Ok(())
}
