//! Fields whose types have no column: the errors point at each field's type.
use cell_sdk::{cell_remote, protein};
cell_remote!(Postgres = "cell-postgres");

#[protein]
pub struct Address {
    street: String,
}

#[protein]
#[Postgres::table(name = "people")]
pub struct Person {
    id: u64,
    home: Address,
    huge: u128,
}

fn main() {}
