//! rustc and `cell-lsp --check` say the same thing about every mistake (issue 15): the fixture
//! workspace `tests/fixtures/agree/` is built with real `cargo build --message-format json`,
//! and checked with `cell-lsp --check --message-format json`. Every compiler error that
//! carries one of our codes in its text (`CELL0011: …`, from `cell_remote!`, `export!` or a
//! provider macro such as the fixture's `metrics` or the real `cell-postgres`, both written
//! with `cell_export::attr`) must be reported by cell-lsp with the same code, the same
//! primary span (file, line, columns) and the same words. CELL0011 and CELL0014 come from cell-lsp's own analysis of the files; the
//! rest from the index it serves (`tests/integration/agree.rs` compares the index directly,
//! including rustc's native codes). This lives in the cell-lsp package because only a
//! package's own tests get `CARGO_BIN_EXE_cell-lsp`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a fixture that cannot be set up fails the test"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The code of a rustc error that has none (`expected non-macro attribute, found attribute
/// macro`).
const UNCODED: &str = "uncoded";

/// One error, reduced to what is compared: (code, file, line, column, end line, end column,
/// our words).
type Said = (String, PathBuf, u64, u64, u64, u64, String);

struct Both {
    compiler: BTreeSet<Said>,
    lsp: BTreeSet<Said>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/agree")
        .canonicalize()
        .unwrap()
}

/// The fixtures' target dir, shared with `tests/integration/agree.rs` (one build for both).
fn fixture_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("fixtures")
}

/// `CELLnnnn` and the words after it (up to the first line break and the docs link), from a
/// message that carries our code.
fn ours(message: &str) -> Option<(String, String)> {
    let i = message.find("CELL")?;
    let code = message.get(i..i + 8)?.to_owned();
    let rest = message[i + 8..].strip_prefix(": ")?;
    let rest = rest.split('\n').next().unwrap_or(rest);
    let words = rest.split(" (see docs/problems.md").next().unwrap_or(rest);
    Some((code, words.to_owned()))
}

/// The errors with our code in `out` (cargo-style JSON lines), keyed by primary span; a
/// span in a macro expansion is followed out to the fixture, as rustc renders it.
fn errors(root: &Path, out: &[u8], code_field: bool) -> BTreeSet<Said> {
    let mut said = BTreeSet::new();
    for line in String::from_utf8_lossy(out).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-message" || msg["message"]["level"] != "error" {
            continue;
        }
        let message = &msg["message"];
        let text = message["message"].as_str().unwrap_or("");
        // rustc's text carries our code; cell-lsp's carries it in `code`, as cargo's JSON does
        // for rustc's own codes.
        let found = if code_field {
            message["code"]["code"].as_str().map(|c| {
                let first = text.split('\n').next().unwrap_or(text);
                (c.to_owned(), first.to_owned())
            })
        } else {
            // rustc's native error: its code (or `UNCODED`), and its message and label (which
            // name the item).
            ours(text).or_else(|| {
                let code = message["code"]["code"].as_str().unwrap_or(UNCODED);
                let label = message["spans"]
                    .as_array()?
                    .iter()
                    .find(|s| s["is_primary"] == true)?["label"]
                    .as_str()
                    .unwrap_or("");
                Some((code.to_owned(), format!("{text} / {label}")))
            })
        };
        let Some((code, words)) = found else {
            continue;
        };
        let Some(mut span) = message["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["is_primary"] == true))
        else {
            continue;
        };
        loop {
            let file = Path::new(span["file_name"].as_str().unwrap_or(""));
            if !file.is_absolute() || file.starts_with(root) {
                break;
            }
            span = &span["expansion"]["span"];
        }
        if span.is_null() {
            continue;
        }
        let file = root.join(span["file_name"].as_str().unwrap());
        said.insert((
            code,
            file.canonicalize().unwrap_or(file),
            span["line_start"].as_u64().unwrap(),
            span["column_start"].as_u64().unwrap(),
            span["line_end"].as_u64().unwrap(),
            span["column_end"].as_u64().unwrap(),
            words,
        ));
    }
    said
}

fn both() -> &'static Both {
    static BOTH: OnceLock<Both> = OnceLock::new();
    BOTH.get_or_init(|| {
        let root = root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args([
                "build",
                "--offline",
                "--workspace",
                "--keep-going",
                "--message-format",
                "json",
            ])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", fixture_target())
            .env("CARGO_TERM_COLOR", "never")
            .output()
            .unwrap();
        let target = tempfile::tempdir().unwrap();
        let checked = Command::new(env!("CARGO_BIN_EXE_cell-lsp"))
            .args(["--check", ".", "--message-format", "json"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", target.path())
            .output()
            .unwrap();
        Both {
            compiler: errors(&root, &built.stdout, false),
            lsp: errors(&root, &checked.stdout, true),
        }
    })
}

/// The compiler's errors with our code in `member`, and cell-lsp's with that code there, are
/// the same (and there is at least one).
fn agree(member: &str, code: &str) {
    let both = both();
    let dir = root().join(member);
    let pick = |set: &BTreeSet<Said>| -> Vec<Said> {
        set.iter()
            .filter(|s| s.1.starts_with(&dir) && s.0 == code)
            .cloned()
            .collect()
    };
    let (compiler, lsp) = (pick(&both.compiler), pick(&both.lsp));
    assert!(
        !compiler.is_empty(),
        "rustc reported no {code} in `{member}`"
    );
    assert_eq!(compiler, lsp, "rustc (left) and cell-lsp (right) differ");
}

/// Where rustc reports the mistake with its own code (`rustc`), cell-lsp reports `ours` at the
/// same places, naming the item rustc names.
fn agree_native(member: &str, rustc: &str, ours: &str) {
    let both = both();
    let dir = root().join(member);
    let pick = |set: &BTreeSet<Said>, code: &str| -> Vec<Said> {
        set.iter()
            .filter(|s| s.1.starts_with(&dir) && s.0 == code)
            .cloned()
            .collect()
    };
    let (compiler, lsp) = (pick(&both.compiler, rustc), pick(&both.lsp, ours));
    assert!(
        !compiler.is_empty(),
        "rustc reported no {rustc} in `{member}`"
    );
    let place = |s: &Said| (s.1.clone(), s.2, s.3, s.4, s.5);
    assert_eq!(
        compiler.iter().map(place).collect::<Vec<_>>(),
        lsp.iter().map(place).collect::<Vec<_>>(),
        "rustc (left) and cell-lsp (right) differ: {compiler:#?} {lsp:#?}"
    );
    for (c, l) in compiler.iter().zip(&lsp) {
        let named: Vec<&str> = c.6.split('`').skip(1).step_by(2).collect();
        assert!(
            named.iter().any(|n| l.6.contains(n)),
            "cell-lsp's words name none of {named:?}: {l:#?}"
        );
    }
}

/// `#[Metrics::label]` on a parameter of a function without `#[Metrics::track]`.
#[test]
fn cell0011_a_helper_outside_its_parent_is_rustc_e0433() {
    agree_native("stray-helper", "E0433", "CELL0011");
}

/// `#[Metrics::trak]`.
#[test]
fn cell0015_a_misspelt_macro_is_rustc_e0433() {
    agree_native("unknown-macro", "E0433", "CELL0015");
}

#[test]
fn cell0011_a_helper_under_a_second_alias_of_its_provider() {
    agree("helper-alias", "CELL0011");
}

#[test]
fn cell0014_an_undeclared_value_and_an_unknown_argument_name() {
    agree("bad-argument", "CELL0014");
}

/// `#[Postgres::tabel]`: a misspelt macro of a second provider, with helpers of its own.
#[test]
fn cell0015_a_misspelt_postgres_macro_is_rustc_e0433() {
    agree_native("pg-unknown-macro", "E0433", "CELL0015");
}

/// `#[Postgres::table(nme = …)]`, `#[Postgres::column(nam = …)]` (so `name` is missing too),
/// `#[Postgres::varchar]` without its length: cell-postgres' macro and cell-lsp read them
/// against the same declaration.
#[test]
fn cell0014_postgres_argument_errors() {
    agree("pg-bad-argument", "CELL0014");
}

/// `#[Postgres::primary_ky]`, `#[Postgres::uniqe]` on fields of a `table` struct: the same
/// "did you mean" from both.
#[test]
fn cell0011_postgres_helper_typos() {
    agree("pg-helper-typo", "CELL0011");
}

#[test]
fn cell0011_a_postgres_helper_under_a_second_alias() {
    agree("pg-helper-alias", "CELL0011");
}

/// `#[Postgres::auto_inc]` (celldb's helper) on a field of a `table` struct.
#[test]
fn cell0011_an_unknown_postgres_helper() {
    agree("pg-unknown-helper", "CELL0011");
}

/// `#[Postgres::unique]` on a field of a struct without `table`: rustc's error has no code
/// (the helper is an attribute macro too, which a field cannot carry: "expected non-macro
/// attribute, found attribute macro `Postgres::unique`"); cell-lsp says CELL0011 there, naming
/// the helper. rustc underlines the whole path, cell-lsp the helper's name (where it reports a
/// helper that is no macro, as rustc's E0433 does): checked as "within rustc's span" until
/// cell-lsp underlines the path for a helper that is also a macro.
#[test]
fn cell0011_a_postgres_helper_outside_its_table_is_rustcs_uncoded_error() {
    let both = both();
    let dir = root().join("pg-stray-helper");
    let pick = |set: &BTreeSet<Said>, code: &str| -> Vec<Said> {
        set.iter()
            .filter(|s| s.1.starts_with(&dir) && s.0 == code)
            .cloned()
            .collect()
    };
    let (compiler, lsp) = (pick(&both.compiler, UNCODED), pick(&both.lsp, "CELL0011"));
    assert_eq!(compiler.len(), 1, "{compiler:#?}");
    assert_eq!(lsp.len(), 1, "{lsp:#?}");
    let (c, l) = (&compiler[0], &lsp[0]);
    assert!(
        c.1 == l.1 && (c.2, c.3) <= (l.2, l.3) && (l.4, l.5) <= (c.4, c.5),
        "cell-lsp's span is not within rustc's: {c:#?} {l:#?}"
    );
    assert!(
        c.6.contains("`Postgres::unique`") && l.6.contains("`#[Postgres::unique]`"),
        "{c:#?} {l:#?}"
    );
}

/// Every error the compiler reports with our code in its text, cell-lsp reports the same.
#[test]
fn every_coded_compiler_error_is_said_by_cell_lsp() {
    let both = both();
    let missing: Vec<&Said> = both
        .compiler
        .difference(&both.lsp)
        .filter(|s| s.0.starts_with("CELL"))
        .collect();
    assert!(missing.is_empty(), "only rustc said: {missing:#?}");
}
