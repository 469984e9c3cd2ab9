// CELL0010: the declaration must sit at the crate root, where `cell_remote!` looks for it.
mod inner {
    cell_sdk::export! {
        format = 1;
        cell = "cell-tests-tests";
        macros = validate::__cell_exports;
        attribute schema {}
    }
}

fn main() {}
