//! Tidy checks: properties of the repository's text that keep the docs true for users.
//!
//! User docs (`docs/*.md`, `README.md`) and rustdoc comments (`///`, `//!`) are read by people
//! outside this project, so they must not cite notes that only its developers have: design
//! decisions by number, the internal design file (not in this repository) or work-stream names
//! (the texts are in `FORBIDDEN`). The reasons users need are in `docs/design.md`.
//!
//! The house rules that keep the code readable are checked here too, as code rather than as a
//! reviewer's memory: every Rust file opens with a `//!` doc saying what it is, and every
//! library's `lib.rs` opens with its purpose and an example.
//!
//! The trybuild snapshots under `tests/ui/` must hold on every machine. rustc prints the source
//! lines of a standard-library location only when the `rust-src` component is installed
//! (rust-analyzer users have it, a minimal toolchain does not), and trybuild writes such a
//! location as `$RUST/…`: a snapshot with any `$RUST/` line differs between the two, so none may
//! have one — checked on every machine, with or without `rust-src`.

use std::path::{Path, PathBuf};

/// What user-facing text must not contain, and why each is wrong there.
const FORBIDDEN: &[(&str, &str)] = &[
    (
        "DESIGN decision",
        "a numbered internal design decision: explain it, or link docs/design.md",
    ),
    (
        "DESIGN.md",
        "an internal design file that is not in this repository: link docs/design.md",
    ),
    ("H2", "an internal work-stream name"),
];

/// Every user doc: `README.md` and `docs/*.md`.
fn user_docs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs = vec![root.join("README.md")];
    let entries = std::fs::read_dir(root.join("docs")).expect("read docs/");
    for entry in entries {
        let path = entry.expect("read docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

#[test]
fn user_docs_cite_no_internal_design_notes() {
    let mut problems = Vec::new();
    let docs = user_docs();
    assert!(docs.len() > 5, "found only {docs:?}");
    for path in &docs {
        let text = std::fs::read_to_string(path).expect("read a user doc");
        for (n, line) in text.lines().enumerate() {
            problems
                .extend(problems_in(line).map(|p| format!("{}:{}: {p}", path.display(), n + 1)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rustdoc_comments_cite_no_internal_design_notes() {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read a Rust file");
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("///") || trimmed.starts_with("//!") {
                problems.extend(
                    problems_in(line).map(|p| format!("{}:{}: {p}", path.display(), n + 1)),
                );
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    let root = repo_root();
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !is_fixture(&root, p))
        .filter(|p| {
            let text = std::fs::read_to_string(p).expect("read a Rust file");
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "open these files with a `//!` doc saying what they are:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_library_opens_with_its_purpose_and_an_example() {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    let root = repo_root();
    let libs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| !is_fixture(&root, p))
        .filter(|p| p.ends_with("src/lib.rs"))
        .collect();
    assert!(libs.len() > 10, "found only {libs:?}");
    let mut problems = Vec::new();
    for lib in libs {
        let text = std::fs::read_to_string(lib).expect("read a lib.rs");
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        let prose = header
            .iter()
            .any(|l| l.trim_start_matches("//!").trim().len() > 20);
        let example = header
            .iter()
            .any(|l| l.trim_start_matches("//!").trim_start().starts_with("```"));
        if !prose || !example {
            problems.push(format!(
                "{}: the `//!` header needs {}",
                lib.display(),
                if prose {
                    "an example (a ``` block)"
                } else {
                    "its purpose and an example"
                }
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Fixture crates and UI-test inputs are data: test inputs, not the project's code.
fn is_fixture(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root)
        .is_ok_and(|rel| rel.starts_with("tests/fixtures") || rel.starts_with("tests/ui"))
}

#[test]
fn the_checks_catch_what_they_forbid() {
    assert_eq!(problems_in("as DESIGN decision 8 says").count(), 1);
    assert_eq!(problems_in("see DESIGN.md in the shared folder").count(), 1);
    assert_eq!(problems_in("(implemented; H2)").count(), 1);
    // Words that merely contain the letters are fine.
    assert_eq!(
        problems_in("SHA2, H2O, an H264 stream, a design decision").count(),
        0
    );
}

/// The problems of one line: each forbidden text, a one-word text only as a whole word.
fn problems_in(line: &str) -> impl Iterator<Item = String> + '_ {
    FORBIDDEN.iter().filter_map(move |(text, why)| {
        let found = if text.chars().all(char::is_alphanumeric) {
            line.split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|word| word == *text)
        } else {
            line.contains(text)
        };
        found.then(|| format!("`{text}`: {why}"))
    })
}

/// Every `.rs` file under `dir`, except build output, dependencies and hidden directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read a source directory");
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

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

/// Every `cargo run -p NAME` the README and the guides show picks one binary by itself: the
/// package has one, or a `default-run` (a second binary once broke the quick start's
/// `cargo run -p orders`, and no other test runs that exact command).
#[test]
fn every_cargo_run_in_the_docs_names_a_package_that_picks_one_binary() {
    let root = repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let picks_one = |name: &str| -> Option<bool> {
        let package = packages.iter().find(|p| p["name"] == name)?;
        let bins = package["targets"]
            .as_array()?
            .iter()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .count();
        Some(bins == 1 || package["default_run"].is_string())
    };
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("read docs/") {
        let path = entry.expect("read docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("read a doc");
        for (n, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("cargo run") {
                // The command's own arguments: up to `--` (the program's), a backtick or the
                // end of the line.
                let words: Vec<&str> = line[at + "cargo run".len()..]
                    .split(|c: char| c.is_whitespace() || c == '`')
                    .take_while(|w| *w != "--")
                    .filter(|w| !w.is_empty())
                    .collect();
                // `--bin` or `--example` name the target themselves.
                if words
                    .iter()
                    .any(|w| w.starts_with("--bin") || w.starts_with("--example"))
                {
                    continue;
                }
                let Some(i) = words.iter().position(|w| *w == "-p") else {
                    continue;
                };
                // A package name, not prose such as `cargo run -p …`.
                let Some(name) = words.get(i + 1).filter(|n| {
                    n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }) else {
                    continue;
                };
                checked += 1;
                match picks_one(name) {
                    Some(true) => {}
                    Some(false) => problems.push(format!(
                        "{}:{}: `cargo run -p {name}` cannot choose among {name}'s binaries: \
                         add `default-run` to its Cargo.toml or `--bin` to the command",
                        doc.display(),
                        n + 1
                    )),
                    None => problems.push(format!(
                        "{}:{}: `cargo run -p {name}`: no package {name} in the workspace",
                        doc.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(
        checked > 0,
        "found no `cargo run -p` in README.md and docs/"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
