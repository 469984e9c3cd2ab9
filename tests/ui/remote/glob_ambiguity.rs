// CELL0005 (glob-import ambiguity) is reported by rustc as E0659: both providers export `hello`.
use cell_sdk::cell_remote;

cell_remote!(G = "greet");
cell_remote!(S = "shout");

use G::*;
use S::*;

#[hello]
struct Guest;

fn main() {}
