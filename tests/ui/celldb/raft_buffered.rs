use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

// A raft table's write is acknowledged once a majority fsynced it: "buffered" contradicts it.
#[protein]
#[DB::persist(replicate = "raft", durability = "buffered")]
pub struct Order {
    #[DB::key]
    id: u64,
}

fn main() {}
