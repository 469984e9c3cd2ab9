use cell_sdk::protein;

#[protein]
fn not_a_type() {}

fn main() {}
