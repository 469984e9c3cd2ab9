// CELL0009: `tempfile` is a dependency but exports nothing. rustc's E0432 on `__cell_exports`
// at the same literal is the same problem (docs/problems.md).
use cell_sdk::cell_remote;

cell_remote!(Tmp = "tempfile");

fn main() {}
