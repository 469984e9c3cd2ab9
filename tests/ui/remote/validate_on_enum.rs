// `schema` applies to structs; the enum is kept as written.
use cell_sdk::cell_remote;

cell_remote!(Val = "validate");

#[Val::schema]
enum Choice {
    A,
    B,
}

fn main() {
    let _ = Choice::A;
}
