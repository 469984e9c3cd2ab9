use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist]
pub struct Note {
    #[DB::index]
    author: String,
    text: String,
}

fn main() {}
