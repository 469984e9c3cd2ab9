//! The README's main job, run for real: two runs of the `orders` binary against one data
//! directory; the second sees the first one's data.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::process::Command;

fn run(data: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .env("CELL_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_second_run_sees_the_first_runs_orders() {
    let data = tempfile::tempdir().unwrap();
    let first = run(data.path());
    assert!(first.contains("first run: created customer Ada"), "{first}");
    assert!(first.contains("placed order #1"), "{first}");
    let second = run(data.path());
    assert!(!second.contains("first run"), "{second}");
    assert!(second.contains("placed order #2"), "{second}");
    assert!(
        second.contains("Ada has 2 order(s), 900 cents in total; 998 notebooks left"),
        "{second}"
    );
    assert!(data.path().join("orders/celldb/data").exists());
}
