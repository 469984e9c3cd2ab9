use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[DB::key]
    email: String,
}

fn main() {}
