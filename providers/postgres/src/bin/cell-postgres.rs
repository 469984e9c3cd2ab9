//! `cell-postgres`: tools for a database used through cell-postgres.
//!
//! `cell-postgres schema` prints the DDL `migrate` recorded in the database `$DATABASE_URL`
//! (or `--url`) names, table by table with its version, so a team can review what runs.
//! An application prints the DDL of its own structs with `cell_postgres::cli::print_schema`.

fn main() -> anyhow::Result<()> {
    cell_postgres::cli::main()
}
