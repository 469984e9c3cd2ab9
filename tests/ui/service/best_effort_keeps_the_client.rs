use cell_sdk::{handler, service};

#[service]
pub struct Clock;

#[handler]
impl Clock {
    async fn now(&self) -> u64 {
        0
    }

    fn broken(&self) -> u64 {
        1
    }
}

// Only the error at `fn broken` is reported: the client and its valid methods still exist.
async fn caller() -> Result<u64, cell_sdk::CallError> {
    let client = Clock::connect().await?;
    client.now().await
}

fn main() {
    let _ = caller();
}
