use cell_sdk::protein;

struct NotAProtein;

#[protein]
struct Holder {
    inner: NotAProtein,
}

fn main() {}
