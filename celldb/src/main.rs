//! `celldb`: inspect a database directory without the application's types, or serve it to
//! other processes (`celldb serve`). The command line lives in the library (`celldb::cli`),
//! so tests run this very program.

/// mimalloc rather than glibc's malloc: under a raft group's load, glibc's per-thread arenas
/// kept growing and trimming (`sysmalloc`, `mprotect`) on the journal and apply threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    celldb::cli::main()
}
