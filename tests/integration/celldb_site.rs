//! One database *site* for a test, in either mode: embedded (the test process opens the
//! directory) or remote (a real `celldb serve` process — the `celldb-cli` binary of this
//! package, whose `main` is celldb's — serves the directory on a temporary socket and the test
//! connects with `Db::connect`). Test bodies are written once against [`Site`] and run in both
//! modes by [`both_modes!`].

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use celldb::Db;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Where a test's database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In the test process.
    Embedded,
    /// In a spawned `celldb serve`.
    Remote,
}

/// Writes each test body once and runs it in both modes, as `<name>::embedded` and
/// `<name>::remote`. The body sees `site: Site`.
macro_rules! both_modes {
    ($(#[$attr:meta])* async fn $name:ident($site:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports, reason = "not every test of the module uses every import")]
            use super::*;
            #[allow(unused_imports, reason = "not every test of the module uses every import")]
            use $crate::celldb_site::{Mode, Site};

            $(#[$attr])*
            async fn embedded() {
                let $site = Site::new(Mode::Embedded);
                $body
            }

            $(#[$attr])*
            async fn remote() {
                let $site = Site::new(Mode::Remote);
                $body
            }
        }
    };
}
pub(crate) use both_modes;

/// A `celldb serve` process; killed (SIGKILL) when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    /// The `CELLDB_URL` of this server.
    pub(crate) url: String,
}

impl ServerProcess {
    /// Starts `celldb serve --dir <dir> --socket <socket>` and waits until it serves.
    ///
    /// # Errors
    /// The server's stderr when it exits instead of serving.
    pub(crate) fn start(dir: &Path, socket: &Path) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_celldb-cli"));
        command
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .arg("--socket")
            .arg(socket);
        Self::spawn(command, format!("unix:{}", socket.display()))
    }

    /// Starts `command` (a `celldb serve` with its arguments and environment), reachable at
    /// `url`, and waits until it serves.
    ///
    /// # Errors
    /// The server's output when it exits instead of serving.
    pub(crate) fn spawn(mut command: Command, url: String) -> Result<Self, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The line appears once the socket is bound; EOF means the server gave up.
        stdout.read_line(&mut line).unwrap();
        if !line.starts_with("celldb: serving") {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let _ = child.wait();
            return Err(format!("{line}{err}"));
        }
        // Keep draining stdout/stderr so the server never blocks on a full pipe.
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut { stream }, &mut std::io::sink());
            });
        }
        Ok(Self { child, url })
    }

    /// A `celldb serve` child started by the caller (who read its first line), reachable at
    /// `url`.
    pub(crate) fn adopt(child: Child, url: String) -> Self {
        Self { child, url }
    }

    /// The process id (to send it signals).
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown) and wait; SIGKILL after 20 s.
    #[expect(unsafe_code, reason = "kill(2) with SIGTERM, which std cannot send")]
    pub(crate) fn stop(mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        for _ in 0..200 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill_now();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// A database directory for one test, opened in embedded or remote mode.
pub(crate) struct Site {
    /// The mode.
    pub(crate) mode: Mode,
    dir: tempfile::TempDir,
    sockets: cell_sdk::testkit::TempDir,
    server: Mutex<Option<ServerProcess>>,
}

impl Site {
    /// A fresh, empty site (a temporary directory on disk).
    pub(crate) fn new(mode: Mode) -> Self {
        Self {
            mode,
            dir: tempfile::Builder::new()
                .prefix("celldb-site-")
                .tempdir()
                .unwrap(),
            sockets: cell_sdk::testkit::temp_socket_dir().unwrap(),
            server: Mutex::new(None),
        }
    }

    /// The database directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket a server of this site listens on.
    pub(crate) fn socket(&self) -> PathBuf {
        self.sockets.path().join("celldb.sock")
    }

    /// A handle on the database: the directory opened here, or a client of the site's
    /// server (started if it is not running).
    pub(crate) fn open(&self) -> Db {
        self.try_open().unwrap()
    }

    /// As [`Site::open`], with the opening error (embedded) or the server's output (remote).
    ///
    /// # Errors
    /// When the directory cannot be opened or served.
    pub(crate) fn try_open(&self) -> Result<Db, String> {
        match self.mode {
            Mode::Embedded => Db::open(self.dir()).map_err(|e| e.to_string()),
            Mode::Remote => {
                let mut server = self.server.lock().unwrap();
                if server.is_none() {
                    *server = Some(ServerProcess::start(self.dir(), &self.socket())?);
                }
                Ok(Db::connect(&server.as_ref().unwrap().url).unwrap())
            }
        }
    }

    /// Closes the database: in remote mode the server shuts down (SIGTERM, gracefully); in
    /// embedded mode the caller must have dropped its handles.
    pub(crate) fn close(&self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.stop();
        }
    }

    /// Opens the closed site's directory with fjall itself, lets `change` alter what is stored
    /// behind celldb's back, and syncs it: how tests damage a database on purpose.
    pub(crate) fn tamper(&self, change: impl FnOnce(&fjall::Database)) {
        let raw = fjall::Database::builder(self.dir().join("data"))
            .open()
            .unwrap();
        change(&raw);
        raw.persist(fjall::PersistMode::SyncAll).unwrap();
    }
}

/// Awaits inserts racing for one unique value and says how many won: a unique violation is a
/// lost race, any other error fails the test.
pub(crate) async fn unique_wins<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, celldb::Error>>>,
) -> usize {
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(celldb::Error::UniqueViolation { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    won
}
