//! `orders-pg`: the README's order book (`examples/orders`) on PostgreSQL.
//!
//! The same job — one order per run, in one transaction across three tables — with the alias,
//! the attributes and the calls changed (docs/postgres.md shows the diff). The database is
//! `$DATABASE_URL`; `orders-pg schema` prints the DDL instead.
//!
//! ```text
//! examples/orders-pg/run.sh     # starts a private PostgreSQL, runs this twice, stops it
//! DATABASE_URL=postgres://user@host/db cargo run -p orders-pg
//! ```

use cell_sdk::{cell_remote, protein};

// cell-postgres' exported macros and API under the alias `Postgres`.
cell_remote!(Postgres = "cell-postgres");

/// A customer, found by email.
#[protein]
#[Postgres::table(name = "customers")]
pub struct Customer {
    #[Postgres::primary_key]
    id: u64,
    #[Postgres::unique]
    email: String,
    name: String,
    total_cents: u64,
}

/// One order; ids come from the server's sequence; indexed by customer.
#[protein]
#[Postgres::table(name = "orders")]
pub struct Order {
    #[Postgres::primary_key]
    #[Postgres::serial]
    id: u64,
    #[Postgres::index]
    customer: u64,
    product: String,
    cents: u64,
}

/// Units of a product left in stock.
#[protein]
#[Postgres::table]
pub struct Stock {
    #[Postgres::primary_key]
    product: String,
    units: u64,
}

/// The tables, as `migrate` creates and checks them.
type Schema = (Customer, Order, Stock);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("schema") {
        println!("{}", cell_postgres::schema_sql::<Schema>());
        return Ok(());
    }
    // Creates the tables on the first run; on later runs, checks they match these structs.
    Postgres::migrate::<Schema>().await?;
    println!("database: PostgreSQL, from $DATABASE_URL");

    let ada = Postgres::query::<Customer>()
        .where_eq(Customer::email, "ada@example.com")
        .first()
        .await?;
    if ada.is_none() {
        Postgres::insert(&Customer {
            id: 1,
            email: "ada@example.com".into(),
            name: "Ada".into(),
            total_cents: 0,
        })
        .await?;
        Postgres::insert(&Stock {
            product: "notebook".into(),
            units: 1_000,
        })
        .await?;
        println!("first run: created customer Ada and stocked 1000 notebooks");
    }

    // One SERIALIZABLE transaction across three tables. It may re-run on a serialization
    // failure, so it has no side effects besides its writes.
    let order_id = Postgres::transaction(|tx| async move {
        let mut ada = tx
            .get::<Customer>(1)
            .await?
            .ok_or_else(|| Postgres::Error::abort("customer 1 is missing"))?;
        let mut stock = tx
            .get::<Stock>("notebook")
            .await?
            .ok_or_else(|| Postgres::Error::abort("no notebook stock"))?;
        if stock.units == 0 {
            return Err(Postgres::Error::abort("out of notebooks"));
        }
        stock.units -= 1;
        ada.total_cents += 450;
        // A serial key: the server assigns the id, in this same transaction.
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

    let ada = Postgres::query::<Customer>()
        .where_eq(Customer::email, "ada@example.com")
        .first()
        .await?
        .ok_or_else(|| anyhow::anyhow!("Ada vanished"))?;
    let orders = Postgres::query::<Order>()
        .where_eq(Order::customer, ada.id)
        .all()
        .await?;
    let stock = Postgres::get::<Stock>("notebook")
        .await?
        .map_or(0, |s| s.units);
    println!("placed order #{order_id}");
    println!(
        "{} has {} order(s), {} cents in total; {} notebooks left; {} orders in the table",
        ada.name,
        orders.len(),
        ada.total_cents,
        stock,
        Postgres::query::<Order>().count().await?
    );
    Ok(())
}
