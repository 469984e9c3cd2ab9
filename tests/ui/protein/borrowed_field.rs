use cell_sdk::protein;

#[protein]
struct Note {
    title: &'static str,
}

fn main() {}
