#[allow(non_snake_case)]
mod DB {
    pub use celldb::__cell_exports::*;
}

// No `#[DB::persist]`: nothing consumes the helper, and rustc refuses a macro on a field.
pub struct NotATable {
    #[DB::key]
    pub id: u64,
}

fn main() {}
