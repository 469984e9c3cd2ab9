// CELL0014: helper arguments that do not match the helper's schema.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");

#[Val::schema]
struct Signup {
    #[Val::range]
    age: u8,
    #[Val::length(mn = 3)]
    name: String,
    #[Val::length(min = 5, max = 2)]
    nick: String,
    #[Val::email(strict)]
    email: String,
}

fn main() {}
