// A range of the wrong type is rustc's error, at the user's range expression.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");

#[Val::schema]
struct Signup {
    #[Val::range("a".."z")]
    age: u8,
}

fn main() {}
