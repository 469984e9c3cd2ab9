//! `cell-macro-index` against real cargo: fixture workspaces under `tests/fixtures/lsp/`
//! (providers in `providers/`, one consumer workspace per problem), copied to a temp dir so
//! cargo's lockfiles and the tests' edits never touch the repository. The fixtures are parsed,
//! never compiled (`cell_sdk::export!` there is only read by the index).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed fixture copy should just fail the test"
)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cell_macro_index::{Index, IndexOptions, ProblemCode, Severity, SourceKind, ValueKind};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else if entry.file_name() != "Cargo.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temp copy of all fixtures; returns (guard, path of `name`).
fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lsp");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    let root = dir.path().join(name).canonicalize().unwrap();
    (dir, root)
}

fn options(root: &Path, guard: &tempfile::TempDir) -> IndexOptions {
    let mut o = IndexOptions::new(root.join("Cargo.toml"));
    // An empty CARGO_HOME for the cache check keeps results independent of this machine.
    o.cargo_home = Some(guard.path().join("no-cargo-home"));
    o.target_dir = Some(guard.path().join("target"));
    o
}

fn index(name: &str) -> (tempfile::TempDir, PathBuf, Index) {
    let (guard, root) = fixture(name);
    let index = Index::build(&options(&root, &guard)).unwrap();
    (guard, root, index)
}

fn codes(index: &Index) -> Vec<&'static str> {
    index.problems.iter().map(|p| p.code.as_str()).collect()
}

#[test]
fn good_fixture_resolves_renamed_dependency_with_zero_problems() {
    let (_g, root, index) = index("good");
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let cells: Vec<&str> = index.providers.iter().map(|p| p.cell.as_str()).collect();
    assert_eq!(cells, ["checks", "kvstore"]);
    let kv = index
        .providers
        .iter()
        .find(|p| p.cell == "kvstore")
        .unwrap();
    assert_eq!(kv.version, "0.3.1");
    assert_eq!(kv.source, SourceKind::Path);
    assert_eq!(kv.api, ["insert", "get", "Db", "Error"]);
    let persist = kv.export("persist").unwrap();
    assert!(
        persist
            .docs
            .starts_with("Stores this struct in a kvstore table."),
        "{}",
        persist.docs
    );
    assert_eq!(persist.helpers, ["key", "index", "unique"]);
    assert_eq!(persist.args[1].name.as_deref(), Some("replicate"));
    assert_eq!(
        persist.args[1].kind,
        ValueKind::OneOf(vec!["local".into(), "gossip".into(), "raft".into()])
    );
    let def = persist.definition.as_ref().unwrap();
    assert!(
        def.file.ends_with("providers/kvstore-macros/src/lib.rs"),
        "{}",
        def.file.display()
    );
    assert_eq!((def.line, def.col), (9, 8));
    let text = std::fs::read_to_string(&def.file).unwrap();
    assert_eq!(&text[def.start..def.end], "persist");
    // The derive keeps its helper from `attributes(column)`.
    assert_eq!(kv.export("Table").unwrap().helpers, ["column"]);

    let consumer = &index.consumers[0];
    assert_eq!(consumer.package, "good-app");
    let db = &consumer.aliases[0];
    assert_eq!((db.name.as_str(), db.cell.as_str()), ("DB", "kvstore"));
    let resolved = db.resolved.as_ref().unwrap();
    assert_eq!(resolved.extern_crate, "db");
    assert_eq!(resolved.version, "0.3.1");
    assert_eq!(db.span.file, root.join("src/lib.rs"));
    assert_eq!((db.span.line, db.span.col), (4, 14));
    assert_eq!(
        consumer.aliases[1].resolved.as_ref().unwrap().extern_crate,
        "checks"
    );
}

#[test]
fn two_versions_resolve_through_qualifiers() {
    let (_g, _root, index) = index("two-versions");
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let aliases = &index.consumers[0].aliases;
    let old = aliases[0].resolved.as_ref().unwrap();
    let new = aliases[1].resolved.as_ref().unwrap();
    assert_eq!(
        (old.version.as_str(), old.extern_crate.as_str()),
        ("0.3.1", "kv3")
    );
    assert_eq!(
        (new.version.as_str(), new.extern_crate.as_str()),
        ("0.4.0", "kv4")
    );
    assert_eq!(
        index
            .providers
            .iter()
            .filter(|p| p.cell == "kvstore")
            .count(),
        2
    );
}

#[test]
fn unknown_cell_is_cell0001_with_a_fix() {
    let (_g, root, index) = index("unknown-cell");
    assert_eq!(codes(&index), ["CELL0001"]);
    let p = &index.problems[0];
    assert_eq!(p.severity, Severity::Error);
    assert_eq!(
        p.message,
        "unknown cell `kvstor`: no dependency of this crate is the package `kvstor`"
    );
    let span = p.span.as_ref().unwrap();
    assert_eq!(span.file, root.join("src/lib.rs"));
    assert_eq!((span.line, span.col, span.end_col), (2, 29, 37));
    assert!(
        p.notes
            .contains(&"help: did you mean \"kvstore\"?".to_owned()),
        "{:?}",
        p.notes
    );
    let fix = p.fix.as_ref().unwrap();
    assert_eq!(fix.replacement, "\"kvstore\"");
    let text = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert_eq!(&text[fix.span.start..fix.span.end], "\"kvstor\"");
}

#[test]
fn unknown_cell_that_is_a_provider_in_the_graph_gets_an_add_dependency_fix() {
    let (_g, root, index) = index("missing-dep");
    assert_eq!(codes(&index), ["CELL0001"]);
    let p = &index.problems[0];
    let fix = p.fix.as_ref().unwrap();
    assert_eq!(
        fix.title,
        "Add `checks = { path = \"../../providers/checks\" }` to Cargo.toml"
    );
    assert_eq!(fix.span.file, root.join("app/Cargo.toml"));
    // Applying the edit gives a manifest cargo accepts and an index without problems.
    let manifest = std::fs::read_to_string(&fix.span.file).unwrap();
    let mut edited = manifest.clone();
    edited.replace_range(fix.span.start..fix.span.end, &fix.replacement);
    assert!(
        edited.contains("[dependencies]\nchecks = { path = \"../../providers/checks\" }\nkvstore"),
        "{edited}"
    );
    std::fs::write(&fix.span.file, edited).unwrap();
    let opts = options(&root, &_g);
    let fixed = Index::build(&opts).unwrap();
    assert!(fixed.problems.is_empty(), "{:#?}", fixed.problems);
}

#[test]
fn two_versions_without_qualifier_is_cell0002() {
    let (_g, _root, index) = index("ambiguous");
    assert_eq!(codes(&index), ["CELL0002"]);
    let p = &index.problems[0];
    assert_eq!(
        p.message,
        "this crate depends on 2 versions of `kvstore`: say which one"
    );
    assert_eq!(
        p.notes,
        ["help: write one of: \"kvstore@0.3\", \"kvstore@0.4\""]
    );
    assert_eq!(p.fix.as_ref().unwrap().replacement, "\"kvstore@0.4\"");
}

#[test]
fn malformed_remote_is_cell0003() {
    let (_g, _root, index) = index("malformed");
    assert_eq!(codes(&index), ["CELL0003"]);
    // The words of `cell_remote!` itself (one shared parser, `cell_export::parse_remote`).
    assert_eq!(
        index.problems[0].message,
        "expected `=` after the alias; expected `Alias = \"cell\"` or `Alias = \"cell@0.4\"`"
    );
    assert_eq!(index.problems[0].span.as_ref().unwrap().line, 2);
}

#[test]
fn alias_twice_in_one_module_is_cell0004() {
    let (_g, _root, index) = index("alias-clash");
    assert_eq!(codes(&index), ["CELL0004"]);
    let p = &index.problems[0];
    assert_eq!(p.message, "the alias `DB` is defined twice in this module");
    assert_eq!(p.span.as_ref().unwrap().line, 3);
    assert!(
        p.notes[0].contains(":2:24") && p.notes[0].contains("E0428"),
        "{:?}",
        p.notes
    );
}

#[test]
fn two_globs_exporting_the_same_name_is_cell0005() {
    let (_g, _root, index) = index("glob");
    assert_eq!(codes(&index), ["CELL0005"]);
    let p = &index.problems[0];
    assert_eq!(
        p.message,
        "`Error` is ambiguous: `use DB::*` and `use Val::*` both bring it into scope"
    );
    // At the use, where rustc reports E0659; the two globs alone are not an error.
    let span = p.span.as_ref().unwrap();
    assert_eq!((span.line, span.col, span.end_col), (9, 22, 27));
    assert_eq!(p.fix.as_ref().unwrap().replacement, "DB::Error");
}

#[test]
fn two_globs_re_exporting_one_item_are_not_cell0005() {
    let (_g, _root, index) = index("glob-reexport");
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let cells: Vec<&str> = index.providers.iter().map(|p| p.cell.as_str()).collect();
    assert_eq!(cells, ["relay-a", "relay-b"]);
}

#[test]
fn export_calls_that_never_compile_are_not_cell0010() {
    // `export!` in a `macro_rules!` body and in a `#[cfg(test)]` module come before the real
    // one: neither is read, nor reported.
    let (_g, _root, index) = index("gated");
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let gated = index.providers.iter().find(|p| p.cell == "gated").unwrap();
    let names: Vec<&str> = gated.exports.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["mark"]);
}

#[test]
fn alias_named_like_a_cell_sdk_macro_is_cell0006() {
    let (_g, _root, index) = index("shadowing");
    assert_eq!(codes(&index), ["CELL0006"]);
    assert_eq!(index.problems[0].severity, Severity::Warning);
    assert_eq!(
        index.problems[0].message,
        "the alias `protein` shadows the builtin or cell-sdk name `protein`"
    );
}

#[test]
fn declared_but_missing_export_is_cell0007_and_builtin_export_is_cell0006() {
    let (_g, _root, index) = index("missing-export");
    assert_eq!(codes(&index), ["CELL0007", "CELL0006"]);
    let missing = &index.problems[0];
    assert_eq!(
        missing.message,
        "`missing` is declared in export! but `badprov_macros` has no `#[proc_macro_attribute]` fn named `missing`"
    );
    let span = missing.span.as_ref().unwrap();
    assert!(span.file.ends_with("providers/badprov/src/lib.rs"));
    assert_eq!((span.line, span.col), (8, 15));
    assert!(
        index.problems[1].message.contains("`test` shadows"),
        "{}",
        index.problems[1].message
    );
    // The alias itself still resolves.
    assert!(index.consumers[0].aliases[0].resolved.is_some());
}

#[test]
fn version_skew_within_the_graph_is_cell0008() {
    let (_g, root, index) = index("skew");
    assert_eq!(codes(&index), ["CELL0008"]);
    let p = &index.problems[0];
    assert_eq!(p.severity, Severity::Warning);
    assert_eq!(
        p.message,
        "`kvstore` resolves to 0.3.1 here, but 0.4.0 is also in this workspace's dependency graph"
    );
    assert_eq!(p.span.as_ref().unwrap().file, root.join("old/src/lib.rs"));
}

#[test]
fn dependency_without_export_declaration_is_cell0009() {
    let (_g, _root, index) = index("not-provider");
    assert_eq!(codes(&index), ["CELL0009"]);
    assert_eq!(
        index.problems[0].message,
        "`plain` is a dependency of this crate but not a provider cell: it has no \
         `cell_sdk::export!` declaration, so there is nothing to put under `P`"
    );
}

#[test]
fn broken_manifest_falls_back_and_says_nothing_false() {
    let (guard, root) = fixture("unknown-cell");
    // A dependency that does not exist: resolution fails, `--no-deps` still lists the member.
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "[dependencies]",
            "[dependencies]\nno-such-crate-in-any-cache = \"1\"",
        ),
    )
    .unwrap();
    let index = Index::build(&options(&root, &guard)).unwrap();
    assert!(index.status.is_degraded());
    assert_eq!(index.packages.len(), 1);
    assert_eq!(index.consumers[0].aliases[0].cell, "kvstor");
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
}

#[test]
fn a_degraded_index_is_never_saved_nor_served_as_fresh() {
    let (guard, root) = fixture("unknown-cell");
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "[dependencies]",
            "[dependencies]\nno-such-crate-in-any-cache = \"1\"",
        ),
    )
    .unwrap();
    let opts = options(&root, &guard);
    let index = cell_macro_index::load_or_build(&opts).unwrap();
    let reason = index.status.reason().unwrap();
    assert!(reason.contains("no-such-crate-in-any-cache"), "{reason}");
    let path = cell_macro_index::snapshot::snapshot_path(&index.target_dir, &index.manifest_path);
    assert!(!path.exists(), "saved at {}", path.display());
    let refused = cell_macro_index::snapshot::save(&index).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    assert!(cell_macro_index::snapshot::load_fresh(&index.target_dir, &manifest).is_none());
    // Fixed: the next call resolves afresh and finds the problem the degraded one could not.
    std::fs::write(&manifest, text).unwrap();
    let index = cell_macro_index::load_or_build(&opts).unwrap();
    assert!(!index.status.is_degraded());
    assert_eq!(codes(&index), ["CELL0001"]);
}

#[test]
fn an_unfinished_attribute_does_not_hide_a_consumer_file() {
    let (guard, root) = fixture("typos");
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    // proc-macro2 cannot lex this file; the alias and its resolution must survive it.
    std::fs::write(
        &lib,
        text.replace("#[DB::persit]", "#[DB::\n\n#[DB::persit]"),
    )
    .unwrap();
    let index = Index::build(&options(&root, &guard)).unwrap();
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let alias = &index.consumers[0].aliases[0];
    assert_eq!((alias.name.as_str(), alias.span.line), ("DB", 2));
    assert_eq!(alias.resolved.as_ref().unwrap().package, "kvstore");
}

#[test]
fn a_provider_edit_is_applied_incrementally() {
    let (guard, root) = fixture("good");
    let opts = options(&root, &guard);
    let mut index = Index::build(&opts).unwrap();
    let macros = guard.path().join("providers/kvstore-macros/src/lib.rs");
    let text = std::fs::read_to_string(&macros).unwrap();
    std::fs::write(
        &macros,
        text.replace("/// Stores this struct", "/// Keeps this struct"),
    )
    .unwrap();
    assert!(
        index
            .apply_changes(&[macros.canonicalize().unwrap()], &opts)
            .unwrap()
    );
    let docs = &index
        .providers
        .iter()
        .find(|p| p.cell == "kvstore")
        .unwrap()
        .export("persist")
        .unwrap()
        .docs;
    assert!(docs.starts_with("Keeps this struct"), "{docs}");
    // A consumer edit that introduces a typo shows up as a problem.
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.replace("\"checks\"", "\"chekcs\"")).unwrap();
    index.apply_changes(&[lib], &opts).unwrap();
    assert_eq!(codes(&index), ["CELL0001"]);
}

/// The snapshot is a binary file read on every warm start: damaged copies of a real one
/// (truncated anywhere, bytes flipped anywhere) are treated as absent or decode to some index,
/// and never panic.
#[test]
fn a_damaged_snapshot_is_never_a_panic() {
    let (guard, root) = fixture("good");
    let opts = options(&root, &guard);
    let cold = cell_macro_index::load_or_build(&opts).unwrap();
    let target = opts.snapshot_target_dir();
    let path = cell_macro_index::snapshot::snapshot_path(&target, &cold.manifest_path);
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() > 64, "{} bytes", good.len());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut truncations_refused, mut flips_refused) = (0, 0);
    for round in 0..300 {
        let mut bytes = good.clone();
        let truncated = round % 2 == 0;
        if truncated {
            bytes.truncate((next() % good.len() as u64) as usize);
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path).is_none() {
            if truncated {
                truncations_refused += 1;
            } else {
                flips_refused += 1;
            }
        }
    }
    // Every truncation is refused (bincode wants the whole index and no trailing bytes). A
    // flip inside a string or a number may still decode to some index; most are refused.
    assert_eq!(truncations_refused, 150);
    assert!(flips_refused > 0, "no flipped snapshot was refused");
    std::fs::write(&path, &good).unwrap();
    assert_eq!(
        cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path),
        Some(cold)
    );
}

#[test]
fn snapshot_round_trips_and_goes_stale_on_edit() {
    let (guard, root) = fixture("good");
    let opts = options(&root, &guard);
    let cold = cell_macro_index::load_or_build(&opts).unwrap();
    let target = opts.snapshot_target_dir();
    let warm = cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path).unwrap();
    assert_eq!(warm, cold);
    // Garbage in place of the snapshot is treated as absent.
    let path = cell_macro_index::snapshot::snapshot_path(&target, &cold.manifest_path);
    std::fs::write(&path, b"{not a snapshot").unwrap();
    assert!(cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path).is_none());
    cell_macro_index::snapshot::save(&cold).unwrap();
    // A new source file in a member invalidates it (its directory changed).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(root.join("src/extra.rs"), "// new\n").unwrap();
    assert!(cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path).is_none());
}

/// An edit made while indexing, after the build read the file (and a file created then): the
/// index's stamps (taken before each read) differ from the files, so `changed_inputs` names
/// them, `apply_changes` catches up, and the snapshot saved from that build is stale (not
/// loaded as fresh).
#[test]
fn an_edit_made_while_indexing_is_not_lost() {
    let (guard, root) = fixture("good");
    let mut opts = options(&root, &guard);
    let consumer = root.join("src/lib.rs");
    let created = root.join("src/extra.rs");
    let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let record = last.clone();
    // Called before the last package (a provider: the consumer `good-app` sorts first) is read:
    // the consumer has been read already.
    opts.progress = Some(std::sync::Arc::new(
        move |p: &cell_macro_index::Progress| {
            if p.done != p.total {
                return;
            }
            *record.lock().unwrap() = p.package.clone();
            let mut text = std::fs::read_to_string(&consumer).unwrap();
            text.push_str("\n// Edited while indexing.\n");
            std::thread::sleep(Duration::from_millis(20));
            std::fs::write(&consumer, text).unwrap();
            std::fs::write(&created, "cell_sdk::cell_remote!(Extra = \"checks\");\n").unwrap();
        },
    ));
    let mut index = cell_macro_index::load_or_build(&opts).unwrap();
    assert_ne!(*last.lock().unwrap(), "good-app");
    let changed = index.changed_inputs();
    assert_eq!(changed, [root.join("src"), root.join("src/lib.rs")]);
    let target = opts.snapshot_target_dir();
    assert!(cell_macro_index::snapshot::load_fresh(&target, &opts.manifest_path).is_none());
    // Applied, the created file's alias is in the index and nothing is left to catch up.
    assert!(index.apply_changes(&changed, &opts).unwrap());
    let aliases: Vec<&str> = index.consumers[0]
        .aliases
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert!(aliases.contains(&"Extra"), "{aliases:?}");
    assert!(index.changed_inputs().is_empty());
}

#[test]
fn watcher_sees_an_atomic_save_of_a_provider() {
    let (guard, root) = fixture("good");
    let opts = options(&root, &guard);
    let index = Index::build(&opts).unwrap();
    let (tx, rx) = mpsc::channel();
    let watcher = cell_macro_index::watch::watch(&index, Duration::from_millis(50), move |paths| {
        let _ = tx.send(paths);
    })
    .unwrap();
    assert!(
        watcher
            .watched
            .iter()
            .any(|d| d.ends_with("kvstore-macros/src")),
        "{:?}",
        watcher.watched
    );
    // Save like an editor: write a temp file, rename it over the original.
    let macros = guard
        .path()
        .join("providers/kvstore-macros/src/lib.rs")
        .canonicalize()
        .unwrap();
    let text = std::fs::read_to_string(&macros).unwrap();
    let tmp = macros.with_extension("rs.tmp");
    std::fs::write(
        &tmp,
        text.replace("/// Builds a query.", "/// Runs a query."),
    )
    .unwrap();
    std::fs::rename(&tmp, &macros).unwrap();
    let mut index = index;
    let mut seen = false;
    while let Ok(paths) = rx.recv_timeout(Duration::from_secs(20)) {
        index.apply_changes(&paths, &opts).unwrap();
        let kv = index
            .providers
            .iter()
            .find(|p| p.cell == "kvstore")
            .unwrap();
        if kv.export("query").unwrap().docs == "Runs a query." {
            seen = true;
            break;
        }
    }
    assert!(seen, "the watcher never delivered the provider edit");
}

#[test]
fn polling_fallback_sees_a_consumer_edit() {
    let (guard, root) = fixture("good");
    let opts = options(&root, &guard);
    let mut index = Index::build(&opts).unwrap();
    let (tx, rx) = mpsc::channel();
    let watcher =
        cell_macro_index::watch::watch_polling(&index, Duration::from_millis(50), move |paths| {
            let _ = tx.send(paths);
        })
        .unwrap();
    assert!(watcher.polling);
    // Let the poller take its first snapshot of the tree before the edit.
    std::thread::sleep(Duration::from_millis(1200));
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let tmp = lib.with_extension("rs.tmp");
    std::fs::write(&tmp, text.replace("\"checks\"", "\"chekcs\"")).unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    let mut seen = false;
    while let Ok(paths) = rx.recv_timeout(Duration::from_secs(20)) {
        index.apply_changes(&paths, &opts).unwrap();
        if codes(&index) == ["CELL0001"] {
            seen = true;
            break;
        }
    }
    assert!(seen, "the polling watcher never delivered the edit");
}

#[test]
fn indexes_this_repository_full_graph() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let guard = tempfile::tempdir().unwrap();
    let mut opts = IndexOptions::new(repo.join("Cargo.toml"));
    opts.target_dir = Some(guard.path().to_path_buf());
    let index = Index::build(&opts).unwrap();
    assert_eq!(index.status, cell_macro_index::IndexStatus::Complete);
    // The same cargo command the index ended up using (host-only when other platforms'
    // crates are not in the offline cache).
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "metadata",
        "--offline",
        "--format-version",
        "1",
        "--manifest-path",
    ])
    .arg(repo.join("Cargo.toml"));
    if let Some(host) = &index.platform {
        cmd.args(["--filter-platform", host]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = meta["packages"].as_array().unwrap().len();
    assert_eq!(index.packages.len(), count);
    assert!(
        index
            .problems
            .iter()
            .all(|p| p.code != ProblemCode::MalformedExport),
        "{:#?}",
        index.problems
    );
    // The providers of this repository's graph, from an independent oracle: every package
    // that depends on cell-sdk and whose library root invokes `export! {` outside a comment
    // (plain text, not the index's syn parser). New providers in the repository extend it by
    // themselves; the ones the tests rely on must always be among them.
    let mut expected: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["name"] == "cell-sdk")
        })
        .filter(|p| {
            let lib = p["targets"].as_array().unwrap().iter().find(|t| {
                t["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "lib" || k == "rlib")
            });
            lib.and_then(|t| std::fs::read_to_string(t["src_path"].as_str()?).ok())
                .is_some_and(|text| {
                    text.lines().any(|l| {
                        let l = l.trim_start();
                        !l.starts_with("//") && l.contains("export! {")
                    })
                })
        })
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    expected.sort_unstable();
    let mut providers: Vec<&str> = index.providers.iter().map(|p| p.cell.as_str()).collect();
    providers.sort_unstable();
    assert_eq!(providers, expected);
    for needed in ["celldb", "greet", "shout", "validate"] {
        assert!(
            providers.contains(&needed),
            "{needed} missing: {providers:?}"
        );
    }
    for p in &index.providers {
        assert!(
            p.exports.iter().all(|e| e.definition.is_some()),
            "{}: {:#?}",
            p.cell,
            p.exports
        );
    }
}
