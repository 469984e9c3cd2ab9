use cell_sdk::handler;

pub struct Forgotten;

#[handler]
impl Forgotten {
    async fn ping(&self) -> u64 {
        1
    }
}

fn main() {}
