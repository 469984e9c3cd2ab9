//! `celldb`: inspect a database directory without the application's types.
//!
//! - `celldb inspect <dir>`: every table with its record count, fingerprint, key type, indexes
//!   and structure;
//! - `celldb dump <dir> <table>`: every record's key and value bytes (hex), in key order.
//!
//! It takes the directory's lock like any writer, so it refuses a database that a running
//! process has open (stop the process first).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "celldb",
    version,
    about = "Inspect celldb database directories"
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { dir } => inspect(&dir),
        Command::Dump { dir, table } => dump(&dir, &table),
    }
}

fn open(dir: &PathBuf) -> anyhow::Result<celldb::Db> {
    anyhow::ensure!(
        dir.join("data").exists(),
        "{} is not a celldb database (no `data` directory)",
        dir.display()
    );
    celldb::Db::open(dir).with_context(|| format!("opening {}", dir.display()))
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
