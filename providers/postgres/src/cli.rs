//! The `cell-postgres` command line (feature `cli`), and [`print_schema`] for applications.

use clap::{Parser, Subcommand};

use crate::{Pg, Tables};

#[derive(Parser)]
#[command(
    name = "cell-postgres",
    about = "Tools for a database used through cell-postgres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the DDL `migrate` recorded in the database, table by table.
    Schema {
        /// The database (default: $DATABASE_URL).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Runs the command line.
///
/// # Errors
/// A bad URL, an unreachable server, a database `migrate` never ran on.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema { url } => {
            let pg = match url {
                Some(url) => Pg::connect(&url)?,
                None => Pg::from_env()?,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tables = runtime.block_on(pg.recorded_schema())?;
            if tables.is_empty() {
                println!("-- no table recorded: `migrate` has not run on this database");
            }
            for (name, version, ddl) in tables {
                println!("-- {name}, schema version {version}\n{ddl}");
            }
            Ok(())
        }
    }
}

/// Prints the DDL of `S`'s tables as `migrate` would apply it (for an application's own
/// `schema` subcommand: `cell_postgres::cli::print_schema::<(Customer, Order)>()`).
pub fn print_schema<S: Tables>() {
    println!("{}", crate::schema_sql::<S>());
}
