// CELL0002: this crate depends on toml 0.9 and (renamed) toml 1: say which one.
use cell_sdk::cell_remote;

cell_remote!(T = "toml");

fn main() {}
