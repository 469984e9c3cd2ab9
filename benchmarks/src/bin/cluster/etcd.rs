//! The anchor: three etcd 3.4 members on loopback (Debian's `etcd-server`, default settings:
//! every WAL append is fsynced before the member acknowledges it), driven through the
//! `etcd-client` crate (tonic gRPC). A put returns once the entry is committed, i.e. in the
//! fsynced WAL of a majority, and applied; a get is etcd's default linearizable range (a
//! ReadIndex round through the leader), not a serializable one.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use anyhow::{Context, bail};
use etcd_client::{Client, ConnectOptions};
use futures::future::BoxFuture;

use crate::{
    Subject,
    process::{Processes, free_port, http_get, wait_until},
};

/// The Prometheus counter of WAL fsyncs (the histogram's count), one per member.
const WAL_FSYNCS: &str = "etcd_disk_wal_fsync_duration_seconds_count";

/// A running three-member cluster and a client of all three members (`etcd_client::Client`
/// has no `Debug`, hence none here).
pub(crate) struct Etcd {
    client: Client,
    /// Each member's client URL, where `/metrics` is served.
    members: Vec<SocketAddr>,
    version: String,
    // Dropped in this order: the members, then their data directories.
    processes: Processes,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `members` members of a new cluster with data directories under `base`, waits
    /// until each reports itself healthy, and connects.
    pub(crate) async fn start(binary: &Path, base: &Path, members: usize) -> anyhow::Result<Etcd> {
        let version = version(binary)?;
        if !version.starts_with("3.4.") {
            eprintln!(
                "warning: {} is etcd {version}; the benchmark's anchor is etcd 3.4 \
                 (benchmarks/scripts/setup-etcd.sh)",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("cluster-etcd-")
            .tempdir_in(base)
            .with_context(|| format!("creating a directory in {}", base.display()))?;
        let mut ports = Vec::new();
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut processes = Processes::default();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{}", i + 1);
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(binary);
            cmd.arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-token", "cell-bench-cluster"])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            processes.spawn(
                &format!("etcd member {name}"),
                cmd,
                &dir.path().join(format!("{name}.log")),
            )?;
        }
        let members: Vec<SocketAddr> = ports
            .iter()
            .map(|(client, _)| SocketAddr::from(([127, 0, 0, 1], *client)))
            .collect();
        for &member in &members {
            wait_until(
                &mut processes,
                &format!("etcd member at {member}"),
                Duration::from_secs(30),
                || async move {
                    http_get(member, "/health")
                        .await
                        .is_ok_and(|body| body.contains("\"health\":\"true\""))
                },
            )
            .await?;
        }
        let endpoints: Vec<String> = members.iter().map(|m| format!("http://{m}")).collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        let client = Client::connect(&endpoints, Some(options))
            .await
            .context("connecting to the etcd members")?;
        Ok(Etcd {
            client,
            members,
            version,
            processes,
            _dir: dir,
        })
    }
}

impl Subject for Etcd {
    fn describe(&self) -> String {
        format!("etcd {} ({} members)", self.version, self.members.len())
    }

    fn put<'a>(&'a self, key: u64, value: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.client
                .kv_client()
                .put(key.to_be_bytes(), value, None)
                .await?;
            Ok(())
        })
    }

    fn get(&self, key: u64) -> BoxFuture<'_, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let response = self.client.kv_client().get(key.to_be_bytes(), None).await?;
            Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.processes.cpu_seconds()
    }

    fn fsyncs(&self) -> BoxFuture<'_, anyhow::Result<Vec<u64>>> {
        Box::pin(async move {
            let mut counts = Vec::new();
            for &member in &self.members {
                let page = http_get(member, "/metrics").await?;
                counts.push(counter(&page, WAL_FSYNCS).with_context(|| {
                    format!("no {WAL_FSYNCS} in the metrics of the member at {member}")
                })?);
            }
            Ok(counts)
        })
    }
}

/// The value of an unlabelled counter in a Prometheus text page.
fn counter(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        // Counts are integers, but the format allows a float (`1.5e+06`).
        let value: f64 = value.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value as u64)
    })
}

/// `3.4.23` from `etcd --version`.
fn version(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "running `{} --version`: install etcd 3.4 with benchmarks/scripts/setup-etcd.sh, \
             or name it with --etcd",
                binary.display()
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .map(str::trim)
    {
        Some(v) if output.status.success() => Ok(v.to_string()),
        _ => bail!(
            "`{} --version` printed no version: {text:?}",
            binary.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_reads_the_wal_fsync_count_and_not_its_buckets() {
        let page = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 7\n\
            etcd_disk_wal_fsync_duration_seconds_sum 0.25\n\
            etcd_disk_wal_fsync_duration_seconds_count 1234\n\
            etcd_disk_wal_fsync_duration_seconds_count_other 9\n";
        assert_eq!(counter(page, WAL_FSYNCS), Some(1234));
        assert_eq!(counter("x 1\n", WAL_FSYNCS), None);
        assert_eq!(
            counter(&format!("{WAL_FSYNCS} 1.5e+03\n"), WAL_FSYNCS),
            Some(1500)
        );
    }
}
