//! The query builder takes only the column constants of the queried table, with values of the
//! column's type.
use cell_sdk::{cell_remote, protein};
cell_remote!(Postgres = "cell-postgres");

#[protein]
#[Postgres::table]
pub struct User {
    id: u64,
    email: String,
}

#[protein]
#[Postgres::table]
pub struct Order {
    id: u64,
    customer: u64,
}

fn main() {
    let _ = Postgres::query::<User>().where_eq(Order::customer, 1u64);
    let _ = Postgres::query::<User>().where_eq(User::email, 5);
    let _ = Postgres::query::<User>().order_by(User::customer);
}
