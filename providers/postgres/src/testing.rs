//! A private PostgreSQL server for tests, examples and benchmarks (feature `testing`).
//!
//! [`shared`] starts one server per process (in a temp directory, on a random loopback port,
//! its Unix socket in that directory) and [`Server::database`] creates a fresh database per
//! test. The binaries come from `pg_config --bindir` (Debian's `postgresql` package). `initdb`
//! and `postgres` refuse to run as root, so as root they run as the `postgres` system user
//! (override with `CELL_PG_USER`), in a directory chowned to it. `CELL_PG_BINDIR` names
//! another directory of binaries.
//!
//! **No server outlives the process.** The postmaster is spawned from a thread that lives as
//! long as the process, with `PR_SET_PDEATHSIG = SIGKILL`: when the test process exits (or is
//! killed), the kernel kills the postmaster, and its backends exit on postmaster death. A
//! [`Server`] that is dropped stops its server at once (SIGQUIT: immediate shutdown); the
//! shared one is stopped and its directory removed at exit (`atexit`), and the directories of
//! killed test processes are removed by the next start (each holds its owner's pid).
//!
//! Without the binaries, [`shared`] returns `None` after printing why (the tests skip), unless
//! `CI=true` or `CELL_PG_REQUIRED=1`, where it panics: CI must run these tests.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Pg;

/// The database user the test servers create (a superuser, trust authentication, loopback only).
pub const USER: &str = "cell";

/// A running private server.
#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    durable: bool,
    next_db: std::sync::atomic::AtomicU32,
}

/// The process-wide server, started on first use; `None` (after a printed message) when
/// PostgreSQL is not installed and `CI` is not `true`.
///
/// # Panics
/// When the server cannot start (or the binaries are missing under `CI=true`): tests must not
/// pass silently.
#[expect(unsafe_code, reason = "atexit, which std does not wrap")]
pub fn shared() -> Option<&'static Server> {
    SHARED
        .get_or_init(|| match Server::start() {
            Ok(server) => {
                // A static is never dropped: stop the server and remove its directory when
                // the process exits normally (a killed process leaves the directory to
                // `remove_stale_dirs`).
                // SAFETY: `stop_shared` is an `extern "C" fn()` that does not unwind.
                unsafe {
                    libc::atexit(stop_shared);
                }
                Some(server)
            }
            Err(Unavailable::NotInstalled(why)) => {
                if required() {
                    panic!("PostgreSQL is required (CI=true or CELL_PG_REQUIRED=1): {why}");
                }
                // Straight to stderr: libtest captures `eprintln!`, and this must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping the PostgreSQL tests: {why} (install Debian's `postgresql` \
                     package; under CI=true or CELL_PG_REQUIRED=1 this fails)"
                );
                None
            }
            Err(Unavailable::Failed(why)) => panic!("cannot start PostgreSQL: {why}"),
        })
        .as_ref()
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Some(server)) = SHARED.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(server.dir.path());
    }
}

/// The name of the file holding the pid of the process that owns a server directory.
const OWNER: &str = "owner.pid";

/// Removes the directories of servers whose owning process is gone (killed before it could
/// clean up), so repeated test runs do not fill the temp directory.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("cell-pg-"));
        let owner = std::fs::read_to_string(path.join(OWNER))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        if is_ours
            && let Some(pid) = owner
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether a missing PostgreSQL fails the tests: `CI=true` or `CELL_PG_REQUIRED=1`
/// (`.ci/run` sets the latter).
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("CELL_PG_REQUIRED").is_ok_and(|v| v == "1")
}

/// Why a server did not start.
#[derive(Debug)]
pub enum Unavailable {
    /// No PostgreSQL binaries: tests skip (outside CI).
    NotInstalled(String),
    /// They are there but the server did not start: tests fail.
    Failed(String),
}

impl Server {
    /// Starts a new private server (its own data directory and port).
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn start() -> Result<Server, Unavailable> {
        Server::start_with(false)
    }

    /// Starts a new private server that fsyncs its commits, as a production server does
    /// (for benchmarks; tests use [`Server::start`], which does not fsync).
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn start_durable() -> Result<Server, Unavailable> {
        Server::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Server, Unavailable> {
        let bin = bindir().map_err(Unavailable::NotInstalled)?;
        remove_stale_dirs();
        let run_as = if is_root() {
            let name = std::env::var("CELL_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
            Some(lookup_user(&name).map_err(Unavailable::Failed)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("cell-pg-")
            .tempdir()
            .map_err(|e| Unavailable::Failed(format!("temp dir: {e}")))?;
        std::fs::write(dir.path().join(OWNER), std::process::id().to_string())
            .map_err(|e| Unavailable::Failed(format!("{OWNER}: {e}")))?;
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| Unavailable::Failed(format!("chown {}: {e}", dir.path().display())))?;
        }
        let server = Server {
            bin,
            dir,
            port: free_port().map_err(Unavailable::Failed)?,
            run_as,
            child: Mutex::new(None),
            durable,
            next_db: std::sync::atomic::AtomicU32::new(0),
        };
        server.initdb().map_err(Unavailable::Failed)?;
        server.launch().map_err(Unavailable::Failed)?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), String> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Starts the postmaster on the existing data directory (after [`Server::kill`], this is
    /// a crash recovery) and waits until it accepts connections.
    ///
    /// # Errors
    /// When it does not start within 60 s.
    #[expect(
        unsafe_code,
        reason = "pre_exec + prctl(PR_SET_PDEATHSIG): no server outlives the tests"
    )]
    pub fn launch(&self) -> Result<(), String> {
        // A crash leaves postmaster.pid behind, still saying "ready": remove it, so waiting
        // for readiness waits for the new server (its processes are gone: `kill` reaped them).
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null());
        if !self.durable {
            // Tests need no durability across power loss; crash recovery (kill -9 of the
            // server) still works with the WAL in the page cache.
            cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::from(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .map_err(|e| format!("server.log: {e}"))?,
        ));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in
        // the child between fork and exec (after the uid change, which would clear it).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper_thread(cmd)?;
        *self.child.lock().map_err(|_| "poisoned".to_owned())? = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid_file = self.data().join("postmaster.pid");
        loop {
            // The postmaster writes "ready" as the status line of postmaster.pid when it
            // accepts connections.
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && text.lines().any(|l| l.trim() == "ready")
            {
                return Ok(());
            }
            if let Ok(mut child) = self.child.lock()
                && let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("postgres exited ({status}): {}", self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres not ready after 60 s: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the server's log (for error messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILLs every process of the server at once (a crash: the postmaster, its backends,
    /// the WAL writer), and reaps the postmaster.
    #[expect(
        unsafe_code,
        reason = "kill(2) of the server's processes, which std cannot signal"
    )]
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock()
            && let Some(mut c) = child.take()
        {
            if let Ok(pid) = i32::try_from(c.id()) {
                // Every server child calls setsid(), so there is no process group to kill:
                // stop the postmaster (no new children), SIGKILL its children, then it.
                // SAFETY: kill(2) on our own unreaped child and on its children (read from
                // /proc while it is stopped, so their pids cannot be reused yet).
                unsafe {
                    libc::kill(pid, libc::SIGSTOP);
                    for child in children_of(pid) {
                        libc::kill(child, libc::SIGKILL);
                    }
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = c.wait();
        }
        // The killed processes release the port once the kernel has torn them down.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server at once (SIGQUIT: immediate shutdown; the postmaster takes its
    /// backends down with it) and waits for it.
    #[expect(unsafe_code, reason = "kill(2) with SIGQUIT, which std cannot send")]
    pub fn stop(&self) {
        if let Ok(mut child) = self.child.lock()
            && let Some(mut c) = child.take()
        {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: plain kill(2) on our own child's pid, which we have not reaped.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
            }
            let _ = c.wait();
        }
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh, empty database and returns its URL.
    ///
    /// # Panics
    /// When the server refuses (tests fail loudly).
    pub async fn database(&self) -> String {
        let n = self
            .next_db
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to the test server: {e}\n{}", self.log_tail()));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        drop(client);
        let _ = task.await;
        self.url(&name)
    }

    /// Turns TLS on (`ssl = on`, reloaded: no restart) with a new self-signed certificate for
    /// `127.0.0.1` and `localhost`, made by the `openssl` command; returns the certificate
    /// (PEM), which a client must trust to connect with `sslmode=require`.
    ///
    /// # Errors
    /// When `openssl` is missing or fails, or the server refuses the configuration.
    pub async fn enable_tls(&self) -> Result<Vec<u8>, String> {
        let (cert, key) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl req failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The server refuses a key that others can read or that is not its user's.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", key.display()))?;
        if let Some((uid, gid)) = self.run_as {
            for file in [&cert, &key] {
                chown(file, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", file.display()))?;
            }
        }
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connect: {e}"))?;
        let task = tokio::spawn(connection);
        // Paths from our own temp dir: no quote can be in them, but escape anyway.
        let quoted =
            |p: &std::path::Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        // One statement at a time: ALTER SYSTEM refuses the implicit transaction of several.
        for statement in [
            format!("ALTER SYSTEM SET ssl_cert_file = {}", quoted(&cert)),
            format!("ALTER SYSTEM SET ssl_key_file = {}", quoted(&key)),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| format!("{statement}: {e}\n{}", self.log_tail()))?;
        }
        drop(client);
        let _ = task.await;
        // The reload is a signal to the postmaster: wait until a new backend sees TLS on.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (client, connection) =
                tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
            let task = tokio::spawn(connection);
            let on = client
                .query_one("SHOW ssl", &[])
                .await
                .map_err(|e| format!("SHOW ssl: {e}"))?
                .try_get::<_, String>(0)
                .is_ok_and(|v| v == "on");
            drop(client);
            let _ = task.await;
            if on {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("TLS still off after 30 s: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))
    }

    /// A fresh database, connected.
    ///
    /// # Panics
    /// As [`Server::database`].
    pub async fn pg(&self) -> Pg {
        let url = self.database().await;
        match Pg::connect(&url) {
            Ok(pg) => pg,
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd` from a thread that never ends, so `PR_SET_PDEATHSIG` (tied to the spawning
/// *thread*) fires only when the process exits.
fn spawn_from_keeper_thread(mut cmd: Command) -> Result<Child, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cell-pg-keeper".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn().map_err(|e| format!("spawn postgres: {e}")));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("keeper thread: {e}"))?;
    rx.recv().map_err(|e| format!("keeper thread: {e}"))?
}

/// The pids whose parent is `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|candidate| {
            // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, so split
            // after the last ')'.
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn bindir() -> Result<PathBuf, String> {
    // An explicit directory is the only one tried (also how to see the skip path).
    if let Ok(dir) = std::env::var("CELL_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() && dir.join("postgres").exists() {
            Ok(dir)
        } else {
            Err(format!(
                "no initdb/postgres in $CELL_PG_BINDIR ({})",
                dir.display()
            ))
        };
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("`pg_config --bindir` did not run ({e})"))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // Debian's pg_config (libpq-dev) may point at /usr/bin, where only the clients are.
    for candidate in [dir.clone(), debian_server_dir().unwrap_or_default()] {
        if candidate.join("initdb").exists() && candidate.join("postgres").exists() {
            return Ok(candidate);
        }
    }
    Err(format!("no initdb/postgres in {}", dir.display()))
}

/// `/usr/lib/postgresql/<newest>/bin`.
fn debian_server_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

#[expect(unsafe_code, reason = "geteuid, which std does not wrap")]
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// (uid, gid) of `name`, from /etc/passwd.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&name) && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            format!(
                "running as root, and there is no user `{name}` to run PostgreSQL as (set \
                 CELL_PG_USER to an unprivileged user)"
            )
        })
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Whether the PostgreSQL server binaries are installed.
pub fn installed() -> bool {
    bindir().is_ok()
}
