//! All cross-crate integration tests, in one binary (faster to build on two cores).
//!
//! Table of contents:
//! - `protein`: `#[protein]` round trips, fingerprints, and its compile errors (trybuild UI tests
//!   in `tests/ui/protein/`).
//! - `index`: `cell-macro-index` with real `cargo metadata --offline` on the fixture workspaces
//!   of `tests/fixtures/lsp/` (copied to a temp dir first), one test per problem code, the
//!   snapshot, incremental updates and the watcher, and the index of this repository itself.
//! - `rpc`: typed RPC between real processes (the `rpc-probe-server` binary): Unix sockets and
//!   authenticated TCP, many calls in flight, fingerprint mismatch, bad frames, panics,
//!   deadlines and cancellation, SIGKILL + restart + reconnect, stale sockets, a second
//!   server, graceful shutdown; and `#[service]`/`#[handler]` compile errors (`tests/ui/service/`).
//! - `rpc`: typed RPC between real processes (the `rpc-probe-server` and `rpc-probe-client`
//!   binaries of this package): Unix sockets and authenticated TCP, SO_PEERCRED, many calls in
//!   flight, fingerprint mismatch, bad frames, panics, deadlines and cancellation, SIGKILL +
//!   restart + reconnect, stale sockets, a second server, graceful shutdown; and
//!   `#[service]`/`#[handler]` compile errors (`tests/ui/service/`).
//! - `rpc_auth`: TCP authentication by challenge-response against the real probe server and
//!   client processes: a recording relay shows the secret never crosses the wire; replayed
//!   client and server handshakes are refused; fake servers that do not know the secret are
//!   refused by the client; malformed challenges and proofs close only their connection;
//!   version mismatches on TCP reach only peers that know the secret; and the documented
//!   limit: a fake server that relays the real server's challenge gets in as the client.
//! - `rpc_context`: the call context a handler sees (connection id, Unix and TCP peer, request
//!   id, deadline) in a real server process, and connection-close notifications.
//! - `rpc_memory`: memory per connection: many connections announcing max-size frames keep the
//!   server's resident memory (VmRSS of the real process) bounded; other clients are served.
//! - `rpc_outcomes`: each call outcome (never sent, unknown — a server SIGKILLed mid-call, a
//!   deadline —, refused by an admission check, the handler's failure) against real processes.
//! - `rpc_layers`: handler layers in tower's shapes — their order, tower's timeout and
//!   concurrency limit used as they are, a refusal instead of the handler, one method alone.
//! - `rpc_doubles`: a typed client over an in-process fake (`testkit::double`, no socket), driven
//!   by the same code as a client of a real server process.
//! - `rpc_streams`: server-to-client streams against a real server process: order and clean
//!   end (Unix and TCP), an error mid-stream, a slow consumer bounding the producer (credit),
//!   cancel on drop stopping the producer, a server killed mid-stream, a stream's deadline,
//!   and a protocol-4 peer refused.
//! - `rpc_handler`: the one-crate form (`#[service] struct` + `#[handler] impl`) through the
//!   test kit.
//! - `remote`: `cell_remote!` aliases reaching providers' macros and API, and its compile errors
//!   with problem codes (trybuild UI tests in `tests/ui/remote/`).
//! - `providers`: the `validate` provider (not a database) through `#[Val::schema]`.
//! - `resolver`: a consumer workspace outside this one built with real cargo
//!   (`tests/fixtures/workspace`): two versions of one provider, same macro name from two
//!   providers, renamed providers, cell-sdk and celldb (`#[DB::persist]` through the rename);
//!   the resolver and export parser on the same files; a crate without cell-sdk
//!   (`tests/fixtures/no-sdk`) whose `#[service]`/`#[handler]` explain what to add.
//! - `agree`: the agreement test: one fixture per problem code in `tests/fixtures/agree/`, built
//!   with real cargo (one `--keep-going` invocation) and indexed; code, span and message from
//!   the compiler (`cell_remote!`, `export!`, or rustc's native error) and from the index agree.
//! - `sources`: providers from a local git repository (`git = "file:///…"`, fetched once
//!   without the network, then built `--offline` and indexed) and from a cargo local registry
//!   in a temporary `CARGO_HOME` (version skew against the local cargo cache, CELL0008 + fix).
//! - `celldb_api`: celldb tables through `#[DB::persist]`: CRUD, indexes, transactions,
//!   concurrency (unique constraints, lost updates), schema mismatch and migration, the
//!   directory lock, corrupt bytes, task-local databases; compile errors in `tests/ui/celldb/`.
//!   Most tests run twice through `both_modes!` (`celldb_site`): embedded, and against a real
//!   `celldb serve` process (the `celldb-cli` binary) on a temporary socket.
//! - `celldb_remote`: remote mode only: isolation between clients (write skew, lost updates,
//!   unique inserts), a killed client's transaction is aborted, idle transactions time out,
//!   malformed requests, authenticated TCP, fsync per durable write-set (buffered as control),
//!   paged range reads (order, one read check across pages), bounded sessions and open
//!   transactions per session, never-held sessions ended,
//!   a second server on one directory, migrations refused, the default database from
//!   `$CELLDB_URL`, and SIGKILL of the server loses no acknowledged write.
//! - `celldb_cluster`: celldb as a cluster of real `celldb serve --node-id` processes: the
//!   leader SIGKILLed under writes (nothing lost, nothing doubled), partitions through a fault
//!   proxy, linearizability checked by `cell-lincheck` (which catches two broken builds),
//!   request-id retries.
//! - `celldb_cluster_admin`: bad input on a cluster's raft port (garbage bytes, a node of
//!   another cluster, a second process under a running node's id, a wiped node rejoining under
//!   its old id: each refused with a log line, nothing applied), `celldb cluster add`/`remove`
//!   while writers place orders, a follower SIGKILLed mid-snapshot-transfer then converging,
//!   `celldb cluster status`, 1 MB records (split AppendEntries), concurrent orders on a
//!   healthy cluster without spurious errors.
//! - `celldb_cluster_netns` (only with `CELLDB_CLUSTER_NETNS=1`, as root): the cluster in three
//!   network namespaces, partitions by links taken down, a leader SIGKILLed.
//! - `celldb_raft`: the fsync-ordering proof of the raft log on every node of a three-node
//!   group (strace), with its negative control (a store that acknowledges before fsync).
//! - `celldb_crash`: real child processes: SIGKILL loops (no acknowledged write lost, indexes
//!   agree with records), also during the creation and recovery of a database, and the fsync
//!   proof under strace (buffered mode as negative control).
//! - `celldb_hostile`: `celldb serve` against hostile clients: payloads that are not exactly
//!   a method's arguments, unguessable ids, bounded tables/indexes/metadata and read checks,
//!   the server's log on stderr.
//! - `celldb_sweep`: the corruption sweep: random byte flips in every class of database file
//!   (journal, tables, manifests, version files, metadata) and deleted keyspaces, each opened
//!   and read in a child process; no panic, no abort, no silent wrong value where the format
//!   carries a checksum (`CELLDB_SWEEP_CASES` for the long run).
//! - `celldb_disk`: the database directory: private modes, another user's directory refused,
//!   a symlinked lock file, deleted keyspaces and journals, a damaged keyspace manifest (through
//!   the real binary), read-only `inspect`/`dump`, an interrupted creation redone.
//! - `tidy`: the repository's text: user docs and rustdoc comments cite no internal design
//!   notes (numbered decisions, files outside this repository, work-stream names); every Rust
//!   file opens with a `//!` doc; every `lib.rs` opens with its purpose and an example; no UI
//!   snapshot captures output that depends on an optional toolchain component (`rust-src`).

mod agree;
mod celldb_api;
mod celldb_cluster;
mod celldb_cluster_admin;
mod celldb_cluster_netns;
mod celldb_crash;
mod celldb_disk;
mod celldb_hostile;
mod celldb_raft;
mod celldb_remote;
mod celldb_site;
mod celldb_sweep;
mod index;
mod protein;
mod providers;
mod remote;
mod resolver;
mod rpc;
mod rpc_auth;
mod rpc_context;
mod rpc_doubles;
mod rpc_handler;
mod rpc_layers;
mod rpc_memory;
mod rpc_outcomes;
mod rpc_streams;
mod sources;
mod tidy;
