//! The order book of this example, shared by its two binaries:
//!
//! - `orders` (the README's main job) keeps it in the database its environment names: the
//!   embedded default directory, a `celldb serve` process, or a raft group as its client;
//! - `orders-member` is a member of a raft group itself and keeps it in the group's
//!   replicated tables, read from its own copy (docs/replication.md, "Embedded members").
//!
//! Both declare the same records, so in a group they share one table per record: orders that
//! `orders` clients place are read by `orders-member` from its replica, and the other way
//! round. [`order_book!`] writes the records and the app's transactions once; each binary
//! says where the tables live:
//!
//! ```no_run
//! cell_sdk::cell_remote!(DB = "celldb");
//! orders::order_book!(replicate = "local"); // `orders`; `orders-member` says "raft"
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> anyhow::Result<()> {
//!     open_shop().await?;
//!     println!("placed order #{}", place_order().await?);
//!     println!("{}", summary().await?);
//!     Ok(())
//! }
//! ```

/// Declares, in the calling crate (which has run `cell_remote!(DB = "celldb")` and depends on
/// `anyhow`), the records `Customer`, `Order` and `Stock` with `replicate = $replicate`
/// (`"local"` or `"raft"`), and the app's steps as async functions:
///
/// - `open_shop()`: creates customer Ada and 1000 notebooks on the first run (true then);
/// - `place_order()`: one order in one transaction across three tables and an index;
/// - `summary()`: a line of counts;
/// - `load(count)`: the load mode (`--load N`, see the `orders` binary's docs).
#[macro_export]
macro_rules! order_book {
    (replicate = $replicate:tt) => {
        /// A customer, found by email.
        #[::cell_sdk::protein]
        #[DB::persist(table = "customers", replicate = $replicate)]
        pub struct Customer {
            #[DB::key]
            id: u64,
            #[DB::unique]
            email: String,
            name: String,
            total_cents: u64,
        }

        /// One order; ids come from a crash-safe counter; indexed by customer.
        #[::cell_sdk::protein]
        #[DB::persist(table = "orders", replicate = $replicate)]
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
        #[::cell_sdk::protein]
        #[DB::persist(table = "stock", replicate = $replicate)]
        pub struct Stock {
            #[DB::key]
            product: String,
            units: u64,
        }

        /// Creates customer Ada and stocks 1000 notebooks unless Ada exists; true if it did.
        pub async fn open_shop() -> ::anyhow::Result<bool> {
            if Customer::by_email("ada@example.com").await?.is_some() {
                return Ok(false);
            }
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
            Ok(true)
        }

        /// Places one notebook order for Ada: the order, her running total and the stock
        /// change together or not at all. The body may re-run on a conflict, so it has no side
        /// effects besides its writes. Returns the order's id.
        pub async fn place_order() -> ::anyhow::Result<u64> {
            let id = DB::transaction(|tx| async move {
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
            Ok(id)
        }

        /// Ada's orders and total, the stock left, and the size of the orders table.
        pub async fn summary() -> ::anyhow::Result<String> {
            let ada = Customer::by_email("ada@example.com")
                .await?
                .ok_or_else(|| ::anyhow::anyhow!("Ada vanished"))?;
            let orders = Order::by_customer(ada.id).await?;
            let stock = Stock::get("notebook").await?.map_or(0, |s| s.units);
            Ok(format!(
                "{} has {} order(s), {} cents in total; {} notebooks left; {} orders in the table",
                ada.name,
                orders.len(),
                ada.total_cents,
                stock,
                Order::count().await?
            ))
        }

        /// Load mode: `count` orders tagged with this run, one after the other, each
        /// acknowledgement printed; then every order of the run is read back and each
        /// acknowledged one must be there exactly once (an error otherwise).
        pub async fn load(count: u64) -> ::anyhow::Result<()> {
            let run = ::std::time::SystemTime::now()
                .duration_since(::std::time::UNIX_EPOCH)?
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
            let found = Order::by_customer(1).await?.into_iter().map(|o| o.product);
            $crate::LoadReport::check(count, &acked, unknown, found, tag).conclude()
        }
    };
}

/// How a load run ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Orders whose commit was acknowledged.
    pub acked: u64,
    /// Orders whose commit failed (they may or may not have happened).
    pub unknown: u64,
    /// Acknowledged orders not in the table.
    pub missing: u64,
    /// Orders of the run in the table more than once.
    pub twice: u64,
}

impl LoadReport {
    /// Compares what was acknowledged (`acked`, by number, out of `count`) with the products
    /// found in the table (`found`; order `i` of the run is the product `tag(i)`).
    pub fn check(
        count: u64,
        acked: &[u64],
        unknown: u64,
        found: impl IntoIterator<Item = String>,
        tag: impl Fn(u64) -> String,
    ) -> Self {
        let mut seen = std::collections::HashMap::<String, u64>::new();
        for product in found {
            *seen.entry(product).or_default() += 1;
        }
        Self {
            acked: acked.len() as u64,
            unknown,
            missing: acked
                .iter()
                .filter(|&&i| !seen.contains_key(&tag(i)))
                .count() as u64,
            twice: (0..count)
                .filter(|&i| seen.get(&tag(i)).copied().unwrap_or(0) > 1)
                .count() as u64,
        }
    }

    /// Prints the report.
    ///
    /// # Errors
    /// When an acknowledged order is missing or an order is there twice.
    pub fn conclude(&self) -> anyhow::Result<()> {
        println!(
            "load: {} acknowledged, {} unknown; acknowledged but missing: {}; present twice: {}",
            self.acked, self.unknown, self.missing, self.twice
        );
        anyhow::ensure!(
            self.missing == 0 && self.twice == 0,
            "an acknowledged order is missing or an order is there twice"
        );
        println!("every acknowledged order is there exactly once");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LoadReport;

    #[test]
    fn a_load_report_counts_missing_and_doubled_orders() {
        let tag = |i: u64| format!("t{i}");
        let found = ["t0", "t1", "t1", "t3"].map(String::from);
        let report = LoadReport::check(4, &[0, 1, 2], 1, found, tag);
        assert_eq!(
            report,
            LoadReport {
                acked: 3,
                unknown: 1,
                missing: 1,
                twice: 1
            }
        );
        assert!(report.conclude().is_err());
        let clean = LoadReport::check(2, &[0, 1], 0, ["t0", "t1"].map(String::from), tag);
        assert!(clean.conclude().is_ok());
    }
}
