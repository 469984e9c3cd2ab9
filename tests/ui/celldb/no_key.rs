use cell_sdk::protein;
#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

#[protein]
#[DB::persist]
pub struct Note {
    #[DB::index]
    author: String,
    text: String,
}

fn main() {}
