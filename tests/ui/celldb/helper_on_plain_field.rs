cell_sdk::cell_remote!(DB = "celldb");

// No `#[DB::persist]`: nothing consumes the helper, and rustc refuses a macro on a field.
pub struct NotATable {
    #[DB::key]
    pub id: u64,
}

fn main() {}
