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

use cell_sdk::{cell_remote, protein};

// celldb's exported macros and API under the alias `DB` (resolved from this crate's
// Cargo.toml, so a renamed dependency works too).
cell_remote!(DB = "celldb");

/// A customer, found by email.
#[protein]
#[DB::persist(table = "customers")]
pub struct Customer {
    #[DB::key]
    id: u64,
    #[DB::unique]
    email: String,
    name: String,
    total_cents: u64,
}

/// One order; ids come from a crash-safe counter; indexed by customer.
#[protein]
#[DB::persist(table = "orders")]
pub struct Order {
    #[DB::key]
    #[DB::auto_inc]
    id: u64,
    #[DB::index]
    customer: u64,
    product: String,
    cents: u64,
}

/// Units of a product left in stock.
#[protein]
#[DB::persist]
pub struct Stock {
    #[DB::key]
    product: String,
    units: u64,
}

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

/// Load mode: N tagged orders, then the exactly-once check (see the crate docs).
async fn load(count: u64) -> anyhow::Result<()> {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let tag = |i: u64| format!("load-{run}-{i}");
    let (mut acked, mut unknown) = (Vec::new(), 0u64);
    for i in 0..count {
        let product = tag(i);
        let placed = DB::transaction(|tx| {
            let product = product.clone();
            async move {
                let mut ada = tx
                    .get::<Customer>(1)
                    .await?
                    .ok_or_else(|| DB::Error::abort("customer 1 is missing"))?;
                ada.total_cents += 450;
                let id = tx
                    .insert(&Order {
                        id: 0,
                        customer: ada.id,
                        product,
                        cents: 450,
                    })
                    .await?;
                tx.update(&ada).await?;
                Ok(id)
            }
        })
        .await;
        match placed {
            Ok(id) => {
                acked.push(i);
                println!("order {i} acknowledged as #{id}");
            }
            Err(e) => {
                unknown += 1;
                println!("order {i} outcome unknown: {e}");
            }
        }
    }
    let mut seen = std::collections::HashMap::<String, u64>::new();
    for order in Order::by_customer(1).await? {
        *seen.entry(order.product).or_default() += 1;
    }
    let twice = (0..count)
        .filter(|&i| seen.get(&tag(i)).copied().unwrap_or(0) > 1)
        .count();
    let missing = acked
        .iter()
        .filter(|&&i| !seen.contains_key(&tag(i)))
        .count();
    println!(
        "load: {} acknowledged, {unknown} unknown; acknowledged but missing: {missing}; \
         present twice: {twice}",
        acked.len()
    );
    anyhow::ensure!(
        missing == 0 && twice == 0,
        "an acknowledged order is missing or an order is there twice"
    );
    println!("every acknowledged order is there exactly once");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let load_mode = load_count()?;
    match std::env::var(celldb::remote::URL_ENV) {
        // Remote mode: the same code below talks to a `celldb serve` process.
        Ok(url) => println!("database: the celldb server at {url}"),
        Err(_) => println!("database: {}", celldb::context::default_path().display()),
    }

    if Customer::by_email("ada@example.com").await?.is_none() {
        DB::insert(&Customer {
            id: 1,
            email: "ada@example.com".into(),
            name: "Ada".into(),
            total_cents: 0,
        })
        .await?;
        Stock {
            product: "notebook".into(),
            units: 1_000,
        }
        .save()
        .await?;
        println!("first run: created customer Ada and stocked 1000 notebooks");
    }
    if let Some(count) = load_mode {
        return load(count).await;
    }

    // One transaction across three tables and an index. It may re-run on a conflict, so it
    // has no side effects besides its writes.
    let order_id = DB::transaction(|tx| async move {
        let mut ada = tx
            .get::<Customer>(1)
            .await?
            .ok_or_else(|| DB::Error::abort("customer 1 is missing"))?;
        let mut stock = tx
            .get::<Stock>("notebook")
            .await?
            .ok_or_else(|| DB::Error::abort("no notebook stock"))?;
        if stock.units == 0 {
            return Err(DB::Error::abort("out of notebooks"));
        }
        stock.units -= 1;
        ada.total_cents += 450;
        // Key 0: the table's counter assigns the next id, in this same atomic commit.
        let id = tx
            .insert(&Order {
                id: 0,
                customer: ada.id,
                product: "notebook".into(),
                cents: 450,
            })
            .await?;
        tx.update(&ada).await?;
        tx.update(&stock).await?;
        Ok(id)
    })
    .await?;

    let ada = Customer::by_email("ada@example.com")
        .await?
        .ok_or_else(|| anyhow::anyhow!("Ada vanished"))?;
    let orders = Order::by_customer(ada.id).await?;
    let stock = Stock::get("notebook").await?.map_or(0, |s| s.units);
    println!("placed order #{order_id}");
    println!(
        "{} has {} order(s), {} cents in total; {} notebooks left; {} orders in the table",
        ada.name,
        orders.len(),
        ada.total_cents,
        stock,
        Order::count().await?
    );
    Ok(())
}
