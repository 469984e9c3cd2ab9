// A range over values that cannot be compared is rustc's error, at the user's range
// expression. (Not a range of the wrong type such as `"a".."z"` for a `u8`: rustc answers that
// by listing the standard library's `RangeBounds` impls, with their source lines only when the
// `rust-src` component is installed, so no snapshot could hold on every machine.)
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");

#[derive(Debug)]
struct Age(u8);

#[Val::schema]
struct Signup {
    #[Val::range(Age(1)..Age(9))]
    age: Age,
}

fn main() {}
