use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist(durability = "eventually", colour = "red")]
pub struct User {
    #[DB::key]
    id: u64,
}

fn main() {}
