use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}
#[allow(non_snake_case, unused_imports)]
mod Pg {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[Pg::index]
    email: String,
}

fn main() {}
