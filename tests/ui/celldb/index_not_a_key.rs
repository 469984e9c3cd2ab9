use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist]
pub struct Point {
    #[DB::key]
    id: u64,
    #[DB::index]
    x: f64,
}

fn main() {}
