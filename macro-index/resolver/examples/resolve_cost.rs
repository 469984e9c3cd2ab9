//! What one resolution costs — the work every `cell_remote!` and every provider macro expansion
//! does — measured against an anchor in the same run: reading the same manifest from disk
//! without parsing it. "cold" parses the manifests every time (a process's first resolution of
//! a crate); "warm" is every later one (contents compared, parse skipped).
//!
//! `cargo run --release -p cell-resolver --example resolve_cost [manifest_dir] [cell]`
//! (defaults: this repository's `tests` crate and `validate`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median per-call time of `f` over `rounds` rounds of `per_round` calls.
fn measure(rounds: usize, per_round: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..per_round {
        f(); // warm-up
    }
    let samples = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed() / per_round
        })
        .collect();
    median(samples)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests"),
        PathBuf::from,
    );
    let cell = args.next().unwrap_or_else(|| "validate".to_owned());
    let manifest = dir.join("Cargo.toml");

    let anchor = measure(15, 200, || {
        let text = std::fs::read_to_string(&manifest).expect("manifest readable");
        std::hint::black_box(text);
    });
    let cold = measure(15, 50, || {
        let text = std::fs::read_to_string(&manifest).expect("manifest readable");
        let table: toml::Table = text.parse().expect("manifest is TOML");
        std::hint::black_box(cell_resolver::Manifest::from_table(&dir, &table));
    });
    let resolve = measure(15, 200, || {
        let r = cell_resolver::resolve(&dir, &cell, None);
        std::hint::black_box(r.ok());
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("manifest: {}", manifest.display());
    println!("anchor: read_to_string(Cargo.toml)  {:>8.1} µs", us(anchor));
    println!("cold:   read + parse manifests      {:>8.1} µs", us(cold));
    println!("warm:   resolve({cell:?})  {:>8.1} µs", us(resolve));
    println!(
        "ratios to anchor: cold {:.1}x, warm {:.1}x",
        us(cold) / us(anchor),
        us(resolve) / us(anchor)
    );
}
