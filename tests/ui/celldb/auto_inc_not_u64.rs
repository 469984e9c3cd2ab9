use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub struct Event {
    #[DB::key]
    #[DB::auto_inc]
    id: String,
    #[DB::index]
    #[DB::auto_inc]
    kind: u32,
}

fn main() {}
