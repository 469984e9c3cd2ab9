// CELL0003: no alias.
use cell_sdk::cell_remote;

cell_remote!("validate");

fn main() {}
