//! Shared measurement helpers for the benchmark binaries in `src/bin/`.
//!
//! Method (see the shared field notes): an hdrhistogram per request, one request in flight for
//! latency and 32 for throughput, a warm-up of at least 10% that is not recorded, at least three
//! separate processes per subject, and results reported as the median p50 with its range and as
//! ratios against an anchor measured in the same run. Absolute times alone mean little on a
//! shared two-core VM; ratios within one run do.
//!
//! # Example
//! ```
//! use cell_bench::{histogram, median_range};
//!
//! let mut h = histogram();
//! for ns in [9_000, 10_000, 11_000] {
//!     h.record(ns).unwrap();
//! }
//! assert!(h.value_at_quantile(0.5).abs_diff(10_000) < 10);
//! // Three runs' p50s → their median and range, as the tables print them.
//! assert_eq!(median_range(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
//! ```

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
    /// CPU time of the whole process (client and server threads) per request of the latency
    /// run, in nanoseconds; 0 when not measured.
    #[serde(default)]
    pub cpu_ns: f64,
    /// Voluntary context switches (a thread parked) of the whole process per request of the
    /// latency run; 0 when not measured.
    #[serde(default)]
    pub switches: f64,
    /// CPU time of the whole process per request of the throughput run, in nanoseconds.
    #[serde(default)]
    pub thr_cpu_ns: f64,
    /// Times any vCPU of the machine entered a halting idle state, per request of the latency
    /// run (system-wide: other processes' idleness counts too); 0 when not measured.
    #[serde(default)]
    pub halts: f64,
}

/// What the threads of this process used so far: CPU time, run-queue wait (both in
/// nanoseconds, from `/proc/self/task/*/schedstat`) and voluntary context switches. Linux only;
/// zeros elsewhere. Threads that already exited are not counted, so measure while they live.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Time on a CPU.
    pub cpu_ns: u64,
    /// Time runnable but waiting for a CPU.
    pub wait_ns: u64,
    /// Voluntary context switches (the thread blocked).
    pub switches: u64,
    /// Entries into a halting cpuidle state (any state but `POLL`) of every CPU of the
    /// machine, from `/sys/devices/system/cpu/cpu*/cpuidle/state*/usage`.
    pub halts: u64,
}

impl Usage {
    /// Sums every thread of this process.
    pub fn now() -> Usage {
        let mut total = Usage::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return total;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            if let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) {
                let mut fields = stat
                    .split_whitespace()
                    .map(|f| f.parse::<u64>().unwrap_or(0));
                total.cpu_ns += fields.next().unwrap_or(0);
                total.wait_ns += fields.next().unwrap_or(0);
            }
            if let Ok(status) = std::fs::read_to_string(dir.join("status")) {
                total.switches += status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        total.halts = halts();
        total
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            switches: self.switches.saturating_sub(earlier.switches),
            halts: self.halts.saturating_sub(earlier.halts),
        }
    }
}

/// Entries into halting idle states, summed over all CPUs (see [`Usage::halts`]).
fn halts() -> u64 {
    let mut total = 0;
    let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return 0;
    };
    for cpu in cpus.flatten() {
        let Ok(states) = std::fs::read_dir(cpu.path().join("cpuidle")) else {
            continue;
        };
        for state in states.flatten() {
            let dir = state.path();
            let polling =
                std::fs::read_to_string(dir.join("name")).is_ok_and(|n| n.trim() == "POLL");
            if !polling {
                total += std::fs::read_to_string(dir.join("usage"))
                    .ok()
                    .and_then(|u| u.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// Records latencies in nanoseconds (1 ns .. 10 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid, so this cannot fail.
    Histogram::new_with_bounds(1, 10_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Runs `op` `warmup + measured` times one at a time and records the measured ones. A non-zero
/// `gap` puts the thread to sleep that long before each one (not timed): a client that calls
/// now and then rather than back to back.
pub async fn latency<F, Fut>(
    warmup: usize,
    measured: usize,
    gap: Duration,
    mut op: F,
) -> anyhow::Result<Histogram<u64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..warmup {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        op().await?;
    }
    let mut hist = histogram();
    for _ in 0..measured {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
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

/// Spinning by hand, for the anchors' `+spin` and `+busy` treatments: the same guards as the
/// runtime's `spin` (`cell_runtime`'s `io::Spin`), so that treatments compare like for like.
/// `sched_yield` at most once per 2 µs per thread; a yield during which the thread was switched
/// out (an involuntary context switch) for at least 50 µs lost its CPU to another process,
/// and then the thread stops spinning for a back-off of 10 ms doubling up to 1 s, reset after
/// a yield that kept the CPU.
pub mod spin {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    const YIELD_EVERY: Duration = Duration::from_micros(2);
    const LOST_AFTER: Duration = Duration::from_micros(50);
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    thread_local! {
        static LAST_YIELD: Cell<Option<Instant>> = const { Cell::new(None) };
        static OFF_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
        static PERIOD: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// How long this thread still backs off from spinning (`None`: it may spin).
    pub fn backing_off() -> Option<Duration> {
        let until = OFF_UNTIL.get()?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// One spin round: `true` to poll again without parking (after a throttled
    /// `sched_yield`), `false` to park (the thread backs off, or this yield lost the CPU).
    pub fn round() -> bool {
        if backing_off().is_some() {
            return false;
        }
        let start = Instant::now();
        if LAST_YIELD
            .get()
            .is_some_and(|t| start.saturating_duration_since(t) < YIELD_EVERY)
        {
            return true;
        }
        let before = involuntary_switches();
        std::thread::yield_now();
        let back = Instant::now();
        LAST_YIELD.set(Some(back));
        if back.saturating_duration_since(start) >= LOST_AFTER && involuntary_switches() != before {
            let period = if PERIOD.get().is_zero() {
                FIRST
            } else {
                PERIOD.get().saturating_mul(2).min(LONGEST)
            };
            PERIOD.set(period);
            OFF_UNTIL.set(back.checked_add(period));
            return false;
        }
        PERIOD.set(Duration::ZERO);
        true
    }

    #[expect(
        unsafe_code,
        reason = "getrusage(RUSAGE_THREAD), which std does not wrap"
    )]
    fn involuntary_switches() -> libc::c_long {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_THREAD reads this thread only.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        // SAFETY: zeroed is a valid `rusage`, and getrusage filled it on success.
        let usage = unsafe { usage.assume_init() };
        if rc == 0 { usage.ru_nivcsw } else { -1 }
    }
}

/// One busy thread per CPU (`--contend`): the CPU contention of a loaded CI machine, where
/// every core has a runnable process. The threads belong to this process, so they cannot
/// outlive it, and they stop when the guard is dropped.
#[derive(Debug)]
pub struct Contention {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Contention {
    /// Starts one spinning thread per available CPU.
    pub fn start() -> Contention {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Contention { stop, threads }
    }

    /// How many busy threads run.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
