//! Tidy checks on the test files themselves (as rust-analyzer's `xtask/src/tidy.rs` does).
//!
//! The trybuild snapshots under `tests/ui/` must hold on every machine. rustc prints the source
//! lines of a standard-library location only when the `rust-src` component is installed
//! (rust-analyzer users have it, a minimal toolchain does not), and trybuild writes such a
//! location as `$RUST/…`: a snapshot with any `$RUST/` line differs between the two. This test
//! fails on any machine, with or without `rust-src`, as soon as one is committed.

use std::path::{Path, PathBuf};

fn stderr_snapshots(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read tests/ui") {
        let path = entry.expect("read tests/ui").path();
        if path.is_dir() {
            stderr_snapshots(&path, out);
        } else if path.extension().is_some_and(|e| e == "stderr") {
            out.push(path);
        }
    }
}

#[test]
fn no_ui_snapshot_depends_on_the_rust_src_component() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut snapshots = Vec::new();
    stderr_snapshots(&ui, &mut snapshots);
    assert!(snapshots.len() > 10, "found only {snapshots:?}");
    let mut offenders = Vec::new();
    for path in &snapshots {
        let text = std::fs::read_to_string(path).expect("read a snapshot");
        for (i, line) in text.lines().enumerate() {
            if line.contains("$RUST/") {
                offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these snapshots point into the standard library, whose source lines rustc prints only \
         when the rust-src component is installed; rewrite the case so the error stays in \
         user or workspace code (see the README's Development section):\n{}",
        offenders.join("\n")
    );
}
