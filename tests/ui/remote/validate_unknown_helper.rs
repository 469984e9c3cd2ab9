// CELL0011: not a helper of `schema`, with a suggestion.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");

#[Val::schema]
struct Signup {
    #[Val::emial]
    email: String,
}

fn main() {}
