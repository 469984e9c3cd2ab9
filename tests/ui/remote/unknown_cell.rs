// CELL0001: a typo in the cell name: "did you mean" and this crate's direct dependencies.
use cell_sdk::cell_remote;

cell_remote!(Val = "validat");

fn main() {}
