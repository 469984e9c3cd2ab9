//! Data-driven in-process tests of the analysis layer: a workspace of `tests/fixtures/lsp/`
//! (copied to a temp dir, indexed for real), a buffer with `$0` at the cursor, and the answer
//! written inline with `expect-test`. `UPDATE_EXPECT=1 cargo test -p cell-lsp` rewrites the
//! expectations after an intended change; review the diff. Every editor answer's contents are
//! tested here; the stdio tests (`cell-lsp/tests/stdio.rs`) keep the protocol honest end to end
//! (framing, conversion to LSP types, document sync, file watching) with a few smoke sessions.
//!
//! What the expectations show: completion `label (kind) detail` with the docs indented below;
//! diagnostics `start-end code: message` (1-based line:column in characters) with notes and the
//! fix below; hover the markdown; definition the file and range. The fixtures' temp dir shows
//! as `$FX`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a fixture that cannot be set up fails the test"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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

/// A fresh copy of `tests/fixtures/lsp` and its canonical path.
fn copy_fixtures() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lsp");
    copy_dir(&src, &dir.path().join("fx"));
    let root = dir.path().join("fx").canonicalize().unwrap();
    (dir, root)
}

/// One copy of the fixtures for the whole run (cargo writes lock files into it).
fn fixtures() -> &'static (tempfile::TempDir, PathBuf) {
    static FX: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    FX.get_or_init(copy_fixtures)
}

/// The index of fixture workspace `ws` in the copy at `dir`/`root`.
fn build_index(dir: &Path, root: &Path, ws: &str) -> Index {
    let mut opts = IndexOptions::new(root.join(ws).join("Cargo.toml"));
    opts.cargo_home = Some(dir.join("no-cargo-home"));
    opts.target_dir = Some(dir.join(format!("target-{ws}")));
    Index::build(&opts).unwrap()
}

/// A fixture workspace, indexed, and the file of it that the buffer under test stands for.
struct Fixture {
    index: Arc<Index>,
    file: PathBuf,
    /// The copy of `tests/fixtures/lsp` (shown as `$FX`).
    fx: PathBuf,
    /// A copy of the fixtures of this fixture's own, when it writes into them.
    _own: Option<tempfile::TempDir>,
}

impl Fixture {
    /// `src/lib.rs` of fixture workspace `ws`.
    fn new(ws: &str) -> Fixture {
        Fixture::at(ws, "src/lib.rs")
    }

    /// `rel` (relative to the workspace) of fixture workspace `ws`, in the shared copy of the
    /// fixtures, indexed once per run.
    fn at(ws: &str, rel: &str) -> Fixture {
        static INDEXES: OnceLock<Mutex<HashMap<String, Arc<Index>>>> = OnceLock::new();
        let (dir, root) = fixtures();
        let index = {
            // A failed build fails its own test, not every later one.
            let mut indexes = INDEXES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            indexes
                .entry(ws.to_owned())
                .or_insert_with(|| Arc::new(build_index(dir.path(), root, ws)))
                .clone()
        };
        Fixture {
            index,
            file: root.join(ws).join(rel),
            fx: root.clone(),
            _own: None,
        }
    }

    /// `rel` of fixture workspace `ws`, holding `text` on disk before the index is built, in a
    /// copy of the fixtures of its own.
    fn with_file(ws: &str, rel: &str, text: &str) -> Fixture {
        let (dir, root) = copy_fixtures();
        let file = root.join(ws).join(rel);
        std::fs::write(&file, text).unwrap();
        Fixture {
            index: Arc::new(build_index(dir.path(), &root, ws)),
            file,
            fx: root,
            _own: Some(dir),
        }
    }

    /// The file as it is on disk (the index's own problems in it count then).
    fn on_disk(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap()
    }

    /// `path` with the fixtures' temp dir shown as `$FX`.
    fn show(&self, path: &str) -> String {
        path.replace(&self.fx.display().to_string(), "$FX")
    }

    fn completion(&self, text: &str, expect: Expect) {
        self.completion_beside(Companion::Alone, text, expect);
    }

    fn completion_beside(&self, companion: Companion, text: &str, expect: Expect) {
        let (text, offset) = cursor(text);
        let items = super::complete(
            &self.index,
            &self.file,
            &Parsed::new(&text),
            offset,
            companion,
        );
        let actual: Vec<String> = items
            .iter()
            .map(|i| {
                let mut s = format!("{} ({:?}) {}", i.label, i.kind, i.detail)
                    .trim_end()
                    .to_owned();
                for line in i.docs.lines() {
                    s.push('\n');
                    if !line.is_empty() {
                        s.push_str(&format!("    {line}"));
                    }
                }
                s
            })
            .collect();
        expect.assert_eq(&actual.join("\n"));
    }

    fn diagnostics(&self, text: &str, expect: Expect) {
        self.diagnostics_beside(Companion::Alone, text, expect);
    }

    fn diagnostics_beside(&self, companion: Companion, text: &str, expect: Expect) {
        let diags =
            super::diagnostics(&self.index, &self.file, &Parsed::new(text), text, companion);
        let actual: Vec<String> = diags
            .iter()
            .map(|d| {
                let mut s = format!(
                    "{} {}: {}",
                    span(text, d.range),
                    d.code.map_or("-", |c| c.as_str()),
                    d.message
                );
                for n in &d.notes {
                    s.push_str(&format!("\n    {n}"));
                }
                if let Some(f) = &d.fix {
                    let at = match &f.file {
                        None => span(text, f.range),
                        Some(file) => format!(
                            "{} {}",
                            self.show(&file.display().to_string()),
                            span(&std::fs::read_to_string(file).unwrap(), f.range)
                        ),
                    };
                    s.push_str(&format!(
                        "\n    fix at {at}: {} → {}",
                        f.title,
                        f.replacement.replace('\n', "\\n")
                    ));
                }
                s
            })
            .collect();
        expect.assert_eq(&actual.join("\n"));
    }

    fn hover(&self, text: &str, expect: Expect) {
        self.hover_beside(Companion::Alone, text, expect);
    }

    fn hover_beside(&self, companion: Companion, text: &str, expect: Expect) {
        let (text, offset) = cursor(text);
        let hover = super::hover(
            &self.index,
            &self.file,
            &Parsed::new(&text),
            offset,
            companion,
        );
        expect.assert_eq(&hover.map(|(md, _)| self.show(&md)).unwrap_or_default());
    }

    fn definition(&self, text: &str, expect: Expect) {
        let (text, offset) = cursor(text);
        let target = super::definition(&self.index, &self.file, &Parsed::new(&text), offset);
        expect.assert_eq(&target.map_or_else(String::new, |(file, range)| {
            format!(
                "{} {}",
                self.show(&file.display().to_string()),
                span(&std::fs::read_to_string(&file).unwrap(), range)
            )
        }));
    }
}

/// `text` without its `$0`, and the byte offset of the `$0`.
fn cursor(text: &str) -> (String, usize) {
    let at = text.find("$0").expect("the fixture text has a `$0` cursor");
    (text.replacen("$0", "", 1), at)
}

/// `text` with a `$0` cursor `delta` bytes into the first `needle`.
fn cursor_at(text: &str, needle: &str, delta: usize) -> String {
    let at = text.find(needle).expect("the needle is in the text") + delta;
    format!("{}$0{}", &text[..at], &text[at..])
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

/// `start-end` of a byte range of `text`, as [`line_col`]s.
fn span(text: &str, (start, end): (usize, usize)) -> String {
    format!("{}-{}", line_col(text, start), line_col(text, end))
}

fn check_completion(ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).completion(text, expect);
}

fn check_completion_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).completion_beside(companion, text, expect);
}

fn check_diagnostics(ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).diagnostics(text, expect);
}

fn check_diagnostics_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).diagnostics_beside(companion, text, expect);
}

fn check_hover(ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).hover(text, expect);
}

fn check_hover_beside(companion: Companion, ws: &str, text: &str, expect: Expect) {
    Fixture::new(ws).hover_beside(companion, text, expect);
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
            track (Macro(Attribute)) metrics 0.1.0
                Times the function; its parameters marked `#[label]` label the samples."#]],
    );
}

#[test]
fn completion_on_a_parameter_without_the_parent_offers_no_helper() {
    check_completion(
        "metrics-app",
        &format!("{METRICS}pub fn f(#[Metrics::$0] user: u64) {{}}\n"),
        expect![[r#"
            track (Macro(Attribute)) metrics 0.1.0
                Times the function; its parameters marked `#[label]` label the samples."#]],
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
            6:25-6:30 CELL0011: `#[Metrics::label]` is a helper of `#[Metrics::track]` and only works on a parameter of a function marked with it
            8:14-8:16 CELL0011: `label` is a helper of `Metrics::track`, but it is written under `M2`, another alias: write `#[Metrics::label]`
                fix at 8:14-8:16: write `Metrics` → Metrics
            15:11-15:14 CELL0011: `#[DB::key]` is a helper of `#[DB::persist]` and only works on a variant of an enum marked with it"#]],
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
            4:12-4:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 4:12-4:16: replace with `track` → track
            6:37-6:44 CELL0014: invalid value "bytez" for `unit`: expected "s" | "bytes"
                help: did you mean "bytes"?
                fix at 6:37-6:44: replace with "bytes" → "bytes""#]],
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
            5:21-5:26 CELL0011: `lable` is not a helper of `track` (did you mean `label`?); helpers: label
                fix at 5:21-5:26: replace with `label` → label"#]],
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
            6:11-6:16 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11-6:16: replace with `unique` → unique
            13:12-13:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 13:12-13:16: replace with `track` → track"#]],
    );
}

#[test]
fn an_unterminated_string_in_an_attribute_is_not_read_across_the_next_lines() {
    check_diagnostics(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(table = \"u)]\n{AFTER_BROKEN}"),
        expect![[r#"
            6:11-6:16 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11-6:16: replace with `unique` → unique
            13:12-13:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 13:12-13:16: replace with `track` → track"#]],
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
            persist (Macro(Attribute)) kvstore 0.3.1
                Stores this struct in a kvstore table.

                Fields marked `#[DB::key]` form the primary key."#]],
    );
    check_completion(
        "metrics-app",
        &format!("{METRICS}#[DB::persist(table = \"u)]\npub struct User;\nfn f() {{ DB::$0 }}\n"),
        expect![[r#"
            query! (Macro(Function)) kvstore 0.3.1
                Builds a query.
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
            raft (Value)"#]],
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
        expect![[r#"
            kvstore (Cell) kvstore 0.3.1
                exports: persist, key, query, Table"#]],
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
            6:11-6:16 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11-6:16: replace with `unique` → unique
            9:12-9:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 9:12-9:16: replace with `track` → track"#]],
    );
    check_diagnostics_beside(
        Companion::Alone,
        "metrics-app",
        &text,
        expect![[r#"
            4:15-4:20 CELL0014: `#[DB::persist]` has no argument `tabel`
                help: did you mean `table`?
                fix at 4:15-4:20: replace with `table` → table
            4:41-4:47 CELL0014: invalid value "fast" for `durability`: expected "sync" | "buffered"
            6:11-6:16 CELL0011: `uniqe` is not a helper of `persist` (did you mean `unique`?); helpers: key, index, unique
                fix at 6:11-6:16: replace with `unique` → unique
            9:12-9:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
                help: did you mean `track`?
                note: rustc reports this as E0433
                fix at 9:12-9:16: replace with `track` → track"#]],
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
    Fixture::new(ws).on_disk()
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
            r#"8:27-8:35 CELL0014: invalid value r"rafts" for `replicate`: expected "local" | "gossip" | "raft""#
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
            12:28-12:33 CELL0014: `#[F::label]` has no argument `order`
                help: arguments: text
            24:10-24:15 CELL0011: `#[F::label]` is a helper of `#[F::schema]` or `#[F::form]` and only works on a field of a struct marked with it"#]],
    );
}

/// A buffer over the `good` fixture: two providers, a complete attribute with an argument, a
/// helper on a field.
const GOOD: &str = r#"use cell_sdk::cell_remote;

cell_remote!(DB = "kvstore");
cell_remote!(Val = "checks");

#[DB::persist(replicate = "raft")]
pub struct User {
    #[DB::key]
    id: u64,
}
"#;

/// On a complete attribute: after `#[DB::` the attribute macros with provider, version and
/// docs — not `key`, which kvstore also declares as an attribute but is only a helper of
/// `persist`; in the argument list the names not yet written, then the allowed values; on a
/// field of a `#[DB::persist]` struct its helpers first; in `cell_remote!` the cells this
/// crate can use.
#[test]
fn completion_on_complete_code() {
    let fx = Fixture::new("good");
    fx.completion(
        &cursor_at(GOOD, "#[DB::persist(", 6),
        expect![[r#"
            persist (Macro(Attribute)) kvstore 0.3.1
                Stores this struct in a kvstore table.

                Fields marked `#[DB::key]` form the primary key."#]],
    );
    fx.completion(
        &cursor_at(GOOD, "replicate = \"raft\"", 0),
        expect![[r#"
            table (Argument) str?
            durability (Argument) "sync" | "buffered" = "sync""#]],
    );
    fx.completion(
        &cursor_at(GOOD, "replicate = \"raft\"", 13),
        expect![[r#"
            local (Value) default
            gossip (Value)
            raft (Value)"#]],
    );
    fx.completion(
        &cursor_at(GOOD, "#[DB::key]", 6),
        expect![[r#"
            key (Helper) helper of #[DB::persist] — kvstore 0.3.1
            index (Helper) helper of #[DB::persist] — kvstore 0.3.1
            unique (Helper) helper of #[DB::persist] — kvstore 0.3.1
            persist (Macro(Attribute)) kvstore 0.3.1
                Stores this struct in a kvstore table.

                Fields marked `#[DB::key]` form the primary key."#]],
    );
    fx.completion(
        &cursor_at(GOOD, "\"kvstore\"", 1),
        expect![[r#"
            checks (Cell) checks 1.2.0
                exports: schema, range
            kvstore (Cell) kvstore 0.3.1
                exports: persist, key, query, Table"#]],
    );
}

/// Hover on an attribute macro: docs, provider, version, arguments, source; on the
/// `cell_remote!` call: what the alias resolved to and its crate name.
#[test]
fn hover_on_an_attribute_macro_and_on_a_cell_remote_call() {
    let fx = Fixture::new("good");
    fx.hover(
        &cursor_at(GOOD, "persist(", 2),
        expect![[r#"
        ```rust
        #[DB::persist]
        ```
        attribute macro from **kvstore** 0.3.1 (path: $FX/providers/kvstore)

        ---

        Stores this struct in a kvstore table.

        Fields marked `#[DB::key]` form the primary key.

        **Arguments**

        - `table`: str?
        - `replicate`: "local" | "gossip" | "raft" = "local"
        - `durability`: "sync" | "buffered" = "sync"

        **Helpers**: `key`, `index`, `unique`

        source: `$FX/providers/kvstore-macros/src/lib.rs:9`
    "#]],
    );
    fx.hover(&cursor_at(GOOD, "cell_remote!(DB", 3), expect![[r#"
        `DB` → **kvstore** 0.3.1 (path: $FX/providers/kvstore) as `::db`

        exports: `persist` (attribute), `key` (attribute), `query` (function), `Table` (derive), `insert`, `get`, `Db`, `Error`
    "#]]);
}

/// A docs example is shown as rustdoc shows it: without its hidden lines (`# use …`), and
/// labelled `rust` for highlighting.
#[test]
fn hover_shows_docs_without_rustdoc_hidden_lines() {
    Fixture::new("good").hover(
        &format!("{GOOD}\n#[Val::sch$0ema]\nstruct Signup {{}}\n"),
        expect![[r#"
            ```rust
            #[Val::schema]
            ```
            attribute macro from **checks** 1.2.0 (path: $FX/providers/checks)

            ---

            Generates `validate()` from the field rules.

            ```rust
            #[schema]
            struct Signup { email: String }
            ```

            **Arguments**

            - `strict`: bool?

            **Helpers**: `email`, `range`, `length`

            source: `$FX/providers/checks-macros/src/lib.rs:13`
        "#]],
    );
}

/// Definition of an attribute macro: the `#[proc_macro_attribute]` fn in the provider's macro
/// crate, at its name.
#[test]
fn definition_of_an_attribute_macro_is_its_function() {
    let fx = Fixture::new("good");
    fx.definition(
        &cursor_at(GOOD, "persist(", 2),
        expect!["$FX/providers/kvstore-macros/src/lib.rs 9:8-9:15"],
    );
    // A helper goes to its parent macro; the alias of a call goes nowhere.
    fx.definition(
        &cursor_at(GOOD, "key]", 1),
        expect!["$FX/providers/kvstore-macros/src/lib.rs 15:8-15:11"],
    );
    fx.definition(&cursor_at(GOOD, "DB = ", 1), expect![[r#""#]]);
}

/// Half-typed input at the end of the buffer: `#[DB::`, `#[DB::persist(rep`, `DB::` in an
/// expression (function-like macros and API items).
#[test]
fn completion_on_half_typed_code_at_the_end_of_the_buffer() {
    let fx = Fixture::new("good");
    fx.completion(
        &format!("{GOOD}\n#[DB::$0"),
        expect![[r#"
        persist (Macro(Attribute)) kvstore 0.3.1
            Stores this struct in a kvstore table.

            Fields marked `#[DB::key]` form the primary key."#]],
    );
    fx.completion(
        &format!("{GOOD}\n#[DB::persist(rep$0"),
        expect![[r#"replicate (Argument) "local" | "gossip" | "raft" = "local""#]],
    );
    fx.completion(
        &format!("{GOOD}\nfn f() {{ DB::$0 }}"),
        expect![[r#"
        query! (Macro(Function)) kvstore 0.3.1
            Builds a query.
        insert (Api) kvstore 0.3.1 API
        get (Api) kvstore 0.3.1 API
        Db (Api) kvstore 0.3.1 API
        Error (Api) kvstore 0.3.1 API"#]],
    );
}

/// Garbage gets an answer (no panic) at positions on and past its lines' ends (as the server
/// converts them), and a 50,000-line buffer a correct one at its end.
#[test]
fn garbage_and_a_50k_line_buffer_still_get_answers() {
    let fx = Fixture::new("good");
    let garbage =
        "#[[[(((\"\u{0}\u{1F600} ]]] #[DB:: persist((( cell_remote!(= \" \n}}}{{{ \\\\ '\n"
            .repeat(50);
    let parsed = Parsed::new(&garbage);
    let lines = crate::lines::LineIndex::new(&garbage);
    for line in [0, 1, 10, 49, 200] {
        for character in [0, 3, 12, 30, 1000] {
            let offset = lines.offset(line, character);
            let _ = super::complete(&fx.index, &fx.file, &parsed, offset, Companion::Alone);
            let _ = super::hover(&fx.index, &fx.file, &parsed, offset, Companion::Alone);
            let _ = super::definition(&fx.index, &fx.file, &parsed, offset);
        }
    }
    let _ = super::diagnostics(&fx.index, &fx.file, &parsed, &garbage, Companion::Alone);
    let mut big = String::from(GOOD);
    for i in 0..50_000 {
        big.push_str(&format!("fn f{i}() {{}}\n"));
    }
    big.push_str("#[DB::$0");
    fx.completion(
        &big,
        expect![[r#"
        persist (Macro(Attribute)) kvstore 0.3.1
            Stores this struct in a kvstore table.

            Fields marked `#[DB::key]` form the primary key."#]],
    );
}

/// The `typos` fixture as saved: the index's problems in it and the macro uses checked, each
/// typo with its fix.
#[test]
fn diagnostics_for_an_unknown_macro_a_bad_value_and_a_stray_helper() {
    let fx = Fixture::new("typos");
    fx.diagnostics(&fx.on_disk(), expect![[r#"
        4:7-4:13 CELL0015: `DB` (kvstore 0.3.1) exports no attribute macro `persit`
            help: did you mean `persist`?
            note: rustc reports this as E0433
            fix at 4:7-4:13: replace with `persist` → persist
        9:27-9:34 CELL0014: invalid value "rafts" for `replicate`: expected "local" | "gossip" | "raft"
            help: did you mean "raft"?
            fix at 9:27-9:34: replace with "raft" → "raft"
        16:11-16:14 CELL0011: `#[DB::key]` is a helper of `#[DB::persist]` and only works on a field of a struct marked with it"#]]);
}

/// Provider macros behind `cfg_attr`, on an item, on a field, among other attributes.
const CFG_ATTR: &str = r#"use cell_sdk::cell_remote;

cell_remote!(DB = "kvstore");

#[cfg_attr(feature = "db", DB::persist(replicate = "rafts"))]
pub struct User {
    #[DB::key]
    id: u64,
    #[cfg_attr(feature = "db", DB::index)]
    email: String,
}

#[cfg_attr(all(unix, feature = "db"), derive(Debug), cfg_attr(test, DB::persit))]
pub struct Other;
"#;

/// Provider macros behind `cfg_attr`: the cfg is not evaluated (features are unknown), so each
/// attribute it adds is treated as active — checked, completed and hovered like one written
/// alone — and a helper under a parent behind `cfg_attr` is not a stray helper.
#[test]
fn provider_macros_inside_cfg_attr_are_checked_completed_and_hovered() {
    let fx = Fixture::new("good");
    // No CELL0011 on `#[DB::key]`: its parent is behind `cfg_attr`.
    fx.diagnostics(CFG_ATTR, expect![[r#"
        5:52-5:59 CELL0014: invalid value "rafts" for `replicate`: expected "local" | "gossip" | "raft"
            help: did you mean "raft"?
            fix at 5:52-5:59: replace with "raft" → "raft"
        13:73-13:79 CELL0015: `DB` (kvstore 0.3.1) exports no attribute macro `persit`
            help: did you mean `persist`?
            note: rustc reports this as E0433
            fix at 13:73-13:79: replace with `persist` → persist"#]]);
    // After `DB::` inside `cfg_attr`, on the item and on a field; a value.
    fx.completion(
        &cursor_at(CFG_ATTR, "DB::persist(", 4),
        expect![[r#"
        persist (Macro(Attribute)) kvstore 0.3.1
            Stores this struct in a kvstore table.

            Fields marked `#[DB::key]` form the primary key."#]],
    );
    fx.completion(
        &cursor_at(CFG_ATTR, "DB::index", 4),
        expect![[r#"
        key (Helper) helper of #[DB::persist] — kvstore 0.3.1
        index (Helper) helper of #[DB::persist] — kvstore 0.3.1
        unique (Helper) helper of #[DB::persist] — kvstore 0.3.1
        persist (Macro(Attribute)) kvstore 0.3.1
            Stores this struct in a kvstore table.

            Fields marked `#[DB::key]` form the primary key."#]],
    );
    fx.completion(
        &cursor_at(CFG_ATTR, "\"rafts\"", 2),
        expect!["raft (Value)"],
    );
    fx.hover(
        &cursor_at(CFG_ATTR, "persist(", 2),
        expect![[r#"
        ```rust
        #[DB::persist]
        ```
        attribute macro from **kvstore** 0.3.1 (path: $FX/providers/kvstore)

        ---

        Stores this struct in a kvstore table.

        Fields marked `#[DB::key]` form the primary key.

        **Arguments**

        - `table`: str?
        - `replicate`: "local" | "gossip" | "raft" = "local"
        - `durability`: "sync" | "buffered" = "sync"

        **Helpers**: `key`, `index`, `unique`

        source: `$FX/providers/kvstore-macros/src/lib.rs:9`
    "#]],
    );
    // Half-typed, at the end of the buffer.
    fx.completion(
        &format!("{CFG_ATTR}\n#[cfg_attr(feature = \"db\", DB::$0"),
        expect![[r#"
            persist (Macro(Attribute)) kvstore 0.3.1
                Stores this struct in a kvstore table.

                Fields marked `#[DB::key]` form the primary key."#]],
    );
}

/// CELL0001 on a cell that is a provider in the graph but not a dependency of this crate: the
/// fix adds it to this crate's `Cargo.toml`. (Its code action: a smoke session in `stdio.rs`.)
#[test]
fn unknown_cell_offers_to_add_the_dependency_to_cargo_toml() {
    let fx = Fixture::at("missing-dep", "app/src/lib.rs");
    fx.diagnostics(&fx.on_disk(), expect![[r#"
        3:28-3:36 CELL0001: unknown cell `checks`: no dependency of this crate is the package `checks`
            help: `checks` is a provider in this workspace's graph: add `checks = { path = "../../providers/checks" }` to Cargo.toml
            help: providers this crate depends on: `kvstore` 0.3.1
            fix at $FX/missing-dep/app/Cargo.toml 6:15-6:15: Add `checks = { path = "../../providers/checks" }` to Cargo.toml → \nchecks = { path = "../../providers/checks" }"#]]);
}

/// `range(1..=100)` and `length(min = 2, max = 32)` are valid; each other helper use is
/// reported at the argument, with a fix where one is close.
#[test]
fn helper_arguments_are_checked_against_their_declared_schema() {
    let fx = Fixture::new("helper-args");
    let text = fx.on_disk();
    fx.diagnostics(
        &text,
        expect![[r#"
        11:19-11:22 CELL0014: `#[Val::length]` has no argument `mim`
            help: did you mean `min`?
            fix at 11:19-11:22: replace with `min` → min
        13:25-13:31 CELL0014: invalid value "long" for `max`: expected int
        15:12-15:17 CELL0014: `#[Val::range]` needs a positional argument (expr)
        17:19-17:20 CELL0014: `#[Val::length]` takes no positional arguments
            help: write `name = value`; arguments: min, max
        24:14-24:19 CELL0015: `DB` (kvstore 0.3.1) exports no derive macro `Tabel`
            help: did you mean `Table`?
            note: rustc reports this as E0433
            fix at 24:14-24:19: replace with `Table` → Table"#]],
    );
    // Inside a helper's parentheses: its declared argument names, minus those written
    // elsewhere in the attribute; on a field, the helper's signature in the detail.
    fx.completion(
        &cursor_at(&text, "mim = 2", 0),
        expect![[r#"
        min (Argument) int?
        max (Argument) int?"#]],
    );
    fx.completion(
        &cursor_at(&text, "mim = 2", 2),
        expect!["min (Argument) int?"],
    );
    fx.completion(
        &cursor_at(&text, "max = \"long\"", 0),
        expect!["min (Argument) int?"],
    );
    fx.completion(
        &cursor_at(&text, "#[Val::range(1", 7),
        expect![[r#"
            email (Helper) helper of #[Val::schema] — checks 1.2.0
            range (Helper) range(_: expr) — helper of #[Val::schema] — checks 1.2.0
            length (Helper) length(min: int?, max: int?) — helper of #[Val::schema] — checks 1.2.0
            schema (Macro(Attribute)) checks 1.2.0
                Generates `validate()` from the field rules.

                ```rust
                #[schema]
                struct Signup { email: String }
                ```"#]],
    );
    // Hover on a helper lists its arguments.
    fx.hover(
        &cursor_at(&text, "length(min", 2),
        expect![[r#"
        ```rust
        #[Val::length]
        ```
        helper attribute of `#[Val::schema]` from **checks** 1.2.0

        **Arguments**

        - `min`: int?
        - `max`: int?
    "#]],
    );
}

/// The `metrics-app` fixture as saved: helpers of a function attribute (`#[Metrics::label]` on
/// a parameter of a `#[Metrics::track]` fn) and helpers in every position — what the provider
/// macro says, cell-lsp says (issue 15); under another alias, at the alias with a fix; the
/// export list names each helper once.
#[test]
fn helpers_on_parameters_variants_and_methods_and_under_other_aliases() {
    let fx = Fixture::new("metrics-app");
    let text = fx.on_disk();
    fx.diagnostics(&text, expect![[r#"
        9:25-9:30 CELL0011: `#[Metrics::label]` is a helper of `#[Metrics::track]` and only works on a parameter of a function marked with it
        12:22-12:24 CELL0011: `label` is a helper of `Metrics::track`, but it is written under `M2`, another alias: write `#[Metrics::label]`
            fix at 12:22-12:24: write `Metrics` → Metrics
        15:22-15:24 CELL0011: `label` is a helper of `Metrics::track`, but it is written under `DB`, another alias: write `#[Metrics::label]`
            fix at 15:22-15:24: write `Metrics` → Metrics
        17:12-17:16 CELL0015: `Metrics` (metrics 0.1.0) exports no attribute macro `trak`
            help: did you mean `track`?
            note: rustc reports this as E0433
            fix at 17:12-17:16: replace with `track` → track
        20:7-20:11 CELL0015: `DB` (kvstore 0.3.1) exports no attribute macro `frob`
            help: `DB` exports: persist, key, index, unique, column
            note: rustc reports this as E0433
        33:11-33:14 CELL0011: `#[DB::key]` is a helper of `#[DB::persist]` and only works on a method of an `impl` marked with it"#]]);
    // On a parameter of a `track` function: its helper.
    fx.completion(
        &cursor_at(&text, "#[Metrics::label] user: u64) {}\n\npub fn stray", 12),
        expect!["label (Helper) helper of #[Metrics::track] — metrics 0.1.0"],
    );
}

/// An alias defined in a module, or twice, has a meaning that depends on where it is used:
/// nothing is said about its uses. Only the typo under the alias defined once, at the top
/// level, is reported. The file is on disk, as a module file of the crate (whose root defines
/// `DB` as kvstore and `Val` as checks) would be.
#[test]
fn an_alias_defined_in_a_module_or_twice_is_not_judged_by_one_of_its_calls() {
    let text = "mod a {\n    cell_sdk::cell_remote!(DB = \"checks\");\n    #[DB::schema]\n    pub struct S;\n}\n\
        #[DB::persist]\npub struct T;\n\
        mod b {\n    cell_sdk::cell_remote!(X = \"checks\");\n    #[X::schema]\n    pub struct S;\n}\n\
        mod c {\n    cell_sdk::cell_remote!(X = \"kvstore\");\n    #[X::persist]\n    pub struct T;\n}\n\
        cell_sdk::cell_remote!(V2 = \"checks\");\n#[V2::shema]\npub struct U;\n";
    let fx = Fixture::with_file("helper-args", "src/other.rs", text);
    fx.diagnostics(
        text,
        expect![[r#"
        19:7-19:12 CELL0015: `V2` (checks 1.2.0) exports no attribute macro `shema`
            help: did you mean `schema`?
            note: rustc reports this as E0433
            fix at 19:7-19:12: replace with `schema` → schema"#]],
    );
}

/// `#[derive(Clone, DB::Ta|ble)]`: the provider's derive macros only, also half-typed; hover
/// and definition on the derive.
#[test]
fn derive_completion_hover_and_definition() {
    let fx = Fixture::new("helper-args");
    let text = fx.on_disk();
    fx.completion(
        &cursor_at(&text, "DB::Table", 6),
        expect![[r#"
        Table (Macro(Derive)) derive — kvstore 0.3.1
            Derives table metadata."#]],
    );
    fx.completion(
        &format!("{text}\n#[derive(Debug, DB::$0"),
        expect![[r#"
        Table (Macro(Derive)) derive — kvstore 0.3.1
            Derives table metadata."#]],
    );
    fx.hover(
        &cursor_at(&text, "DB::Table", 5),
        expect![[r#"
        ```rust
        #[derive(DB::Table)]
        ```
        derive macro from **kvstore** 0.3.1 (path: $FX/providers/kvstore)

        ---

        Derives table metadata.

        source: `$FX/providers/kvstore-macros/src/lib.rs:26`
    "#]],
    );
    fx.definition(
        &cursor_at(&text, "DB::Table", 5),
        expect!["$FX/providers/kvstore-macros/src/lib.rs 26:21-26:26"],
    );
}

/// Beside rust-analyzer, on the `typos` fixture with `DB::` in code (not as saved: the index's
/// own problems are left out): the macro's argument error is rust-analyzer's; `#[DB::` on an
/// item offers nothing of ours, on a field the helpers that are not items of `DB`, after `DB::`
/// in code nothing; argument values stay. (The option's way in: `stdio.rs`.)
#[test]
fn beside_rust_analyzer_each_answer_is_given_once() {
    let ra = Companion::RustAnalyzer;
    let fx = Fixture::new("typos");
    let text = format!("{}\npub fn f() {{ DB:: }}\n", fx.on_disk());
    fx.diagnostics_beside(ra, &text, expect![[r#"
        4:7-4:13 CELL0015: `DB` (kvstore 0.3.1) exports no attribute macro `persit`
            help: did you mean `persist`?
            note: rustc reports this as E0433
            fix at 4:7-4:13: replace with `persist` → persist
        16:11-16:14 CELL0011: `#[DB::key]` is a helper of `#[DB::persist]` and only works on a field of a struct marked with it"#]]);
    fx.completion_beside(ra, &cursor_at(&text, "#[DB::persist(", 6), expect![[r#""#]]);
    fx.completion_beside(
        ra,
        &cursor_at(&text, "#[DB::key]\n    id: u64,\n}\n\npub struct C", 6),
        expect![[r#"
            index (Helper) helper of #[DB::persist] — kvstore 0.3.1
            unique (Helper) helper of #[DB::persist] — kvstore 0.3.1"#]],
    );
    fx.completion_beside(ra, &cursor_at(&text, "DB:: }", 4), expect![[r#""#]]);
    fx.completion_beside(
        ra,
        &cursor_at(&text, "rafts", 0),
        expect![[r#"
        local (Value) default
        gossip (Value)
        raft (Value)"#]],
    );
}
