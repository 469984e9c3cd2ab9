//! Providers used through `cell_remote!` from a consumer workspace *outside* this one, built
//! with real cargo (`tests/fixtures/workspace`): two versions of one provider, two providers
//! exporting the same macro name, renamed providers, a renamed cell-sdk, celldb renamed `store`,
//! inherited dependencies. One cargo build serves every test here; the resolver and the export parser are
//! also checked against the same fixture files.

use std::path::PathBuf;
use std::sync::OnceLock;

use cell_resolver::{DepSource, ProblemCode};

/// The fixture workspace's binaries directory, built once for all tests of this module.
fn fixture_bins() -> &'static PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(|| cell_tests::build_fixture_workspace("workspace")) {
        Ok(dir) => dir,
        Err(stderr) => panic!("the fixture workspace does not build:\n{stderr}"),
    }
}

fn app_output() -> String {
    cell_tests::run(&fixture_bins().join("fixture-app"))
        .unwrap_or_else(|e| panic!("fixture-app failed:\n{e}"))
}

fn line<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{output}"))
}

#[test]
fn two_versions_of_one_provider_under_two_aliases() {
    let out = app_output();
    assert_eq!(line(&out, "new: "), "hello Guest, from greet 0.4");
    assert_eq!(line(&out, "old: "), "hello Legacy, from greet 0.3");
    assert_eq!(line(&out, "versions: "), "0.4.2 0.3.1");
}

#[test]
fn two_providers_with_the_same_macro_name_side_by_side() {
    let out = app_output();
    // `New::hello` and `Loud::hello` on one struct: each alias reached its own provider.
    assert_eq!(line(&out, "new: "), "hello Guest, from greet 0.4");
    assert_eq!(line(&out, "loud: "), "HELLO GUEST, FROM SHOUT");
}

#[test]
fn renamed_provider_through_inherited_dependencies() {
    let out = app_output();
    assert_eq!(line(&out, "form ok: "), "true");
    assert_eq!(
        line(&out, "form errors: "),
        "email: must be an email address (got \"nope\"); stars: must be in 1..=10 (got 11)"
    );
    assert_eq!(line(&out, "round trip: "), "a@b.co");
}

#[test]
fn protein_and_provider_macros_work_with_a_renamed_cell_sdk() {
    let out = cell_tests::run(&fixture_bins().join("fixture-renamed-sdk")).unwrap();
    assert_eq!(line(&out, "point: "), "3 4");
    assert_eq!(line(&out, "greet: "), "hello Point, from greet 0.4");
    assert_eq!(line(&out, "fingerprint: "), "struct { x: u32, y: u32 }");
}

#[test]
fn celldb_persist_works_through_a_renamed_dependency() {
    // `store = { package = "celldb" }`: no crate named `celldb` exists in that binary, so this
    // builds only because `#[DB::persist]` names its runtime through cell-resolver.
    let out = cell_tests::run(&fixture_bins().join("fixture-renamed-db"))
        .unwrap_or_else(|e| panic!("fixture-renamed-db failed:\n{e}"));
    assert_eq!(line(&out, "get: "), "second");
    assert_eq!(line(&out, "by slug: "), "3");
    assert_eq!(line(&out, "by tag: "), "2");
    assert_eq!(line(&out, "deleted: "), "true");
    assert_eq!(line(&out, "count: "), "2");
    assert_eq!(line(&out, "scan: "), "2");
}

#[test]
fn service_and_handler_explain_a_missing_cell_sdk_dependency() {
    // `tests/fixtures/no-sdk` names cell-sdk-macros directly, without cell-sdk: each macro
    // (`#[service]` on a struct and on a trait, `#[handler]`) must say what to add, instead of
    // leaving rustc's bare "cannot find `cell_sdk`".
    let stderr = match cell_tests::build_fixture_workspace("no-sdk") {
        Ok(_) => panic!("a crate without cell-sdk built"),
        Err(stderr) => stderr,
    };
    let reported = stderr
        .matches("CELL0001: unknown cell `cell-sdk`: no dependency of this crate is the package `cell-sdk`")
        .count();
    assert_eq!(reported, 3, "{stderr}");
    assert_eq!(
        stderr
            .matches("note: Cell's macros expand to paths into `cell-sdk`")
            .count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("src/lib.rs:4:1"), "{stderr}");
}

fn fixture(path: &str) -> PathBuf {
    cell_tests::fixtures_dir().join(path)
}

#[test]
fn resolver_reads_the_fixture_manifests_like_cargo() {
    let app = fixture("workspace/app");
    let old = cell_resolver::resolve(&app, "greet", Some("0.3")).unwrap();
    assert_eq!(old.extern_crate, "greet_v3");
    assert_eq!(
        old.source,
        DepSource::Path(fixture("workspace").join("../providers/greet-0.3"))
    );
    assert_eq!(
        cell_resolver::resolve(&app, "greet", Some("0.4.2"))
            .unwrap()
            .extern_crate,
        "greet"
    );
    assert_eq!(
        cell_resolver::resolve(&app, "validate", None)
            .unwrap()
            .extern_crate,
        "v"
    );
    let ambiguous = cell_resolver::resolve(&app, "greet", None).unwrap_err();
    assert_eq!(ambiguous.code, ProblemCode::AmbiguousVersion);
    assert_eq!(ambiguous.candidates, ["greet@0.3", "greet@0.4"]);

    let renamed = fixture("workspace/renamed-sdk");
    assert_eq!(
        cell_resolver::resolve(&renamed, "cell-sdk", None)
            .unwrap()
            .extern_crate,
        "sdk"
    );
}

#[test]
fn a_provider_resolves_itself_to_its_lib_name() {
    let greet = fixture("providers/greet-0.4");
    let me = cell_resolver::resolve(&greet, "greet", Some("0.4")).unwrap();
    assert_eq!(me.extern_crate, "greet");
    assert_eq!(me.source, DepSource::SelfPackage);
}

#[test]
fn fixture_export_declarations_parse_without_compiling() {
    for (provider, cell) in [
        ("providers/greet-0.3", "greet"),
        ("providers/greet-0.4", "greet"),
        ("providers/shout", "shout"),
    ] {
        let source = std::fs::read_to_string(fixture(provider).join("src/lib.rs")).unwrap();
        let file = cell_export::parse_file(&source);
        assert_eq!(file.decls.len(), 1, "{provider}");
        let parsed = &file.decls[0];
        assert!(parsed.errors.is_empty(), "{provider}: {:?}", parsed.errors);
        assert_eq!(parsed.decl.cell.as_ref().unwrap().value, cell);
        let hello = parsed.decl.macro_named("hello").unwrap();
        assert_eq!(hello.kind, cell_export::MacroKind::Attribute);
        let api: Vec<&str> = parsed.decl.api.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(api, ["greeting", "VERSION"], "{provider}");
    }
}

/// The fixture workspaces build `--offline`, so every registry package their lock files name
/// must be one the Cell workspace itself locks (and therefore downloads). When this fails after
/// a dependency update: `cp Cargo.lock tests/fixtures/<name>/ && (cd tests/fixtures/<name>
/// && cargo metadata --offline --format-version 1 >/dev/null)`, then commit the result.
#[allow(
    clippy::unwrap_used,
    reason = "a test helper: an unreadable lock file fails the test"
)]
fn assert_lock_uses_only_packages_the_workspace_locks(name: &str) {
    fn registry_packages(path: PathBuf) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&path).unwrap();
        let lock: toml::Table = text.parse().unwrap();
        lock["package"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let p = p.as_table()?;
                p.get("source")?;
                Some((
                    p["name"].as_str()?.to_owned(),
                    p["version"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }
    let ours = registry_packages(cell_tests::repo_root().join("Cargo.lock"));
    let missing: Vec<(String, String)> = registry_packages(fixture(name).join("Cargo.lock"))
        .into_iter()
        .filter(|p| !ours.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "refresh tests/fixtures/{name}/Cargo.lock: {missing:?}"
    );
}

#[test]
fn the_fixture_lock_file_only_uses_packages_the_workspace_locks() {
    assert_lock_uses_only_packages_the_workspace_locks("workspace");
}

#[test]
fn the_agreement_fixture_lock_file_only_uses_packages_the_workspace_locks() {
    assert_lock_uses_only_packages_the_workspace_locks("agree");
}
