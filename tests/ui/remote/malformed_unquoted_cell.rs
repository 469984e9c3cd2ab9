// CELL0003: the cell name must be a string literal.
use cell_sdk::cell_remote;

cell_remote!(Val = validate);

fn main() {}
