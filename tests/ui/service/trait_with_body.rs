use cell_sdk::service;

#[service]
pub trait Clock {
    async fn now(&self) -> u64 {
        0
    }
}

fn main() {}
