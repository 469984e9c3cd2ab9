//! The smallest cell program: a protein is archived, validated and read back in place.

use cell_sdk::{Fingerprint, codec, protein};

/// A greeting that can cross a process boundary.
#[protein]
pub struct Greeting {
    /// Who is greeted.
    pub to: String,
    /// How many times.
    pub times: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let greeting = Greeting {
        to: "world".into(),
        times: 3,
    };
    let bytes = codec::to_bytes(&greeting)?;
    let archived = codec::access::<Greeting>(&bytes)?;
    println!(
        "hello, {} (x{}) — {} bytes, fingerprint {}",
        archived.to,
        archived.times,
        bytes.len(),
        cell_sdk::fingerprint::hex(Greeting::FINGERPRINT)
    );
    Ok(())
}
