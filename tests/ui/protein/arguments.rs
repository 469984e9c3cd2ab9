use cell_sdk::protein;

#[protein(fast)]
struct Point {
    x: i32,
}

fn main() {}
