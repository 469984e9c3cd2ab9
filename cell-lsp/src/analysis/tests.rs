//! Data-driven in-process tests of the analysis layer: a workspace of `tests/fixtures/lsp/`
//! (copied to a temp dir, indexed for real), a buffer with `$0` at the cursor, and the answer
//! written inline with `expect-test`. `UPDATE_EXPECT=1 cargo test -p cell-lsp` rewrites the
//! expectations after an intended change; review the diff. The stdio tests
//! (`cell-lsp/tests/stdio.rs`) keep the protocol honest end to end.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a fixture that cannot be set up fails the test"
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cell_macro_index::{Index, IndexOptions};
use expect_test::{Expect, expect};

use super::Companion;
use crate::syntax::Parsed;

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

/// One copy of the fixtures for the whole run (cargo writes lock files into it).
fn fixtures() -> &'static (tempfile::TempDir, PathBuf) {
    static FX: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lsp");
        copy_dir(&src, &dir.path().join("fx"));
        let root = dir.path().join("fx").canonicalize().unwrap();
        (dir, root)
    })
}

/// The index of fixture workspace `ws`, and its `src/lib.rs`.
fn index(ws: &str) -> (Index, PathBuf) {
    let (dir, root) = fixtures();
    let mut opts = IndexOptions::new(root.join(ws).join("Cargo.toml"));
    opts.cargo_home = Some(dir.path().join("no-cargo-home"));
    opts.target_dir = Some(dir.path().join(format!("target-{ws}")));
    (
        Index::build(&opts).unwrap(),
        root.join(ws).join("src/lib.rs"),
    )
}

/// `text` without its `$0`, and the byte offset of the `$0`.
fn cursor(text: &str) -> (String, usize) {
    let at = text.find("$0").expect("the fixture text has a `$0` cursor");
    (text.replacen("$0", "", 1), at)
}

/// Line and column (1-based, in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("{line}:{col}")
}

fn check_completion(ws: &str, text: &str, expect: Expect) {
    check_completion_beside(Companion::Alone, ws, text, expect);
}

fn check_completion_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    let (index, file) = index(ws);
    let (text, offset) = cursor(text);
    let items = super::complete(&index, &file, &Parsed::new(&text), offset, companion);
    let actual: Vec<String> = items
        .iter()
        .map(|i| format!("{} ({:?}) {}", i.label, i.kind, i.detail))
        .collect();
    expect.assert_eq(&actual.join("\n"));
}

fn check_diagnostics(ws: &str, text: &str, expect: Expect) {
    check_diagnostics_beside(Companion::Alone, ws, text, expect);
}

fn check_diagnostics_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    let (index, file) = index(ws);
    let diags = super::diagnostics(&index, &file, &Parsed::new(text), text, companion);
    let actual: Vec<String> = diags
        .iter()
        .map(|d| {
            let mut s = format!(
                "{} {}: {}",
                line_col(text, d.range.0),
                d.code.map_or("-", |c| c.as_str()),
                d.message
            );
            for n in &d.notes {
                s.push_str(&format!("\n    {n}"));
            }
            if let Some(f) = &d.fix {
                s.push_str(&format!(
                    "\n    fix at {}: {} → {}",
                    line_col(text, f.range.0),
                    f.title,
                    f.replacement
                ));
            }
            s
        })
        .collect();
    expect.assert_eq(&actual.join("\n"));
}

fn check_hover(ws: &str, text: &str, expect: Expect) {
    check_hover_beside(Companion::Alone, ws, text, expect);
}

fn check_hover_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    let (index, file) = index(ws);
    let (text, offset) = cursor(text);
    let hover = super::hover(&index, &file, &Parsed::new(&text), offset, companion);
    // The fixtures' temp dir varies between runs.
    let root = fixtures().1.display().to_string();
    expect.assert_eq(
        &hover
            .map(|(md, _)| md.replace(&root, "$FX"))
            .unwrap_or_default(),
    );
}

const METRICS: &str = "cell_sdk::cell_remote!(Metrics = \"metrics\");\ncell_sdk::cell_remote!(M2 = \"metrics\");\ncell_sdk::cell_remote!(DB = \"kvstore\");\n";

#[test]
fn completion_on_a_parameter_of_a_tracked_function_offers_its_helper() {
    check_completion(
        "metrics-app",
        &format!(
            "{METRICS}#[Metrics::track(name = \"x\")]\npub fn f(#[Metrics::$0] user: u64) {{}}\n"
        ),
        expect![[r#"
            label (Helper) helper of #[Metrics::track] — metrics 0.1.0
            track (Macro(Attribute)) metrics 0.1.0"#]],
    );
}

#[test]
fn completion_on_a_parameter_without_the_parent_offers_no_helper() {
    check_completion(
        "metrics-app",
        &format!("{METRICS}pub fn f(#[Metrics::$0] user: u64) {{}}\n"),
        expect!["track (Macro(Attribute)) metrics 0.1.0"],
    );
}

#[test]
fn completion_of_track_arguments() {
    check_completion(
        "metrics-app",
        &format!("{METRICS}#[Metrics::track(name = \"x\", $0)]\npub fn f() {{}}\n"),
        expect![[r#"
            buckets (Argument) int = "8"
            unit (Argument) "s" | "bytes" = "s""#]],
    );
}

#[test]
fn helpers_in_every_position_and_under_other_aliases() {
    check_diagnostics(
        "metrics-app",
        &format!(
            "{METRICS}#[Metrics::track(name = \"x\")]\npub fn ok(#[Metrics::label] a: u64) {{}}\n\
             pub fn stray(#[Metrics::label] a: u64) {{}}\n\
             #[Metrics::track(name = \"x\")]\npub fn two(#[M2::label] a: u64) {{}}\n\
             #[DB::persist]\npub enum E {{\n    #[DB::key]\n    A,\n}}\n\
             pub enum F {{\n    #[DB::key]\n    A,\n}}\n"
        ),
        expect![[r#"
            6:25 CELL0011: `#[Metrics::label]` is a helper of `#[Metrics::track]` and only works on a parameter of a function marked with it
            8:14 CELL0011: `label` is a helper of `Metrics::track`, but it is written under `M2`, another alias: write `#[Metrics::label]`
                fix at 8:14: write `Metrics` → Metrics
            15:11 CELL0011: `#[DB::key]` is a helper of `#[DB::persist]` and only works on a variant of an enum marked with it"#]],
    );
}

#[test]
fn a_misspelt_macro_and_a_bad_value() {
    check_diagnostics(
        "metrics-app",
        &format!(
            "{METRICS}#[Metrics::trak(name = \"x\")]\npub fn a() {{}}\n\
             #[Metrics::track(name = \"x\", unit = \"bytez\")]\npub fn b() {{}}\n"
        ),
        expect![[r#"
            4:12 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 4:12: replace with `track` → track
            6:37 CELL0014: invalid value "bytez" for `unit`: expected "s" | "bytes"
                help: did you mean "bytes"?
                fix at 6:37: replace with "bytes" → "bytes""#]],
    );
}

/// A name under the parent's alias that is none of its helpers: CELL0011 in the words provider
/// macros use (`cell_export::args::unknown_helper`), not an unknown macro.
#[test]
fn an_unknown_helper_of_the_parent() {
    check_diagnostics(
        "metrics-app",
        &format!(
            "{METRICS}#[Metrics::track(name = \"x\")]\npub fn f(#[Metrics::lable] a: u64) {{}}\n"
        ),
        expect![[r#"
            5:21 CELL0011: `lable` is not a helper of `track` (did you mean `label`?); helpers: label
                fix at 5:21: replace with `label` → label"#]],
    );
}

#[test]
fn hover_on_a_helper_of_a_function_attribute() {
    check_hover(
        "metrics-app",
        &format!(
            "{METRICS}#[Metrics::track(name = \"x\")]\npub fn f(#[Metrics::la$0bel] user: u64) {{}}\n"
        ),
        expect![[r#"
            ```rust
            #[Metrics::label]
            ```
            helper attribute of `#[Metrics::track]` from **metrics** 0.1.0
        "#]],
    );
}

/// The lines after an unclosed `#[DB::persist(` and after an unterminated string in one.
const AFTER_BROKEN: &str = "pub struct User {\n    #[DB::uniqe]\n    id: u64,\n}\n\npub fn f() {\n    let _ = User::get(1);\n}\n#[Metrics::trak(name = \"x\")]\npub fn g() {}\n";

/// Half-typed input gets local answers: an unclosed attribute ends before the next item, so
/// the lines after it are not read as its arguments ("takes no positional arguments"), and the
/// attributes after it are still checked (the helper typo under the half-typed parent, the
/// misspelt macro below).
#[test]
fn an_unclosed_attribute_is_not_read_across_the_next_lines() {
    check_diagnostics(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(\n{AFTER_BROKEN}"),
        expect![[r#"
            6:11 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11: replace with `unique` → unique
            13:12 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 13:12: replace with `track` → track"#]],
    );
}

#[test]
fn an_unterminated_string_in_an_attribute_is_not_read_across_the_next_lines() {
    check_diagnostics(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(table = \"u)]\n{AFTER_BROKEN}"),
        expect![[r#"
            6:11 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11: replace with `unique` → unique
            13:12 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 13:12: replace with `track` → track"#]],
    );
}

#[test]
fn hover_after_an_unclosed_attribute_is_not_the_attributes() {
    for broken in ["#[DB::persist(\n", "#[DB::persist(table = \"u)]\n"] {
        let text = format!("{METRICS}{broken}{AFTER_BROKEN}");
        let at = text.find("User::get").unwrap() + 7;
        let text = format!("{}$0{}", &text[..at], &text[at..]);
        check_hover("metrics-app", &text, expect![[""]]);
    }
}

#[test]
fn completion_after_an_unclosed_attribute_is_local() {
    // Arguments written over several lines are still the attribute's.
    check_completion(
        "metrics-app",
        &format!(
            "{METRICS}#[DB::persist(\n    table = \"u\",\n    $0\npub struct User {{\n    id: u64,\n}}\n"
        ),
        expect![[r#"
            replicate (Argument) "local" | "gossip" | "raft" = "local"
            durability (Argument) "sync" | "buffered" = "sync""#]],
    );
    check_completion(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(\npub struct User {{\n    #[DB::$0]\n    id: u64,\n}}\n"),
        expect![[r#"
            key (Helper) helper of #[DB::persist] — kvstore 0.3.1
            index (Helper) helper of #[DB::persist] — kvstore 0.3.1
            unique (Helper) helper of #[DB::persist] — kvstore 0.3.1
            persist (Macro(Attribute)) kvstore 0.3.1"#]],
    );
    check_completion(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(table = \"u)]\npub struct User;\nfn f() {{ DB::$0 }}\n"),
        expect![[r#"
            query! (Macro(Function)) kvstore 0.3.1
            insert (Api) kvstore 0.3.1 API
            get (Api) kvstore 0.3.1 API
            Db (Api) kvstore 0.3.1 API
            Error (Api) kvstore 0.3.1 API"#]],
    );
}

/// Hover on what completion offers after `Alias::` in code: API items (declaration and docs
/// from the provider's crate root) and function-like macros.
#[test]
fn hover_on_api_items_and_function_macros() {
    check_hover(
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ Metrics::snap$0shot(); }}\n"),
        expect![[r#"
            ```rust
            Metrics::snapshot
            ```
            API item of **metrics** 0.1.0 (path: $FX/providers/metrics)

            ```rust
            pub fn snapshot()
            ```

            ---

            The counters recorded so far.
        "#]],
    );
    check_hover(
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ let _ = DB::ins$0ert; let _: DB::Db; }}\n"),
        expect![[r#"
            ```rust
            DB::insert
            ```
            API item of **kvstore** 0.3.1 (path: $FX/providers/kvstore)

            ```rust
            pub fn insert()
            ```

            ---

            Inserts a record.
        "#]],
    );
    check_hover(
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ let _: DB::D$0b; }}\n"),
        expect![[r#"
            ```rust
            DB::Db
            ```
            API item of **kvstore** 0.3.1 (path: $FX/providers/kvstore)

            ```rust
            pub struct Db;
            ```

            ---

            The database handle.
        "#]],
    );
    check_hover(
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ DB::que$0ry!(); }}\n"),
        expect![[r#"
            ```rust
            DB::query!
            ```
            function-like macro from **kvstore** 0.3.1 (path: $FX/providers/kvstore)

            ---

            Builds a query.
        "#]],
    );
    // Not an API item, not an alias, not a two-segment path: nothing.
    for text in [
        "pub fn f() { DB::nothi$0ng(); }\n",
        "pub fn f() { User::ge$0t(); }\n",
        "pub fn f() { a::DB::ins$0ert(); }\n",
    ] {
        check_hover("metrics-app", &format!("{METRICS}{text}"), expect![[""]]);
    }
}

/// Beside rust-analyzer: what it completes by name resolution (macro names, a helper the
/// provider also exports as an attribute, function macros and API items) is left out; helpers
/// that are not items, argument names and values, and cell names stay.
#[test]
fn beside_rust_analyzer_completion_leaves_out_what_it_offers() {
    let ra = Companion::RustAnalyzer;
    check_completion_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}#[DB::persist]\npub struct User {{\n    #[DB::$0]\n    id: u64,\n}}\n"),
        expect![[r#"
            index (Helper) helper of #[DB::persist] — kvstore 0.3.1
            unique (Helper) helper of #[DB::persist] — kvstore 0.3.1"#]],
    );
    check_completion_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}#[DB::$0]\npub struct User;\n"),
        expect![[r#""#]],
    );
    check_completion_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ DB::$0 }}\n"),
        expect![[r#""#]],
    );
    check_completion_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}#[DB::persist(replicate = \"$0\")]\npub struct User;\n"),
        expect![[r#"
            local (Value) default
            gossip (Value) 
            raft (Value) "#]],
    );
    check_completion_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}#[DB::persist(table = \"u\", $0)]\npub struct User;\n"),
        expect![[r#"
            replicate (Argument) "local" | "gossip" | "raft" = "local"
            durability (Argument) "sync" | "buffered" = "sync""#]],
    );
    check_completion_beside(
        ra,
        "metrics-app",
        "cell_sdk::cell_remote!(X = \"kv$0\");\n",
        expect!["kvstore (Cell) kvstore 0.3.1"],
    );
}

/// Beside rust-analyzer: the argument errors the macro reports in its expansion are left out;
/// an unknown helper (which the parent macro strips without a word) and an unknown macro stay.
#[test]
fn beside_rust_analyzer_diagnostics_leave_out_the_macros_own() {
    let text = format!(
        "{METRICS}#[DB::persist(tabel = \"u\", durability = \"fast\")]\npub struct User {{\n    #[DB::uniqe]\n    id: u64,\n}}\n#[Metrics::trak(name = \"x\")]\npub fn g() {{}}\n"
    );
    check_diagnostics_beside(
        Companion::RustAnalyzer,
        "metrics-app",
        &text,
        expect![[r#"
        6:11 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
            fix at 6:11: replace with `unique` → unique
        9:12 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
            help: did you mean `track`?
            note: rustc reports this as E0433
            fix at 9:12: replace with `track` → track"#]],
    );
    check_diagnostics_beside(
        Companion::Alone,
        "metrics-app",
        &text,
        expect![[r#"
        4:15 CELL0014: `#[DB::persist]` has no argument `tabel`
            help: did you mean `table`?
            fix at 4:15: replace with `table` → table
        4:41 CELL0014: invalid value "fast" for `durability`: expected "sync" | "buffered"
        6:11 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
            fix at 6:11: replace with `unique` → unique
        9:12 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
            help: did you mean `track`?
            note: rustc reports this as E0433
            fix at 9:12: replace with `track` → track"#]],
    );
}

/// Beside rust-analyzer: hover on an API item in code is its own; on an attribute macro ours.
#[test]
fn beside_rust_analyzer_hover_stays_on_attributes_only() {
    let ra = Companion::RustAnalyzer;
    check_hover_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}pub fn f() {{ DB::ins$0ert(); }}\n"),
        expect![[""]],
    );
    check_hover_beside(
        ra,
        "metrics-app",
        &format!("{METRICS}#[Metrics::tr$0ack(name = \"x\")]\npub fn f() {{}}\n"),
        expect![[r#"
            ```rust
            #[Metrics::track]
            ```
            attribute macro from **metrics** 0.1.0 (path: $FX/providers/metrics)

            ---

            Times the function; its parameters marked `#[label]` label the samples.

            **Arguments**

            - `name`: str
            - `buckets`: int = "8"
            - `unit`: "s" | "bytes" = "s"

            **Helpers**: `label`

            source: `$FX/providers/metrics-macros/src/lib.rs:7`
        "#]],
    );
}

/// The fixture `ws`'s `src/lib.rs` as it is on disk (the index's own problems count then).
fn lib_text(ws: &str) -> String {
    std::fs::read_to_string(fixtures().1.join(ws).join("src/lib.rs")).unwrap()
}

/// Raw and escaped string values are read as the macro reads them: only the raw string whose
/// value is wrong is reported; a byte string may or may not be accepted by the macro, so
/// nothing is said about it. (Was a stdio test; the protocol adds nothing here.)
#[test]
fn raw_and_escaped_string_values_are_read_not_rejected() {
    check_diagnostics(
        "typos",
        "cell_sdk::cell_remote!(DB = \"kvstore\");\n\
         #[DB::persist(table = r\"users\", replicate = r#\"raft\"#)]\npub struct A;\n\
         #[DB::persist(table = \"u\\\"s\", replicate = \"r\\x61ft\", durability = \"s\\u{79}nc\")]\npub struct B;\n\
         #[DB::persist(table = b\"users\", replicate = r##\"gossip\"##)]\npub struct C;\n\
         #[DB::persist(replicate = r\"rafts\")]\npub struct D;\n",
        expect![[
            r#"8:27 CELL0014: invalid value r"rafts" for `replicate`: expected "local" | "gossip" | "raft""#
        ]],
    );
}

/// `order` is valid under `form` (first and third structs), not under `schema` alone; a field
/// of a struct with neither parent is CELL0011 naming both. (Was a stdio test.)
#[test]
fn a_helper_declared_by_two_parents_is_checked_against_the_parents_its_struct_carries() {
    check_diagnostics(
        "helper-parents",
        &lib_text("helper-parents"),
        expect![[r#"
        12:28 CELL0014: `#[F::label]` has no argument `order`
            help: arguments: text
        24:10 CELL0011: `#[F::label]` is a helper of `#[F::schema]` or `#[F::form]` and only works on a field of a struct marked with it"#]],
    );
}
