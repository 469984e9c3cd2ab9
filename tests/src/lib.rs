//! Shared helpers for the integration tests in `tests/integration/` (one binary, see its
//! `main.rs` for the table of contents): where the repository and its fixtures are, and how to
//! build a fixture workspace with real cargo.
//!
//! Fixture workspaces build into `<target dir>/fixtures`, where the target dir is
//! `CARGO_TARGET_DIR` when set (CI sets it, so fixtures are compiled once per cache) or the
//! repository's `target/`. A sub-directory, not the target dir itself: the outer `cargo test`
//! may hold the target dir's lock while tests run.
//!
//! ```
//! let dir = cell_tests::fixtures_dir();
//! assert!(dir.join("workspace").join("Cargo.toml").is_file());
//! ```

use std::path::PathBuf;
use std::process::Command;

/// The repository root (the Cell workspace).
pub fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Where fixture workspaces are built (see the crate docs).
pub fn fixture_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    base.join("fixtures")
}

/// Builds every member of the fixture workspace in `tests/fixtures/<name>` with
/// `cargo build --offline`, and returns the directory holding its binaries.
///
/// # Errors
/// cargo's stderr when the build fails (or cargo cannot be started).
pub fn build_fixture_workspace(name: &str) -> Result<PathBuf, String> {
    let dir = fixtures_dir().join(name);
    let target = fixture_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--offline", "--workspace", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        Ok(target.join("debug"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Runs a binary and returns its stdout.
///
/// # Errors
/// When it cannot start or exits unsuccessfully (its stderr).
pub fn run(binary: &std::path::Path) -> Result<String, String> {
    let output = Command::new(binary)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
