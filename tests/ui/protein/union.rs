use cell_sdk::protein;

#[protein]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
