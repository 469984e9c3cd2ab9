//! `orders`: the README's main job — a small order book on celldb.
//!
//! Each run places one order for a customer in one transaction (the order, the customer's
//! running total and the stock of the product change together or not at all), then prints the
//! counts. Run it twice: the counts grow, because the data lives in the default database
//! directory (`$CELL_DATA_DIR/orders/celldb`, or `~/.local/share/cell/orders/celldb`).
//!
//! ```text
//! cargo run -p orders
//! ```
//!
//! **Load mode** (`orders --load N`): places N orders one after the other, each tagged with
//! this run and its number, printing each acknowledgement; a failed order is reported and
//! counted as *unknown* (it may or may not have happened). At the end it reads every order of
//! the run back and checks that each acknowledged one is there exactly once and no order is
//! there twice; it exits 1 otherwise. Run it against a cluster and kill the leader meanwhile
//! (docs/replication.md):
//!
//! ```text
//! CELLDB_URL=raft://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 cargo run -p orders -- --load 2000
//! ```

use cell_sdk::cell_remote;

// celldb's exported macros and API under the alias `DB` (resolved from this crate's
// Cargo.toml, so a renamed dependency works too).
cell_remote!(DB = "celldb");

// The records and the app's transactions (src/lib.rs), kept wherever this process's database
// is: the default directory, a celldb server, or a raft group as its client (a client keeps
// every table in the group).
orders::order_book!(replicate = "local");

/// `--load N` on the command line, if given.
fn load_count() -> anyhow::Result<Option<u64>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(None),
        [flag, n] if flag == "--load" => {
            Ok(Some(n.parse().map_err(|_| {
                anyhow::anyhow!("--load takes a number of orders, not {n:?}")
            })?))
        }
        _ => anyhow::bail!("usage: orders [--load N]  (see the crate docs)"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let load_mode = load_count()?;
    match std::env::var(celldb::remote::URL_ENV) {
        // Remote mode: the same code below talks to a `celldb serve` process.
        Ok(url) => println!("database: the celldb server at {url}"),
        Err(_) => println!("database: {}", celldb::context::default_path().display()),
    }
    if open_shop().await? {
        println!("first run: created customer Ada and stocked 1000 notebooks");
    }
    if let Some(count) = load_mode {
        return load(count).await;
    }
    let order_id = place_order().await?;
    println!("placed order #{order_id}");
    println!("{}", summary().await?);
    Ok(())
}
