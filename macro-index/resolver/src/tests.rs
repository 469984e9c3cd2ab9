//! Resolver tests over real manifests written to temp directories.

use std::path::Path;

use super::*;

/// Writes `files` (relative path → contents) under a fresh temp dir.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn package(deps: &str) -> String {
    format!("[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n{deps}")
}

#[test]
fn plain_dependency_resolves_to_its_name() {
    let dir = tree(&[("Cargo.toml", &package("[dependencies]\ncelldb = \"0.4\"\n"))]);
    let r = resolve(dir.path(), "celldb", None).unwrap();
    assert_eq!(r.extern_crate, "celldb");
    assert_eq!(r.package, "celldb");
    assert_eq!(r.version_req.as_deref(), Some("0.4"));
    assert_eq!(r.source, DepSource::Registry);
}

#[test]
fn dashes_become_underscores_in_the_extern_name() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ncell-postgres = { version = \"1\" }\n"),
    )]);
    let r = resolve(dir.path(), "cell-postgres", None).unwrap();
    assert_eq!(r.extern_crate, "cell_postgres");
}

#[test]
fn renamed_dependency_resolves_to_the_rename() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ndb = { package = \"celldb\", path = \"../celldb\" }\n"),
    )]);
    let r = resolve(dir.path(), "celldb", None).unwrap();
    assert_eq!(r.extern_crate, "db");
    assert_eq!(r.source, DepSource::Path(dir.path().join("../celldb")));
}

#[test]
fn dev_build_and_target_tables_are_read() {
    let dir = tree(&[(
        "Cargo.toml",
        &package(
            "[dev-dependencies]\nv = { package = \"validate\", version = \"0.1\" }\n\
             [build-dependencies]\nb = { package = \"builder\", version = \"1\" }\n\
             [target.'cfg(unix)'.dependencies]\nux = { package = \"unixcell\", version = \"2\" }\n",
        ),
    )]);
    assert_eq!(
        resolve(dir.path(), "validate", None).unwrap().extern_crate,
        "v"
    );
    assert_eq!(
        resolve(dir.path(), "unixcell", None).unwrap().extern_crate,
        "ux"
    );
    let manifest = Manifest::load(dir.path()).unwrap();
    // A build-dependency is visible to the build script only.
    let builder = parse_spec("builder").unwrap();
    assert_eq!(
        resolve_for(&manifest, &builder, true).unwrap().extern_crate,
        "b"
    );
    let err = resolve_for(&manifest, &builder, false).unwrap_err();
    assert_eq!(err.code, ProblemCode::UnknownCell);
    assert!(
        err.help[0].contains("only a [build-dependencies] entry"),
        "{:?}",
        err.help
    );
    let validate = parse_spec("validate").unwrap();
    assert_eq!(
        resolve_for(&manifest, &validate, true).unwrap_err().code,
        ProblemCode::UnknownCell
    );
    let ux = manifest
        .dependencies
        .iter()
        .find(|d| d.package == "unixcell")
        .unwrap();
    assert_eq!(ux.target.as_deref(), Some("cfg(unix)"));
    assert_eq!(ux.kind, DepKind::Normal);
}

#[test]
fn a_build_dependency_on_another_version_does_not_make_code_ambiguous() {
    let dir = tree(&[(
        "Cargo.toml",
        &package(
            "[dependencies]\ncelldb = \"0.4\"\n\
             [build-dependencies]\nold_db = { package = \"celldb\", version = \"0.3\" }\n",
        ),
    )]);
    let manifest = Manifest::load(dir.path()).unwrap();
    let spec = parse_spec("celldb").unwrap();
    let code = resolve_for(&manifest, &spec, false).unwrap();
    assert_eq!(code.extern_crate, "celldb");
    let build = resolve_for(&manifest, &spec, true).unwrap();
    assert_eq!(build.extern_crate, "old_db");
}

#[test]
fn the_same_dependency_in_two_tables_is_not_ambiguous() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ncelldb = \"0.4\"\n[dev-dependencies]\ncelldb = \"0.4\"\n"),
    )]);
    assert_eq!(
        resolve(dir.path(), "celldb", None).unwrap().extern_crate,
        "celldb"
    );
}

#[test]
fn inherited_dependency_takes_package_and_path_from_the_workspace_root() {
    let dir = tree(&[
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"app\"]\n\n[workspace.dependencies]\n\
             db = { package = \"celldb\", path = \"providers/celldb\", version = \"0.4\" }\n",
        ),
        (
            "app/Cargo.toml",
            &package("[dependencies]\ndb.workspace = true\n"),
        ),
    ]);
    let app = dir.path().join("app");
    let r = resolve(&app, "celldb", None).unwrap();
    assert_eq!(r.extern_crate, "db");
    assert_eq!(r.version_req.as_deref(), Some("0.4"));
    assert_eq!(
        r.source,
        DepSource::Path(dir.path().join("providers/celldb"))
    );
    let manifest = Manifest::load(&app).unwrap();
    assert!(manifest.dependencies[0].inherited);
}

#[test]
fn explicit_workspace_key_points_at_the_root() {
    let dir = tree(&[
        (
            "root/Cargo.toml",
            "[workspace]\nmembers = [\"../app\"]\n[workspace.dependencies]\n\
             v = { package = \"validate\", version = \"0.2\" }\n",
        ),
        (
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nworkspace = \"../root\"\n[dependencies]\nv = { workspace = true, features = [\"x\"] }\n",
        ),
    ]);
    let r = resolve(&dir.path().join("app"), "validate", None).unwrap();
    assert_eq!(r.extern_crate, "v");
}

#[test]
fn two_versions_need_a_qualifier() {
    let dir = tree(&[(
        "Cargo.toml",
        &package(
            "[dependencies]\ncelldb_v3 = { package = \"celldb\", version = \"0.3\" }\n\
             celldb = \"0.4\"\n",
        ),
    )]);
    let err = resolve(dir.path(), "celldb", None).unwrap_err();
    assert_eq!(err.code, ProblemCode::AmbiguousVersion);
    assert_eq!(err.candidates, ["celldb@0.3", "celldb@0.4"]);
    let text = err.to_string();
    assert!(
        text.starts_with("CELL0002: this crate depends on 2 versions of `celldb`"),
        "{text}"
    );
    assert!(text.contains("\"celldb@0.3\", \"celldb@0.4\""), "{text}");

    assert_eq!(
        resolve(dir.path(), "celldb", Some("0.4"))
            .unwrap()
            .extern_crate,
        "celldb"
    );
    assert_eq!(
        resolve(dir.path(), "celldb", Some("0.3"))
            .unwrap()
            .extern_crate,
        "celldb_v3"
    );
    let none = resolve(dir.path(), "celldb", Some("0.5")).unwrap_err();
    assert_eq!(none.code, ProblemCode::UnknownCell);
    assert!(none.to_string().contains("no version matching `0.5`"));
}

#[test]
fn a_qualifier_keeps_dependencies_without_a_written_version() {
    let dir = tree(&[(
        "Cargo.toml",
        &package(
            "[dependencies]\nold = { package = \"greet\", version = \"0.3\" }\n\
             greet = { path = \"../greet\" }\n",
        ),
    )]);
    assert_eq!(
        resolve(dir.path(), "greet", Some("0.4.0"))
            .unwrap()
            .extern_crate,
        "greet"
    );
    let alone = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ngreet = { path = \"../g\" }\n"),
    )]);
    assert_eq!(
        resolve(alone.path(), "greet", Some("1.2.3"))
            .unwrap()
            .extern_crate,
        "greet"
    );
}

#[test]
fn a_qualifier_matching_both_is_still_ambiguous() {
    let dir = tree(&[(
        "Cargo.toml",
        &package(
            "[dependencies]\na = { package = \"celldb\", version = \"0.4.1\" }\n\
             b = { package = \"celldb\", version = \"=0.4.2\" }\n",
        ),
    )]);
    let err = resolve(dir.path(), "celldb", Some("0.4")).unwrap_err();
    assert_eq!(err.code, ProblemCode::AmbiguousVersion);
    assert_eq!(
        resolve(dir.path(), "celldb", Some("0.4.2"))
            .unwrap()
            .extern_crate,
        "b"
    );
}

#[test]
fn unknown_cell_suggests_close_names_without_listing_every_dependency() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ncelldb = \"0.4\"\nserde = \"1\"\n"),
    )]);
    let err = resolve(dir.path(), "celdb", None).unwrap_err();
    assert_eq!(err.code, ProblemCode::UnknownCell);
    assert_eq!(err.candidates, ["celldb"]);
    let text = err.to_string();
    assert!(text.contains("did you mean \"celldb\"?"), "{text}");
    assert!(!text.contains("direct dependencies"), "{text}");
}

#[test]
fn unknown_cell_without_a_suggestion_lists_direct_dependencies() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ncelldb = \"0.4\"\nserde = \"1\"\n"),
    )]);
    let err = resolve(dir.path(), "postgres", None).unwrap_err();
    assert_eq!(err.code, ProblemCode::UnknownCell);
    assert!(err.candidates.is_empty());
    let text = err.to_string();
    assert!(
        text.contains("direct dependencies: `celldb`, `serde`; add the provider"),
        "{text}"
    );
}

#[test]
fn a_long_dependency_list_is_cut_with_a_count() {
    let deps: String = (0..15).map(|i| format!("dep{i:02} = \"1\"\n")).collect();
    let dir = tree(&[("Cargo.toml", &package(&format!("[dependencies]\n{deps}")))]);
    let err = resolve(dir.path(), "postgres", None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`dep11` and 3 more;"), "{text}");
    assert!(!text.contains("`dep12`"), "{text}");
}

#[test]
fn writing_the_rename_instead_of_the_package_is_explained() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\ndb = { package = \"celldb\", version = \"0.4\" }\n"),
    )]);
    let err = resolve(dir.path(), "db", None).unwrap_err();
    assert_eq!(err.code, ProblemCode::UnknownCell);
    assert_eq!(err.candidates, ["celldb"]);
    assert!(err.to_string().contains("write \"celldb\""));
}

#[test]
fn the_package_itself_resolves_to_its_lib_name() {
    let dir = tree(&[(
        "Cargo.toml",
        "[package]\nname = \"cell-db\"\nversion = \"0.4.0\"\n[lib]\nname = \"celldb\"\n",
    )]);
    let r = resolve(dir.path(), "cell-db", None).unwrap();
    assert_eq!(r.extern_crate, "celldb");
    assert_eq!(r.source, DepSource::SelfPackage);
    assert!(resolve(dir.path(), "cell-db", Some("0.4")).is_ok());
}

#[test]
fn malformed_specs_have_their_own_code() {
    let dir = tree(&[("Cargo.toml", &package(""))]);
    for (cell, version) in [("", None), ("cell db", None), ("celldb", Some("latest"))] {
        let err = resolve(dir.path(), cell, version).unwrap_err();
        assert_eq!(
            err.code,
            ProblemCode::MalformedRemote,
            "{cell:?} {version:?}"
        );
    }
    assert_eq!(
        parse_spec("a@").unwrap_err().code,
        ProblemCode::MalformedRemote
    );
}

#[test]
fn unreadable_manifests_are_errors_not_panics() {
    let missing = resolve(Path::new("/nonexistent/cell"), "celldb", None).unwrap_err();
    assert_eq!(missing.code, ProblemCode::ManifestUnreadable);
    let dir = tree(&[("Cargo.toml", "[package\nname = ")]);
    let bad = resolve(dir.path(), "celldb", None).unwrap_err();
    assert_eq!(bad.code, ProblemCode::ManifestUnreadable);
    assert!(bad.message.contains("not valid TOML"));
}

#[test]
fn odd_entries_are_skipped() {
    let dir = tree(&[(
        "Cargo.toml",
        &package("[dependencies]\nweird = 3\ncelldb = { git = \"https://example.invalid/c\" }\n"),
    )]);
    let r = resolve(dir.path(), "celldb", None).unwrap();
    assert_eq!(r.source, DepSource::Git("https://example.invalid/c".into()));
    assert!(resolve(dir.path(), "weird", None).is_err());
}

#[test]
fn from_env_reads_cargo_manifest_dir() {
    // This crate's own manifest: it is the package `cell-resolver`.
    let r = resolve_from_env("cell-resolver").unwrap();
    assert_eq!(r.extern_crate, "cell_resolver");
    assert_eq!(r.source, DepSource::SelfPackage);
    let toml = resolve_from_env("toml").unwrap();
    assert_eq!(toml.extern_crate, "toml");
    assert!(toml.source == DepSource::Registry);
}

#[test]
fn edits_to_the_manifest_or_its_workspace_root_are_seen_at_once() {
    let dir = tree(&[
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"app\"]\n[workspace.dependencies]\ndb = { package = \"celldb\", version = \"0.4\" }\n",
        ),
        (
            "app/Cargo.toml",
            &package("[dependencies]\ndb.workspace = true\n"),
        ),
    ]);
    let app = dir.path().join("app");
    assert_eq!(resolve(&app, "celldb", None).unwrap().extern_crate, "db");
    // Same again: served from the cache, same answer.
    assert_eq!(resolve(&app, "celldb", None).unwrap().extern_crate, "db");

    // The root renames the dependency: the member's manifest did not change.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"app\"]\n[workspace.dependencies]\ndb = { package = \"cell-db\", version = \"0.4\" }\n",
    )
    .unwrap();
    assert_eq!(
        resolve(&app, "celldb", None).unwrap_err().code,
        ProblemCode::UnknownCell
    );
    assert_eq!(resolve(&app, "cell-db", None).unwrap().extern_crate, "db");

    // The member switches to its own entry.
    std::fs::write(
        app.join("Cargo.toml"),
        package("[dependencies]\nstore = { package = \"celldb\", version = \"0.5\" }\n"),
    )
    .unwrap();
    assert_eq!(resolve(&app, "celldb", None).unwrap().extern_crate, "store");
}

#[test]
fn a_workspace_root_created_later_is_seen() {
    // A member inheriting `db` before its workspace root exists (a new project being set up
    // while rust-analyzer's proc-macro server keeps the cache).
    let dir = tree(&[(
        "ws/app/Cargo.toml",
        &package("[dependencies]\ndb.workspace = true\n"),
    )]);
    let app = dir.path().join("ws/app");
    let first = Manifest::load(&app).unwrap();
    assert_eq!(first.dependencies[0].package, "db");
    assert!(resolve(&app, "celldb", None).is_err());

    std::fs::write(
        dir.path().join("ws/Cargo.toml"),
        "[workspace]\nmembers = [\"app\"]\n[workspace.dependencies]\ndb = { package = \"celldb\", version = \"0.4\" }\n",
    )
    .unwrap();
    assert_eq!(resolve(&app, "celldb", None).unwrap().extern_crate, "db");
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn specs_never_panic(spec in ".{0,40}") {
            let _ = parse_spec(&spec);
        }

        #[test]
        fn manifests_never_panic(text in ".{0,300}") {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("Cargo.toml"), &text).unwrap();
            let _ = resolve(dir.path(), "celldb", Some("0.4"));
        }

        #[test]
        fn dependency_tables_never_panic(
            key in "[a-z_-]{1,8}",
            value in prop::sample::select(vec![
                "\"0.4\"", "{ package = \"celldb\" }", "{ workspace = true }", "3", "[1]",
                "{ version = 1 }", "{ path = \"..\" , version = \">=0.3, <0.5\" }", "\"*\"",
            ]),
        ) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("Cargo.toml"),
                format!("[package]\nname = \"a\"\n[dependencies]\n\"{key}\" = {value}\n"),
            )
            .unwrap();
            let _ = resolve(dir.path(), "celldb", None);
            let _ = resolve(dir.path(), &key, Some("0.4"));
        }
    }
}
