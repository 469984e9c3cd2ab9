use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");
cell_sdk::cell_remote!(Pg = "celldb");

#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[Pg::index]
    email: String,
}

fn main() {}
