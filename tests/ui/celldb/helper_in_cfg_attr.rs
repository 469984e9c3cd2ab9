use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[cfg_attr(debug_assertions, DB::index)]
    email: String,
    #[cfg_attr(all(), cfg_attr(unix, DB::unique))]
    name: String,
}

fn main() {}
