// CELL0010 / CELL0013: malformed export declarations, each error at its token. Whatever parsed
// is still exported.
cell_sdk::export! {
    format = 2;
    cell = "not-this-package";
    macros = validate::__cell_exports;
    attributes schema {}
    attribute schema {
        helpers = [email];
        args { mode: "a" | "b" = "c" }
    }
}

fn main() {}
