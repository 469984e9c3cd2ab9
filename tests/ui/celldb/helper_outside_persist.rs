cell_sdk::cell_remote!(DB = "celldb");

#[DB::key]
pub struct NotATable {
    id: u64,
}

fn main() {}
