//! `celldb`: inspect a database directory without the application's types, or serve it to
//! other processes (`celldb serve`). The command line lives in the library (`celldb::cli`),
//! so tests run this very program.

fn main() -> anyhow::Result<()> {
    celldb::cli::main()
}
