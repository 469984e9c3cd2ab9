//! A test kit: serve a service in-process on a temporary socket and get a typed client:
//! `let (cell, users) = cell_sdk::testkit::start(Users).await?;` then call `users`, and
//! `cell.stop().await?` (or drop it). [`double`] gives a typed client over a service in this
//! process with no socket at all (a test double). The runnable example is on `cell_sdk::service`: this
//! crate has no macros to define a service with.
//!
//! ```
//! let dir = cell_runtime::testkit::temp_socket_dir().unwrap();
//! assert!(dir.path().is_dir());
//! ```

use std::path::PathBuf;

use crate::endpoint::Endpoint;
use crate::error::{ConnectError, ServeError};
use crate::membrane::{Membrane, MembraneConfig, Shutdown};
use crate::service::{Service, ServiceClient, TypedClient};
use crate::synapse::{Synapse, SynapseConfig};

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The server could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The client could not connect.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Starts `service` in this process on a socket in a fresh private temporary directory and
/// connects its typed client. Call inside a tokio runtime (any flavor).
///
/// # Errors
/// See [`StartError`].
pub async fn start<S: ServiceClient>(service: S) -> Result<(TestCell, S::Client), StartError> {
    let cell = TestCell::start(service)?;
    let synapse = cell.synapse::<S>().await?;
    Ok((cell, S::Client::from_synapse(synapse)))
}

/// A typed client of `service` in this process, with no socket: a test double in the same call
/// shape as the remote cell (see [`Synapse::in_process`]). Replace a client of a remote cell
/// with a client of a fake implementation of the same protocol.
pub fn double<S: ServiceClient>(service: S) -> S::Client {
    S::Client::from_synapse(Synapse::in_process(service))
}

/// A private temporary directory (mode 0700) that is removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Creates a fresh private directory under the system temp dir for sockets.
///
/// # Errors
/// When the directory cannot be created.
pub fn temp_socket_dir() -> std::io::Result<TempDir> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Short paths: a Unix socket path must fit in 108 bytes.
    let path = std::env::temp_dir().join(format!(
        "cell-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&path)?;
    crate::endpoint::prepare_socket_dir(&path)?;
    Ok(TempDir { path })
}

/// A service running in this process on a temporary socket. Dropping it shuts the server
/// down and removes the socket directory.
#[derive(Debug)]
pub struct TestCell {
    endpoint: Endpoint,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
    _dir: TempDir,
}

impl TestCell {
    /// Starts `service` on a socket in a fresh temporary directory. Call inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// When the directory or the socket cannot be created.
    pub fn start<S: Service>(service: S) -> Result<TestCell, ServeError> {
        let dir = temp_socket_dir().map_err(|source| ServeError::Io {
            endpoint: "temporary socket directory".into(),
            source,
        })?;
        let endpoint = Endpoint::Unix(dir.path().join(format!("{}.sock", S::NAME)));
        let membrane = Membrane::bind(endpoint.clone(), service, MembraneConfig::default())?;
        let shutdown = membrane.shutdown_handle();
        let task = tokio::spawn(membrane.serve());
        Ok(TestCell {
            endpoint,
            shutdown,
            task: Some(task),
            _dir: dir,
        })
    }

    /// Where the service listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A raw client of the service (the generated clients wrap one).
    ///
    /// # Errors
    /// As [`Synapse::connect`].
    pub async fn synapse<S: Service>(&self) -> Result<Synapse, ConnectError> {
        Synapse::connect::<S>(self.endpoint.clone(), SynapseConfig::default()).await
    }

    /// Shuts the server down gracefully and waits for it.
    ///
    /// # Errors
    /// What the server returned.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.shutdown();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for TestCell {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}
