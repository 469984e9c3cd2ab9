// CELL0003: a keyword (or `_`) is not an alias; the error must survive (no `pub mod type {}`).
use cell_sdk::cell_remote;

cell_remote!(type = "validate");
cell_remote!(_ = "validate");

fn main() {}
