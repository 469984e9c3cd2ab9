// CELL0007: a declared macro or API item that does not exist is rustc's E0432, at its name in
// the declaration.
cell_sdk::export! {
    format = 1;
    cell = "cell-tests-tests";
    macros = validate::__cell_exports;
    attribute schema {}
    attribute nonexistent {}
    api = [helper, missing_fn];
}

/// An API item that exists.
pub fn helper() {}

fn main() {}
