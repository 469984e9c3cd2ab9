// CELL0011: a `validate` helper written under another provider's alias is rejected by
// `schema` at that helper; the struct and the rest of its rules still expand.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");
cell_remote!(G = "greet");

#[Val::schema]
struct Signup {
    #[G::email]
    email: String,
    #[Val::range(1..=10)]
    stars: u8,
}

fn main() {
    // Best effort: `validate()` exists despite the error above, so this line is not an error.
    let _ = Signup { email: String::new(), stars: 1 }.validate();
}
