use cell_sdk::{handler, service};

pub struct Plain {
    pub id: u64,
}

#[service]
pub struct Store;

#[handler]
impl Store {
    async fn put(&self, value: Plain) -> u64 {
        value.id
    }
}

fn main() {}
