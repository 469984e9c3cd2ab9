// CELL0003: `=` missing between the alias and the cell.
use cell_sdk::cell_remote;

cell_remote!(Val "validate");

fn main() {}
