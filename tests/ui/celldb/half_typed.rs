use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

// Two keys: an error, but the best-effort expansion still generates `User::get`, so this
// call does not add a second error.
#[protein]
#[DB::persist]
pub struct User {
    #[DB::key]
    id: u64,
    #[DB::key]
    other: u64,
}

async fn use_it() {
    let _ = User::get(1).await;
}

fn main() {
    let _ = use_it();
}
