//! Shared measurement helpers for the benchmark binaries in `src/bin/`.
//!
//! Method (see the shared field notes): an hdrhistogram per request, one request in flight for
//! latency and 32 for throughput, a warm-up of at least 10% that is not recorded, at least three
//! separate processes per subject, and results reported as the median p50 with its range and as
//! ratios against an anchor measured in the same run. Absolute times alone mean little on a
//! shared two-core VM; ratios within one run do.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// What one child process measured for one subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Median round trip, one request in flight, in nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile round trip, one request in flight, in nanoseconds.
    pub p99_ns: u64,
    /// Completed requests per second with `depth` requests in flight.
    pub throughput: f64,
}

/// Records latencies in nanoseconds (1 ns .. 10 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid, so this cannot fail.
    Histogram::new_with_bounds(1, 10_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Runs `op` `warmup + measured` times one at a time and records the measured ones.
pub async fn latency<F, Fut>(
    warmup: usize,
    measured: usize,
    mut op: F,
) -> anyhow::Result<Histogram<u64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..warmup {
        op().await?;
    }
    let mut hist = histogram();
    for _ in 0..measured {
        let start = Instant::now();
        op().await?;
        hist.record(nanos(start.elapsed()))?;
    }
    Ok(hist)
}

/// Duration as whole nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs this executable once per (round, subject) as `self --child <subject> <args…>`,
/// interleaving subjects so that drift on the VM affects all of them alike, and parses the
/// JSON [`Sample`] each child prints on its last line.
pub fn run_children(
    subjects: &[&str],
    rounds: usize,
    extra_args: &[String],
) -> anyhow::Result<Vec<(String, Vec<Sample>)>> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let mut results: Vec<(String, Vec<Sample>)> = subjects
        .iter()
        .map(|s| (s.to_string(), Vec::new()))
        .collect();
    for round in 0..rounds {
        for (subject, samples) in &mut results {
            eprintln!("round {}/{rounds}: {subject}", round + 1);
            let output = Command::new(&exe)
                .arg("--child")
                .arg(subject.as_str())
                .args(extra_args)
                .output()
                .with_context(|| format!("running the {subject} child"))?;
            if !output.status.success() {
                bail!(
                    "{subject} child failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout.lines().last().context("child printed nothing")?;
            samples.push(serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))?);
        }
    }
    Ok(results)
}

/// Median and range of a list of values.
pub fn median_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}
