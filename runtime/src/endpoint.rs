//! Where cells listen: Unix sockets named by cell (`$CELL_SOCKET_DIR/<cell>.sock`) and TCP
//! addresses for other hosts. The shared secret TCP peers must prove they know lives in
//! [`crate::auth`].

use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the socket directory.
pub const SOCKET_DIR_ENV: &str = "CELL_SOCKET_DIR";

/// Where a service listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket at this path.
    Unix(PathBuf),
    /// A TCP address (`host:port`), for other hosts; requires a shared secret.
    Tcp(String),
}

impl Endpoint {
    /// The Unix socket of cell `name` in the [`socket_dir`]: `<dir>/<name>.sock`.
    ///
    /// # Examples
    /// ```
    /// // SAFETY of the example: single-threaded doctest.
    /// unsafe { std::env::set_var("CELL_SOCKET_DIR", "/run/cells") };
    /// let endpoint = cell_runtime::Endpoint::for_cell("users");
    /// assert_eq!(endpoint, cell_runtime::Endpoint::Unix("/run/cells/users.sock".into()));
    /// ```
    pub fn for_cell(name: &str) -> Endpoint {
        Endpoint::Unix(socket_dir().join(format!("{name}.sock")))
    }

    /// A Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint::Unix(path.into())
    }

    /// A TCP address.
    pub fn tcp(addr: impl Into<String>) -> Endpoint {
        Endpoint::Tcp(addr.into())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// The directory holding cells' sockets: `$CELL_SOCKET_DIR`, else `$XDG_RUNTIME_DIR/cell`
/// (per-user, on tmpfs, mode 0700 by systemd), else `/tmp/cell-<uid>`.
pub fn socket_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(SOCKET_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("cell");
    }
    PathBuf::from(format!("/tmp/cell-{}", current_uid()))
}

/// The effective uid of this process.
#[expect(unsafe_code, reason = "geteuid, which std does not wrap")]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the socket directory with mode 0700, or checks an existing one: it must be a
/// directory owned by us (a directory pre-created by another user in `/tmp` would let them
/// replace our sockets). A directory of ours with looser permissions is tightened to 0700.
pub(crate) fn prepare_socket_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
        Err(e) => Err(e),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(io::Error::other(format!(
                    "socket directory {} is not a directory",
                    dir.display()
                )));
            }
            if meta.uid() != current_uid() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "socket directory {} belongs to uid {}, not to us (uid {}); \
                         set {SOCKET_DIR_ENV} to a directory of your own",
                        dir.display(),
                        meta.uid(),
                        current_uid()
                    ),
                ));
            }
            if meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
    }
}
