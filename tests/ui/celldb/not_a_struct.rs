use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub enum Shape {
    Circle { radius: u32 },
}

fn main() {}
