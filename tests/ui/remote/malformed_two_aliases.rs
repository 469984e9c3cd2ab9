// CELL0003: one alias per call.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate", G = "greet");

fn main() {}
