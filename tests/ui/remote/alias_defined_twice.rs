// CELL0004 (alias clash) is reported by rustc as E0428: the alias module is defined twice.
use cell_sdk::cell_remote;

cell_remote!(P = "greet");
cell_remote!(P = "shout");

fn main() {}
