use cell_sdk::protein;
cell_sdk::cell_remote!(DB = "celldb");

#[protein]
#[DB::persist]
pub enum Shape {
    Circle { radius: u32 },
}

fn main() {}
