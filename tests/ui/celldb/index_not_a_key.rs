use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub struct Point {
    #[DB::key]
    id: u64,
    #[DB::index]
    x: f64,
}

fn main() {}
