//! The `celldb` command line, built as a binary of this package so that integration tests can
//! run the real `celldb serve` as a separate process (cargo builds a package's own binaries
//! for its tests, not those of other packages).

fn main() -> anyhow::Result<()> {
    celldb::cli::main()
}
