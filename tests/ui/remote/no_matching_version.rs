// CELL0001: a dependency on the cell exists, but not in the version asked for.
use cell_sdk::cell_remote;

cell_remote!(G = "greet@0.9");

fn main() {}
