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
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing clap's flags buys nothing"
)]
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
        /// Worker threads of the server's async runtime (default: one per CPU core). When
        /// several servers share one machine (three nodes of a test cluster on a laptop),
        /// give each its share of the cores, so that they do not wake each other's idle
        /// threads on every message: three raft nodes on two cores wrote 1.1x and read
        /// 1.1-1.3x as fast with `--threads 1` (docs/benchmarks.md).
        #[arg(long, env = "CELLDB_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
        /// Run as node N of a replicated cluster (raft) instead of a single server. Needs
        /// --listen and $CELL_SECRET (the same on every node and client).
        #[arg(long, requires = "listen")]
        node_id: Option<u64>,
        /// The node's address for raft traffic and clients (cluster mode).
        #[arg(long, requires = "node_id")]
        listen: Option<String>,
        /// The founding members, `1=host:port,2=host:port,3=host:port`: the smallest id
        /// founds the group on first start. Leave it out on a node that `celldb cluster add`
        /// will add.
        #[arg(long, requires = "node_id", value_parser = parse_node_map)]
        cluster: Option<NodeMap>,
        /// The cluster id every node shares; nodes refuse messages of another cluster.
        #[arg(long, default_value = "celldb", requires = "node_id")]
        cluster_id: String,
        /// Dial these peers at these addresses instead of their membership address
        /// (`2=host:port,…`; a proxy or tunnel between nodes).
        #[arg(long, requires = "node_id", value_parser = parse_node_map)]
        dial: Option<NodeMap>,
        /// Take a raft snapshot every N applied entries (and keep N entries of log behind
        /// it); a node that falls further behind catches up by snapshot.
        #[arg(long, default_value_t = 5000, requires = "node_id")]
        snapshot_every: u64,
    },
    /// Look at or change the membership of a cluster (`celldb serve --node-id`).
    #[command(
        subcommand,
        long_about = "Look at or change the membership of a running cluster. Every command \
        takes --url raft://host:port,host:port (any nodes; the leader is found) and needs \
        $CELL_SECRET.\n\n\
        Adding a node, while writes continue:\n  \
        celldb cluster add --url raft://127.0.0.1:7001 --addr 127.0.0.1:7004\n  \
        # prints `node id 4`; start it:\n  \
        celldb serve --dir ./n4 --node-id 4 --listen 127.0.0.1:7004\n  \
        # `cluster add` waits until it has caught up, then makes it a voter."
    )]
    Cluster(Box<ClusterCommand>),
}

/// `celldb cluster …`.
#[derive(Subcommand)]
enum ClusterCommand {
    /// Print every node's view: role, leader, term, log and applied index, members.
    Status {
        /// The nodes to ask: raft://host:port,host:port,…
        #[arg(long)]
        url: String,
    },
    /// Allocate a node id for a new node at ADDR, add it as a learner, wait until it has
    /// caught up (start it with the printed id meanwhile), then make it a voter.
    Add {
        /// The cluster: raft://host:port,…
        #[arg(long)]
        url: String,
        /// The new node's --listen address.
        #[arg(long)]
        addr: String,
        /// Add it as a learner only (it serves stale reads and does not vote).
        #[arg(long)]
        learner: bool,
        /// Give up waiting for it to catch up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Remove node ID from the group (its id is never reused).
    Remove {
        /// The cluster: raft://host:port,…
        #[arg(long)]
        url: String,
        /// The node to remove.
        #[arg(long)]
        node_id: u64,
    },
}

type NodeMap = std::collections::BTreeMap<u64, String>;

/// Parses `1=host:port,2=host:port`.
fn parse_node_map(text: &str) -> Result<NodeMap, String> {
    let mut map = NodeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} in {part:?} is not a node id (a positive number)"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        if map.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if map.is_empty() {
        return Err("no node listed: ID=HOST:PORT,…".into());
    }
    Ok(map)
}

/// The `celldb` binary.
///
/// # Errors
/// Whatever the subcommand reports.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { dir } => inspect(&dir),
        Command::Cluster(command) => cluster(*command),
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
            threads,
            node_id,
            listen,
            cluster,
            cluster_id,
            dial,
            snapshot_every,
        } => {
            init_logging();
            if let (Some(node), Some(listen)) = (node_id, listen) {
                let dir = dir.unwrap_or_else(crate::context::default_path);
                let mut raft = crate::raft::config();
                raft.cluster_name = cluster_id.clone();
                raft.snapshot_policy =
                    openraft::SnapshotPolicy::LogsSinceLast(snapshot_every.max(1));
                raft.max_in_snapshot_log_to_keep = snapshot_every.max(1);
                let mut config = crate::raft::cluster::ClusterConfig::new(cluster_id, node, listen);
                config.founders = cluster.unwrap_or_default();
                config.dial = dial.unwrap_or_default();
                config.raft = raft;
                return serve_cluster(&dir, config, threads);
            }
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
                threads,
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
    threads: Option<u16>,
) -> anyhow::Result<()> {
    let runtime = runtime(threads)?;
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

fn serve_cluster(
    dir: &std::path::Path,
    config: crate::raft::cluster::ClusterConfig,
    threads: Option<u16>,
) -> anyhow::Result<()> {
    if let Some(addr) = config.founders.get(&config.node)
        && *addr != config.listen
    {
        anyhow::bail!(
            "--cluster lists node {} at {addr}, but --listen is {}: they must agree",
            config.node,
            config.listen
        );
    }
    let runtime = runtime(threads)?;
    runtime.block_on(async {
        let endpoint = cell_sdk::Endpoint::tcp(config.listen.clone());
        let (node_id, cluster_id) = (config.node, config.cluster.clone());
        let node = crate::raft::cluster::ClusterNode::start(dir, config)
            .await
            .with_context(|| format!("starting node {node_id} on {}", dir.display()))?;
        let membrane = cell_sdk::Membrane::bind(
            endpoint.clone(),
            crate::raft::cluster::wire::CellDbClusterServer(node.handler()),
            cell_sdk::MembraneConfig::default(),
        )
        .with_context(|| format!("binding {endpoint}"))?;
        let shutdown = membrane.shutdown_handle();
        let signals = tokio::spawn(async move {
            cell_sdk::shutdown_signal().await;
            shutdown.shutdown();
        });
        // Tests and scripts wait for this line: the port is bound when it appears.
        println!(
            "celldb: node {node_id} of cluster {cluster_id} serving {} at {endpoint}",
            dir.display()
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let served = membrane.serve().await;
        signals.abort();
        node.shutdown().await.context("stopping raft")?;
        served.with_context(|| format!("serving {endpoint}"))
    })
}

fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    init_logging();
    let runtime = runtime(None)?;
    runtime.block_on(async {
        match command {
            ClusterCommand::Status { url } => {
                let db = crate::Db::connect(&url)?;
                let mut answered = 0;
                for (addr, status) in db.cluster_status().await? {
                    match status {
                        None => println!("{addr}: no answer"),
                        Some(s) => {
                            answered += 1;
                            println!(
                                "{addr}: node {} of cluster {}: {} (leader {}), term {}, log {}, \
                                 applied {}, fsyncs {}, refused {}",
                                s.id,
                                s.cluster,
                                s.state,
                                s.leader.map_or("unknown".into(), |l| l.to_string()),
                                s.term,
                                s.last_log_index.map_or("-".into(), |i| i.to_string()),
                                s.applied.map_or("-".into(), |i| i.to_string()),
                                s.fsyncs,
                                s.refused
                            );
                            println!("  voters:   {:?}", s.voters);
                            println!("  learners: {:?}", s.learners);
                        }
                    }
                }
                anyhow::ensure!(answered > 0, "no node of {url} answered");
                Ok(())
            }
            ClusterCommand::Add {
                url,
                addr,
                learner,
                timeout,
            } => {
                let db = crate::Db::connect(&url)?;
                let id = db.cluster_add_learner(&addr).await?;
                println!("node id {id}");
                println!(
                    "start it now: celldb serve --dir <DIR> --node-id {id} --listen {addr} \
                     (same --cluster-id and $CELL_SECRET)"
                );
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                if learner {
                    return Ok(());
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
                loop {
                    match db.cluster_promote(id).await {
                        Ok(()) => break,
                        Err(e) if std::time::Instant::now() < deadline => {
                            eprintln!("waiting for node {id} to catch up: {e}");
                        }
                        Err(e) => {
                            return Err(e).context(format!(
                                "node {id} did not catch up within {timeout} s; it stays a \
                                 learner (remove it with `celldb cluster remove --node-id {id}`)"
                            ));
                        }
                    }
                }
                println!("node {id} is a voter");
                Ok(())
            }
            ClusterCommand::Remove { url, node_id } => {
                let db = crate::Db::connect(&url)?;
                db.cluster_remove(node_id).await?;
                println!("node {node_id} removed");
                Ok(())
            }
        }
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

/// The multi-threaded runtime each long-running command runs on, with `threads` workers
/// (tokio's default, one per core, if `None`).
fn runtime(threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(usize::from(threads));
    }
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}
