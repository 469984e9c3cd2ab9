//! The server processes a subject starts (etcd members, `celldb serve` nodes): each logs to a
//! file of its own, none outlives the benchmark, and a member that dies is reported with the
//! end of its log.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Processes killed (SIGKILL) and reaped when this guard drops: at the end of a subject, on an
/// error and on a panic. If the benchmark itself is killed, `PR_SET_PDEATHSIG` kills them.
#[derive(Debug, Default)]
pub(crate) struct Processes {
    children: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Processes {
    /// Starts `cmd` as the server `name`, its stdout and stderr appended to `log`.
    #[expect(
        unsafe_code,
        reason = "pre_exec + prctl(PR_SET_PDEATHSIG): no server outlives the benchmark"
    )]
    pub(crate) fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in
        // the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = spawn_from_keeper_thread(cmd)
            .with_context(|| format!("starting {name} ({program})"))?;
        self.children.push(Server {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        });
        Ok(())
    }

    /// CPU seconds (user and system) each server has used so far, in the order they were
    /// started.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.children
            .iter()
            .map(|server| {
                let pid = server.child.id();
                cpu_seconds_of(&format!("/proc/{pid}/stat"))
                    .with_context(|| format!("reading the CPU time of {}", server.name))
            })
            .collect()
    }

    /// Fails, with the end of its log, if a server has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for server in &mut self.children {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "{} exited ({status}); the end of {}:\n{}",
                    server.name,
                    server.log.display(),
                    log_tail(&server.log)
                );
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for server in &mut self.children {
            let _ = server.child.kill();
        }
        for server in &mut self.children {
            let _ = server.child.wait();
        }
    }
}

/// CPU seconds this process (the benchmark's client side) has used so far.
pub(crate) fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_of("/proc/self/stat")
}

/// utime + stime of a `/proc/…/stat` file, in seconds.
fn cpu_seconds_of(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    // SAFETY: sysconf reads a constant of the system.
    #[expect(
        unsafe_code,
        reason = "sysconf(_SC_CLK_TCK): the unit of /proc's CPU times"
    )]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(per_second > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok(ticks as f64 / per_second as f64)
}

/// utime + stime, in clock ticks, of the text of a `/proc/…/stat` file.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses:
    // count fields from the last `)`. utime and stime are fields 14 and 15, the 12th and 13th
    // after it.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no command name")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {} is not a tick count", i + 3))
    };
    Ok(ticks(11)? + ticks(12)?)
}

/// Spawns `cmd` from a thread that never ends, so that `PR_SET_PDEATHSIG` (tied to the
/// spawning *thread*, and tokio's worker threads come and go) fires only when the process
/// exits.
fn spawn_from_keeper_thread(mut cmd: Command) -> anyhow::Result<Child> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cluster-keeper".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })
        .context("starting the keeper thread")?;
    Ok(rx.recv().context("keeper thread")??)
}

/// The last 40 lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A loopback port nobody listens on right now (the OS picks it; it is free again when this
/// returns, and a server started at once gets it).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `ready` says yes, checking every 100 ms that no server died meanwhile.
pub(crate) async fn wait_until<F, Fut>(
    processes: &mut Processes,
    what: &str,
    timeout: Duration,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        processes.check_alive()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of `GET path` over HTTP/1.0 (a Prometheus `/metrics` page, a `/health` check).
#[cfg_attr(
    not(feature = "etcd"),
    expect(dead_code, reason = "only the etcd subject speaks HTTP")
)]
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .with_context(|| format!("GET http://{addr}{path}: no answer in 10 s"))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET http://{addr}{path}: no HTTP header"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET http://{addr}{path}: {status}");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (celldb (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat).unwrap(), 42);
        assert!(cpu_ticks("4242 (celldb) S 1 2").is_err());
        assert!(cpu_ticks("no name at all").is_err());
    }

    #[test]
    fn this_process_cpu_time_grows_while_it_works() {
        let before = own_cpu_seconds().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while own_cpu_seconds().unwrap() <= before {
            x = x.wrapping_mul(31).wrapping_add(7);
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no CPU time was counted"
            );
        }
        std::hint::black_box(x);
    }
}
