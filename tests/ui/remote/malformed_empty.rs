// CELL0003: nothing at all.
use cell_sdk::cell_remote;

cell_remote!();

fn main() {}
