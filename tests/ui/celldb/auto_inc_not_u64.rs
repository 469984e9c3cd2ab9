use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

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
