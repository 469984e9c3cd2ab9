// CELL0003: the qualifier after `@` is a version, not a tag.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate@latest");

fn main() {}
