use cell_sdk::{handler, service};

#[service]
pub struct Counter;

#[handler]
impl Counter {
    fn get(&self) -> u64 {
        1
    }
}

fn main() {}
