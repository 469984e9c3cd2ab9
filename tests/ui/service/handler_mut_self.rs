use cell_sdk::{handler, service};

#[service]
pub struct Counter;

#[handler]
impl Counter {
    async fn bump(&mut self) -> u64 {
        1
    }
}

fn main() {}
