#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[DB::key]
pub struct NotATable {
    id: u64,
}

fn main() {}
