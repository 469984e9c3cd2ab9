// CELL0010: `api` lists paths inside the provider crate. `::x`, `self::x` and `super::x` are
// reported at the path; `crate::x` is accepted. The exports module survives either way, so
// consumers keep resolving what is valid (`main` uses it).
pub struct Thing;

cell_sdk::export! {
    format = 1;
    cell = "cell-tests-tests";
    macros = validate;
    api = [crate::Thing, ::std::vec::Vec, self::Thing, super::Other];
}

fn main() {
    let _thing: __cell_exports::Thing = Thing;
}
