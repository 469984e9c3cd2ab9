use cell_sdk::service;

#[service]
pub enum Mode {
    Fast,
}

fn main() {
    let _ = Mode::Fast;
}
