use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[DB::key]
    email: String,
}

fn main() {}
