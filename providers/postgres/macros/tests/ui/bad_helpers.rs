//! Helper mistakes: checked against the export declaration, and what only the provider knows.
use cell_sdk::{cell_remote, protein};
cell_remote!(Postgres = "cell-postgres");

#[protein]
#[Postgres::table(nme = "people")]
pub struct Person {
    #[Postgres::primary_key]
    #[Postgres::serial]
    id: String,
    #[Postgres::varchar(32)]
    age: u32,
    #[Postgres::column(nam = "x")]
    name: String,
    #[Postgres::uniqe]
    email: String,
}

fn main() {}
