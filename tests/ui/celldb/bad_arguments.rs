use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist(durability = "eventually", colour = "red")]
pub struct User {
    #[DB::key]
    id: u64,
}

fn main() {}
