//! The index model: plain Rust types with public fields (no LSP types), serializable: the
//! snapshot's bincode and `cell-lsp index --json` encode the same types (`ValueKind` alone
//! picks a different form for binary formats).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::code::ProblemCode;

/// A region of a source file. Lines and columns are 1-based, columns count characters (as
/// rustc prints them); `start..end` is the byte range in the file, which is what editors need to
/// convert to their own encodings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// The file, absolute.
    pub file: PathBuf,
    /// First line (1-based).
    pub line: u32,
    /// First column (1-based, in characters).
    pub col: u32,
    /// Last line (1-based).
    pub end_line: u32,
    /// Column just past the end (1-based, in characters).
    pub end_col: u32,
    /// Byte offset of the start in the file.
    pub start: usize,
    /// Byte offset just past the end in the file.
    pub end: usize,
}

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A member of the indexed workspace.
    Workspace,
    /// A path dependency outside the workspace's members.
    Path,
    /// A registry (crates.io or another registry, including replaced/vendored sources).
    Registry,
    /// A git dependency.
    Git,
}

/// The kind of an exported macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportKind {
    /// `#[proc_macro_attribute]`, used as `#[Alias::name]`.
    Attribute,
    /// `#[proc_macro]`, used as `Alias::name!(…)`.
    Function,
    /// `#[proc_macro_derive(Name)]`, used as `#[derive(Alias::Name)]`.
    Derive,
}

impl ExportKind {
    /// The keyword used in the export declaration (`attribute`, `function`, `derive`).
    pub fn keyword(self) -> &'static str {
        match self {
            ExportKind::Attribute => "attribute",
            ExportKind::Function => "function",
            ExportKind::Derive => "derive",
        }
    }
}

/// The kind of value an argument takes. In JSON (`cell-lsp index --json`) it reads
/// `{"kind": "oneof", "values": [...]}`; binary formats (the index snapshot's bincode, which
/// cannot read that adjacently tagged form) get a plain enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A string literal.
    Str,
    /// `true` or `false`.
    Bool,
    /// An integer literal.
    Int,
    /// Any Rust expression (e.g. a range `1..=100`).
    Expr,
    /// One of these string literals.
    OneOf(Vec<String>),
}

/// [`ValueKind`]'s two serialized forms (see there), derived for it as serde remote types.
mod value_kind_serde {
    use super::ValueKind;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "ValueKind")]
    #[serde(rename_all = "lowercase", tag = "kind", content = "values")]
    enum Tagged {
        Str,
        Bool,
        Int,
        Expr,
        OneOf(Vec<String>),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "ValueKind")]
    enum Plain {
        Str,
        Bool,
        Int,
        Expr,
        OneOf(Vec<String>),
    }

    impl Serialize for ValueKind {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                Tagged::serialize(self, s)
            } else {
                Plain::serialize(self, s)
            }
        }
    }

    impl<'de> Deserialize<'de> for ValueKind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                Tagged::deserialize(d)
            } else {
                Plain::deserialize(d)
            }
        }
    }
}

/// One argument of an exported macro's schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArgSchema {
    /// The argument name; `None` for a positional argument (`_: expr`).
    pub name: Option<String>,
    /// Its value kind.
    pub kind: ValueKind,
    /// `true` when the argument may be omitted (`?` or a default).
    pub optional: bool,
    /// The default, as written (`"local"`), if any.
    pub default: Option<String>,
}

/// One macro a provider exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The name used after the alias (`persist` in `#[DB::persist]`).
    pub name: String,
    /// Attribute, function-like or derive.
    pub kind: ExportKind,
    /// Markdown docs from the `#[proc_macro*]` function's `///` comments (falling back to the
    /// declaration's own doc comments); empty when there are none.
    pub docs: String,
    /// Helper attributes the macro consumes (`key`, `index` inside `persist`).
    pub helpers: Vec<String>,
    /// Argument schemas of the helpers that take arguments (`range(_: expr)`).
    pub helper_args: std::collections::BTreeMap<String, Vec<ArgSchema>>,
    /// The argument schema, in declaration order.
    pub args: Vec<ArgSchema>,
    /// Where the export is declared (the name in `export!`).
    pub declared_at: Span,
    /// The `#[proc_macro*]` function's name, if it was found in the macro crate.
    pub definition: Option<Span>,
}

/// The provider's proc-macro crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacroCrate {
    /// The crate name as written in `macros = …;`.
    pub name: String,
    /// Its package id, when found among the provider's resolved dependencies.
    pub package_id: Option<String>,
    /// Its `lib.rs` (the proc-macro target's source), when found.
    pub lib_path: Option<PathBuf>,
}

/// A package whose library declares `cell_sdk::export! { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// The cell name declared (`cell = "celldb";`), which must equal the package name.
    pub cell: String,
    /// The package name.
    pub package: String,
    /// The cargo package id.
    pub package_id: String,
    /// The package version.
    pub version: String,
    /// Where the package comes from.
    pub source: SourceKind,
    /// The package's manifest.
    pub manifest_path: PathBuf,
    /// The library source holding the declaration.
    pub lib_path: PathBuf,
    /// The whole `export!` invocation.
    pub declaration: Span,
    /// The declaration's `format = N;`.
    pub format: u32,
    /// The proc-macro crate named by `macros = …;`.
    pub macro_crate: Option<MacroCrate>,
    /// The exported macros, in declaration order.
    pub exports: Vec<Export>,
    /// The runtime API items (`insert`, `Db`, …).
    pub api: Vec<String>,
}

impl Provider {
    /// The export called `name`, if any.
    pub fn export(&self, name: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.name == name)
    }
}

/// What an alias resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The package id the consumer depends on.
    pub package_id: String,
    /// The package name (= cell name).
    pub package: String,
    /// Its version.
    pub version: String,
    /// The extern crate name the consumer uses for it (after renames), e.g. `db_renamed`.
    pub extern_crate: String,
}

/// One `cell_remote!(Alias = "cell[@version]")` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias (`DB`).
    pub name: String,
    /// The cell name requested (`celldb`).
    pub cell: String,
    /// The version qualifier after `@`, if any (`0.4`).
    pub version: Option<String>,
    /// Inline module path where the call sits, relative to its file (`["inner"]`).
    pub module: Vec<String>,
    /// The alias identifier.
    pub span: Span,
    /// The string literal.
    pub literal: Span,
    /// The whole macro call.
    pub call: Span,
    /// The package it resolved to, when it resolved.
    pub resolved: Option<Resolution>,
}

/// A workspace member that calls `cell_remote!`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    /// The package name.
    pub package: String,
    /// The cargo package id.
    pub package_id: String,
    /// The package's manifest.
    pub manifest_path: PathBuf,
    /// Every `cell_remote!` call in its sources.
    pub aliases: Vec<Alias>,
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The build fails (or would, once the code is compiled).
    Error,
    /// The build works but something is probably wrong.
    Warning,
}

/// A suggested edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    /// What the edit does, for a code action title ("replace with `celldb`").
    pub title: String,
    /// The text replacing `span`.
    pub replacement: String,
    /// The region to replace.
    pub span: Span,
}

/// A problem found by the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The stable code (`CELL0001`…).
    #[serde(with = "code_serde")]
    pub code: ProblemCode,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence, without the code.
    pub message: String,
    /// Where, when there is a source location.
    pub span: Option<Span>,
    /// Extra lines (`help: …`, `note: …`).
    pub notes: Vec<String>,
    /// A suggested edit, where one is possible.
    pub fix: Option<Fix>,
}

/// A package of the dependency graph, as much as the index needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The cargo package id.
    pub id: String,
    /// The package name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Where it comes from.
    pub source: SourceKind,
    /// Its manifest.
    pub manifest_path: PathBuf,
    /// Its library target's root source, if it has a library.
    pub lib_path: Option<PathBuf>,
    /// `true` when the library is a proc-macro crate.
    pub proc_macro: bool,
    /// Root source files of all its targets (lib, bins, tests, examples, benches; not build
    /// scripts).
    #[serde(default)]
    pub target_roots: Vec<PathBuf>,
    /// Its resolved dependencies (empty when resolution failed and `--no-deps` was used).
    pub deps: Vec<Dep>,
}

/// A resolved dependency edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dep {
    /// The extern crate name the dependent uses (after `package = …` renames, `-` → `_`).
    pub extern_crate: String,
    /// The package id it resolves to.
    pub package_id: String,
}

mod code_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::code::ProblemCode;

    pub(super) fn serialize<S: Serializer>(code: &ProblemCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(code.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProblemCode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod value_kind_tests {
    use super::ValueKind;

    #[test]
    fn json_keeps_its_tagged_form_and_bincode_round_trips() {
        let kinds = [
            ValueKind::Str,
            ValueKind::Bool,
            ValueKind::Int,
            ValueKind::Expr,
            ValueKind::OneOf(vec!["local".into(), "raft".into()]),
        ];
        assert_eq!(
            serde_json::to_string(&kinds[4]).unwrap(),
            r#"{"kind":"oneof","values":["local","raft"]}"#
        );
        assert_eq!(
            serde_json::to_string(&kinds[0]).unwrap(),
            r#"{"kind":"str"}"#
        );
        for kind in kinds {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<ValueKind>(&json).unwrap(), kind);
            let bin = bincode::serialize(&kind).unwrap();
            assert_eq!(bincode::deserialize::<ValueKind>(&bin).unwrap(), kind);
        }
    }
}
