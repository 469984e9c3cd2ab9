//! Providers from the two non-path sources, with real cargo and no network
//! (`tests/fixtures/sources/`):
//!
//! - **git**: a provider committed into a local git repository and used through
//!   `git = "file:///…"`. Cargo refuses to fetch any git source with `--offline` (even a
//!   `file://` one: "can't checkout from …: you are in the offline mode"), so the test fetches it
//!   once without `--offline` from a throwaway workspace whose only other dependency (cell-sdk,
//!   by name) is patched to a stub and whose crates.io is replaced by an empty directory source:
//!   the fetch reads the local repository and nothing else. From then on everything is
//!   `--offline`: the consumer builds and runs (`cell_remote!` reaches the git provider's macro
//!   and API), and the index finds the provider in cargo's git checkout. Both steps use a
//!   `CARGO_HOME` of the test's own (its `registry` a link to the real one, for the offline build's
//!   packages), so the user's `~/.cargo/git` is never written; the fetch passes
//!   `--config net.offline=false`, so it also works where `CARGO_NET_OFFLINE`/`net.offline` is
//!   set; the fixture's git commands ignore the caller's `GIT_DIR` and git configuration.
//! - **registry + cache**: two versions of a provider packed into a cargo local registry that
//!   replaces crates.io in a temporary `CARGO_HOME`; a consumer pinned to the older one. Once
//!   another project has used the newer version (so cargo unpacked it into the cache), the index
//!   reports version skew (CELL0008) against the local cargo cache, with a fix that raises the
//!   requirement; applied, the skew is gone.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a fixture that cannot be set up fails the test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cell_macro_index::{Index, IndexOptions, ProblemCode, Severity, SourceKind};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("CARGO_TERM_COLOR", "never");
    cmd
}

/// Runs `cmd` and returns its stdout; fails the test with its stderr.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sources() -> PathBuf {
    cell_tests::fixtures_dir().join("sources")
}

/// A manifest path value (TOML basic string).
fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// Commits the git provider into `<fixture target dir>/git-provider` with a fixed author and
/// date, so every run makes the same commit at the same URL (cargo's git database keeps one
/// entry, not one per run). Returns the `file://` URL.
fn git_provider_repository() -> String {
    let repo = cell_tests::fixture_target_dir().join("git-provider");
    let _ = std::fs::remove_dir_all(&repo);
    copy_dir(&sources().join("git-provider"), &repo);
    let git = |args: &[&str]| {
        // Isolated from the caller's git: a `GIT_DIR` inherited from a hook or a worktree would
        // commit into that repository, and user or system configuration (hooks, signing,
        // templates) must not change the commit.
        run(Command::new("git")
            .env_remove("GIT_DIR")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_WORK_TREE")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "cell")
            .env("GIT_AUTHOR_EMAIL", "cell@example.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_NAME", "cell")
            .env("GIT_COMMITTER_EMAIL", "cell@example.invalid")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"))
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "gitgreet 0.2.0"]);
    format!("file://{}", repo.canonicalize().unwrap().display())
}

/// The `CARGO_HOME` cargo uses here (`$CARGO_HOME`, else `~/.cargo`).
fn real_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap()
}

/// A `CARGO_HOME` of the test's own (under the fixture target dir, so its path, and thus the
/// fingerprints of what builds from it, stay the same from run to run) whose `registry` is the
/// real one (the offline build's packages): the git checkout lands there, not in the user's
/// `~/.cargo/git`. Its `git` directory is emptied, so every run fetches afresh.
fn cargo_home_with_registry() -> PathBuf {
    let home = cell_tests::fixture_target_dir().join("git-source-cargo-home");
    let _ = std::fs::remove_dir_all(home.join("git"));
    std::fs::create_dir_all(&home).unwrap();
    if std::fs::symlink_metadata(home.join("registry")).is_err() {
        std::os::unix::fs::symlink(real_cargo_home().join("registry"), home.join("registry"))
            .unwrap();
    }
    home
}

#[test]
fn a_provider_from_a_git_repository_builds_offline_and_is_indexed() {
    let url = git_provider_repository();
    let tmp = tempfile::tempdir().unwrap();
    let cell_sdk = cell_tests::repo_root().join("cell-sdk");
    let home = cargo_home_with_registry();

    // 1. Fetch once, reading only the local repository (see the module docs).
    let fetch = tmp.path().join("fetch");
    std::fs::create_dir_all(fetch.join("src")).unwrap();
    std::fs::create_dir_all(fetch.join("stub/src")).unwrap();
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    std::fs::write(fetch.join("src/lib.rs"), "").unwrap();
    std::fs::write(fetch.join("stub/src/lib.rs"), "").unwrap();
    std::fs::write(
        fetch.join("stub/Cargo.toml"),
        "[package]\nname = \"cell-sdk\"\nversion = \"0.2.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-only\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
             [workspace]\n\n[dependencies]\ngitgreet = {{ git = \"{url}\" }}\n\n\
             [patch.crates-io]\ncell-sdk = {{ path = \"stub\" }}\n"
        ),
    )
    .unwrap();
    // `net.offline=false` on the command line wins over `CARGO_NET_OFFLINE` and
    // `net.offline` in a config file (set here as CI sets it, to prove it): this one step
    // reads the local repository.
    run(cargo()
        .env("CARGO_HOME", &home)
        .env("CARGO_NET_OFFLINE", "true")
        .args([
            "generate-lockfile",
            "--config",
            "net.offline=false",
            "--config",
        ])
        .arg("source.crates-io.replace-with=\"nothing\"")
        .arg("--config")
        .arg(format!(
            "source.nothing.directory=\"{}\"",
            toml_path(&tmp.path().join("empty"))
        ))
        .current_dir(&fetch));

    // 2. The consumer: offline from here on.
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"git-consumer\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             cell-sdk = {{ path = \"{sdk}\" }}\ngitgreet = {{ git = \"{url}\" }}\n\n\
             # The git provider names cell-sdk by version: this repository's.\n\
             [patch.crates-io]\ncell-sdk = {{ path = \"{sdk}\" }}\n",
            sdk = toml_path(&cell_sdk)
        ),
    )
    .unwrap();
    std::fs::write(
        app.join("src/main.rs"),
        "//! A consumer of a provider from a git repository.\n\
         cell_sdk::cell_remote!(W = \"gitgreet\");\n\n\
         #[W::wave]\nstruct Hello;\n\n\
         fn main() {\n    println!(\"{} ({})\", Hello::wave(), W::ORIGIN);\n}\n",
    )
    .unwrap();
    // Registry packages as this repository locks them (all in the offline cache).
    std::fs::copy(
        cell_tests::fixtures_dir().join("workspace/Cargo.lock"),
        app.join("Cargo.lock"),
    )
    .unwrap();
    let target = cell_tests::fixture_target_dir();
    run(cargo()
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_HOME", &home)
        .current_dir(&app)
        .env("CARGO_TARGET_DIR", &target));
    let out = run(&mut Command::new(target.join("debug/git-consumer")));
    assert_eq!(out.trim(), "Hello waves from git (git)");

    // 3. The index finds the provider in cargo's git checkout, with its export's definition.
    let mut opts = IndexOptions::new(app.join("Cargo.toml"));
    opts.cargo_home = Some(tmp.path().join("no-cargo-home"));
    opts.cargo_env = vec![("CARGO_HOME".into(), home.clone().into())];
    opts.target_dir = Some(tmp.path().join("target"));
    let index = Index::build(&opts).unwrap();
    assert_eq!(index.status, cell_macro_index::IndexStatus::Complete);
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let provider = index
        .providers
        .iter()
        .find(|p| p.cell == "gitgreet")
        .unwrap_or_else(|| panic!("no gitgreet in {:#?}", index.providers));
    assert_eq!(provider.source, SourceKind::Git);
    assert_eq!(provider.version, "0.2.0");
    // In the temporary CARGO_HOME's git checkouts (the user's ~/.cargo/git is not touched).
    assert!(
        provider
            .manifest_path
            .starts_with(home.join("git/checkouts")),
        "{}",
        provider.manifest_path.display()
    );
    let wave = provider.export("wave").unwrap();
    assert_eq!(
        wave.docs,
        "Adds `pub fn wave() -> String` to the struct it is placed on."
    );
    let def = wave.definition.as_ref().unwrap();
    assert!(
        def.file.ends_with("macros/src/lib.rs"),
        "{}",
        def.file.display()
    );
    assert_eq!(provider.api, ["ORIGIN"]);
    let alias = &index.consumers[0].aliases[0];
    let resolved = alias.resolved.as_ref().unwrap();
    assert_eq!(
        (alias.name.as_str(), resolved.extern_crate.as_str()),
        ("W", "gitgreet")
    );
}

/// Packs `registry/<name>-<version>/` into `<reg>/<name>-<version>.crate` and adds its line
/// to the local registry's index.
fn publish(reg: &Path, name: &str, version: &str, deps: &[(&str, &str)]) {
    let dir_name = format!("{name}-{version}");
    let krate = reg.join(format!("{dir_name}.crate"));
    run(Command::new("tar")
        .arg("czf")
        .arg(&krate)
        .arg("-C")
        .arg(sources().join("registry"))
        .arg(&dir_name));
    let sum = run(Command::new("sha256sum").arg(&krate));
    let cksum = sum.split_whitespace().next().unwrap();
    let deps: Vec<serde_json::Value> = deps
        .iter()
        .map(|(dep, req)| {
            serde_json::json!({
                "name": dep, "req": req, "features": [], "optional": false,
                "default_features": true, "target": null, "kind": "normal"
            })
        })
        .collect();
    let line = serde_json::json!({
        "name": name, "vers": version, "deps": deps, "cksum": cksum,
        "features": {}, "yanked": false
    });
    // Index layout for names of four or more characters: `ab/cd/abcd…`.
    let index = reg.join("index").join(&name[..2]).join(&name[2..4]);
    std::fs::create_dir_all(&index).unwrap();
    let file = index.join(name);
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    text.push_str(&format!("{line}\n"));
    std::fs::write(file, text).unwrap();
}

fn package(dir: &Path, name: &str, requirement: &str, lib: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [workspace]\n\n[dependencies]\nkvreg = \"{requirement}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
}

#[test]
fn version_skew_against_the_local_cargo_cache_is_cell0008_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    for v in ["0.3.0", "0.4.0"] {
        publish(&reg, "kvreg-macros", v, &[]);
        publish(&reg, "kvreg", v, &[("kvreg-macros", &format!("={v}"))]);
    }
    let home = tmp.path().join("cargo-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"fixture\"\n\n\
             [source.fixture]\nlocal-registry = \"{}\"\n",
            toml_path(&reg)
        ),
    )
    .unwrap();
    let consumer = tmp.path().join("consumer");
    package(
        &consumer,
        "pinned",
        "=0.3.0",
        "//! Pinned to the older kvreg.\ncell_sdk::cell_remote!(KV = \"kvreg\");\n",
    );
    let mut opts = IndexOptions::new(consumer.join("Cargo.toml"));
    opts.cargo_home = Some(home.clone());
    opts.cargo_env = vec![("CARGO_HOME".into(), home.clone().into())];
    opts.target_dir = Some(tmp.path().join("target"));

    // Only 0.3.0 is in the cache yet (cargo unpacked it for this consumer): nothing to say.
    let index = Index::build(&opts).unwrap();
    assert_eq!(index.status, cell_macro_index::IndexStatus::Complete);
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let kv = index.providers.iter().find(|p| p.cell == "kvreg").unwrap();
    assert_eq!(
        (kv.version.as_str(), kv.source),
        ("0.3.0", SourceKind::Registry)
    );
    assert!(kv.export("persist").unwrap().definition.is_some());

    // Another project uses 0.4: cargo unpacks it into the same cache.
    let other = tmp.path().join("other");
    package(&other, "other", "0.4", "");
    run(cargo()
        .args(["metadata", "--offline", "--format-version", "1"])
        .current_dir(&other)
        .env("CARGO_HOME", &home));

    let index = Index::build(&opts).unwrap();
    let codes: Vec<ProblemCode> = index.problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, [ProblemCode::VersionSkew], "{:#?}", index.problems);
    let p = &index.problems[0];
    assert_eq!(p.severity, Severity::Warning);
    assert_eq!(
        p.message,
        "`kvreg` resolves to 0.3.0, but 0.4.0 is in the local cargo cache"
    );
    let span = p.span.as_ref().unwrap();
    assert_eq!(
        span.file,
        consumer.join("src/lib.rs").canonicalize().unwrap()
    );
    assert_eq!((span.line, span.col, span.end_col), (2, 29, 36));
    assert_eq!(
        p.notes,
        ["help: `cargo update -p kvreg` or raise the requirement in Cargo.toml"]
    );
    // The fix raises the requirement in the consumer's manifest; applied, the skew is gone.
    let fix = p.fix.as_ref().unwrap();
    assert_eq!(fix.title, "require `kvreg` 0.4.0 in Cargo.toml");
    let manifest = std::fs::read_to_string(&fix.span.file).unwrap();
    assert_eq!(&manifest[fix.span.start..fix.span.end], "\"=0.3.0\"");
    assert_eq!((fix.span.line, fix.span.col), (9, 9));
    let mut edited = manifest.clone();
    edited.replace_range(fix.span.start..fix.span.end, &fix.replacement);
    std::fs::write(&fix.span.file, edited).unwrap();
    let index = Index::build(&opts).unwrap();
    assert!(index.problems.is_empty(), "{:#?}", index.problems);
    let resolved = index.consumers[0].aliases[0].resolved.as_ref().unwrap();
    assert_eq!(resolved.version, "0.4.0");
}
