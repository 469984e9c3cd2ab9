//! The `celldb` command line: `inspect` and `dump` a database directory, `serve` one over the
//! runtime. It lives in the library so that tests can run the very same `celldb serve` from
//! a binary of their own package (`celldb::cli::main()` is the whole `main` of `celldb`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "celldb",
    version,
    about = "Inspect celldb database directories, or serve one to other processes",
    long_about = "Inspect celldb database directories, or serve one to other processes.\n\n\
        Embedded mode needs no server: an application opens its directory itself. \
        `celldb serve` is for sharing one database between processes or machines: \
        clients set CELLDB_URL (unix:/path.sock, tcp://host:port with CELL_SECRET, or \
        cell:<name>) and the same DB:: API reaches the server."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List tables: record counts, fingerprints, key types, indexes.
    Inspect {
        /// The database directory.
        dir: PathBuf,
    },
    /// Print every record of one table (key and value bytes in hex).
    Dump {
        /// The database directory.
        dir: PathBuf,
        /// The table name (as `inspect` shows it).
        table: String,
    },
    /// Serve a database directory to clients over a Unix socket (default) or TCP.
    #[command(
        long_about = "Serve a database directory to clients over a Unix socket \
        (default) or authenticated TCP.\n\n\
        Clients use the same API as embedded mode: set CELLDB_URL for the default database \
        (DB::insert, User::get, ...) or call Db::connect(url). Transactions run in the \
        client; their reads are served from a snapshot held here and their writes commit \
        through this server's group-committed log: acknowledged = fsynced on this machine.\n\n\
        Examples:\n  \
        celldb serve --dir ./data                    # socket $CELL_SOCKET_DIR/celldb.sock\n  \
        CELLDB_URL=cell:celldb cargo run -p orders   # a client of it\n  \
        celldb serve --dir ./data --socket /tmp/db.sock   # CELLDB_URL=unix:/tmp/db.sock\n  \
        CELL_SECRET=... celldb serve --dir ./data --tcp 127.0.0.1:7070\n  \
        # clients: CELL_SECRET=... CELLDB_URL=tcp://127.0.0.1:7070\n\n\
        It stops on SIGINT or SIGTERM after in-flight calls finish. Only one process may \
        hold a directory: stop the server before `celldb inspect` or an embedded open."
    )]
    Serve {
        /// The database directory (default: this program's default database directory,
        /// `$CELL_DATA_DIR/celldb/celldb` or `~/.local/share/cell/celldb/celldb`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Serve on this Unix socket path (printed as `unix:<path>`).
        #[arg(long, conflicts_with_all = ["name", "tcp"])]
        socket: Option<PathBuf>,
        /// Serve on the default socket of this cell name: `$CELL_SOCKET_DIR/<name>.sock`.
        #[arg(long, default_value = "celldb", conflicts_with = "tcp")]
        name: String,
        /// Serve on TCP at this address (`127.0.0.1:7070`); clients must prove they know the
        /// shared secret in `$CELL_SECRET` (required; 1 to 1024 bytes; it is never sent). Use
        /// it on trusted networks or inside a tunnel: the traffic is not encrypted.
        #[arg(long)]
        tcp: Option<String>,
        /// Abort a transaction that served no read for this many seconds (its client is
        /// connected but stuck; a client that disconnects is aborted at once).
        #[arg(long, default_value_t = 300)]
        tx_timeout: u64,
        /// Bytes of keys and values one range reply carries at most; a larger scan is sent in
        /// pages, all read from the transaction's snapshot (default 4 MiB, under the 16 MiB
        /// frame limit).
        #[arg(long, default_value_t = crate::server::ServerConfig::default().page_bytes)]
        page_bytes: usize,
        /// Client sessions (connections) served at once; one more is refused with an error.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_sessions)]
        max_sessions: usize,
        /// Open transactions one session may hold (each pins a snapshot); beginning one more
        /// is refused with an error.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_tx_per_session)]
        max_tx_per_session: usize,
        /// Sessions one connection may open (a client uses one).
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_sessions_per_connection)]
        max_sessions_per_connection: usize,
        /// Sessions all TCP connections from one IP address may hold together (not applied on
        /// a Unix socket).
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_sessions_per_peer)]
        max_sessions_per_peer: usize,
        /// Open transactions the whole server holds at once (each pins a snapshot).
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_transactions)]
        max_transactions: usize,
        /// Bytes of read checks (keys read, values seen) the transactions of one session may
        /// hold.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_session_read_bytes)]
        max_session_read_bytes: usize,
        /// Bytes of read checks all open transactions together may hold.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_read_bytes)]
        max_read_bytes: usize,
        /// Tables the database may hold; creating one more is refused.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_tables)]
        max_tables: usize,
        /// Indexes one table may declare.
        #[arg(long, default_value_t = crate::server::ServerConfig::default().max_indexes_per_table)]
        max_indexes_per_table: usize,
    },
}

/// The `celldb` binary.
///
/// # Errors
/// Whatever the subcommand reports.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { dir } => inspect(&dir),
        Command::Dump { dir, table } => dump(&dir, &table),
        Command::Serve {
            dir,
            socket,
            name,
            tcp,
            tx_timeout,
            page_bytes,
            max_sessions,
            max_tx_per_session,
            max_sessions_per_connection,
            max_sessions_per_peer,
            max_transactions,
            max_session_read_bytes,
            max_read_bytes,
            max_tables,
            max_indexes_per_table,
        } => {
            init_logging();
            let endpoint = match (tcp, socket) {
                (Some(addr), _) => cell_sdk::Endpoint::tcp(addr),
                (None, Some(path)) => cell_sdk::Endpoint::unix(path),
                (None, None) => cell_sdk::Endpoint::for_cell(&name),
            };
            let dir = dir.unwrap_or_else(crate::context::default_path);
            let config = crate::server::ServerConfig {
                page_bytes,
                max_sessions,
                max_tx_per_session,
                max_sessions_per_connection,
                max_sessions_per_peer,
                max_transactions,
                max_session_read_bytes,
                max_read_bytes,
                max_tables,
                max_indexes_per_table,
            };
            serve(
                &dir,
                endpoint,
                std::time::Duration::from_secs(tx_timeout.max(1)),
                config,
            )
        }
    }
}

/// Logs of `celldb serve` (refused peers, failed authentications, handler panics, accept
/// failures, idle transactions aborted) go to stderr: `info` and above unless `RUST_LOG` says
/// otherwise, without colours when stderr is not a terminal (a log file, a journal).
fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn serve(
    dir: &std::path::Path,
    endpoint: cell_sdk::Endpoint,
    tx_timeout: std::time::Duration,
    config: crate::server::ServerConfig,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let db = crate::Db::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        let server = crate::server::Server::with_config(db, config)?;
        let membrane = cell_sdk::Membrane::bind(
            endpoint.clone(),
            server.clone().service(),
            cell_sdk::MembraneConfig::default(),
        )
        .with_context(|| format!("binding {endpoint}"))?;
        let shutdown = membrane.shutdown_handle();
        let reaping = server.clone();
        let reaper = tokio::spawn(async move {
            let mut tick = tokio::time::interval((tx_timeout / 4).max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                let aborted = reaping.abort_idle(tx_timeout);
                if aborted > 0 {
                    tracing::info!(aborted, "celldb: aborted idle transactions");
                }
            }
        });
        let stopping = server.clone();
        let signals = tokio::spawn(async move {
            cell_sdk::shutdown_signal().await;
            // End the sessions' `hold` calls first, so connections drain at once.
            stopping.stop();
            shutdown.shutdown();
        });
        let url = match &endpoint {
            cell_sdk::Endpoint::Unix(path) => format!("unix:{}", path.display()),
            cell_sdk::Endpoint::Tcp(addr) => format!("tcp://{addr}"),
        };
        // Tests and scripts wait for this line: the socket is bound when it appears.
        println!("celldb: serving {} at {url}", dir.display());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let served = membrane.serve().await;
        signals.abort();
        reaper.abort();
        served.with_context(|| format!("serving {endpoint}"))
    })
}

/// Opens `dir` for reading only: tools never create or change anything in a directory.
fn open(dir: &PathBuf) -> anyhow::Result<celldb::Db> {
    celldb::Db::open_read_only(dir).with_context(|| format!("opening {} to read it", dir.display()))
}

fn inspect(dir: &PathBuf) -> anyhow::Result<()> {
    let db = open(dir)?;
    let tables = db.tables()?;
    println!("{}: {} table(s)", dir.display(), tables.len());
    for (name, meta) in tables {
        let count = db.raw_records(&name)?.len();
        let indexes: Vec<String> = meta
            .indexes
            .iter()
            .map(|(n, unique)| {
                if *unique {
                    format!("{n} (unique)")
                } else {
                    n.clone()
                }
            })
            .collect();
        println!("table {name}");
        println!("  records:     {count}");
        println!("  type:        {}", meta.type_name);
        println!(
            "  fingerprint: {}",
            cell_sdk::fingerprint::hex(meta.fingerprint)
        );
        println!("  key:         {}", meta.key_type);
        println!(
            "  indexes:     {}",
            if indexes.is_empty() {
                "none".to_string()
            } else {
                indexes.join(", ")
            }
        );
        println!("  structure:   {}", meta.describe);
    }
    Ok(())
}

fn dump(dir: &PathBuf, table: &str) -> anyhow::Result<()> {
    let db = open(dir)?;
    let known = db.tables()?.into_iter().any(|(name, _)| name == table);
    anyhow::ensure!(known, "no table `{table}` in {}", dir.display());
    let records = db.raw_records(table)?;
    for (key, value) in &records {
        println!("{}  {} bytes  {}", hex(key), value.len(), hex(value));
    }
    println!("{} record(s)", records.len());
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
