// CELL0001: the crate's *rename* of a package was written instead of the package (cell) name.
use cell_sdk::cell_remote;

cell_remote!(T = "toml_v1");

fn main() {}
