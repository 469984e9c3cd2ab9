use cell_sdk::{handler, service};

#[service]
pub struct Greeter;

#[handler]
impl Greeter {
    async fn greet(&self, name: &str) -> String {
        format!("hello {name}")
    }
}

fn main() {}
