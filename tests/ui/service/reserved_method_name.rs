use cell_sdk::{handler, service};

#[service]
pub struct Gateway;

#[handler]
impl Gateway {
    async fn connect(&self, host: String) -> bool {
        !host.is_empty()
    }
}

fn main() {}
