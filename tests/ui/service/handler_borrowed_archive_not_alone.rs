use cell_sdk::{handler, protein, service, Archived};

#[protein]
pub struct Doc {
    pub body: String,
}

#[service]
pub struct Index;

#[handler]
impl Index {
    async fn add(&self, doc: &Archived<Doc>, boost: u32) -> u64 {
        doc.body.len() as u64 + boost as u64
    }
}

fn main() {}
