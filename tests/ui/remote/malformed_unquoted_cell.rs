// CELL0003: the cell name must be a string literal.
use cell_sdk::cell_remote;

cell_remote!(Val = validate);

fn main() {}

// Best effort: the alias exists (empty), so this use is not a second error about `Val`.
#[allow(unused_imports)]
use Val as _;
