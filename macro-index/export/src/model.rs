//! The export declaration as data. Generic over the span type `S`: the `export!` macro parses
//! with `proc_macro2::Span` (to point compile errors at the user's tokens), tools with
//! [`Location`] (plain line/column data that is `Send` and can be stored).

use std::fmt;

/// The format version this crate reads and the macro accepts.
pub const SUPPORTED_FORMAT: u32 = 1;

/// A value with the span it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spanned<T, S> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: S,
}

impl<T, S> Spanned<T, S> {
    /// Pairs a value with its span.
    pub fn new(value: T, span: S) -> Self {
        Spanned { value, span }
    }

    /// Converts the span, keeping the value.
    pub fn map_span<S2>(self, f: &mut impl FnMut(S) -> S2) -> Spanned<T, S2> {
        Spanned {
            value: self.value,
            span: f(self.span),
        }
    }
}

/// A position in a source file: `line` is 1-based, `column` 0-based and counted in `char`s
/// (proc-macro2's convention; an LSP front end converts to UTF-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LineColumn {
    /// 1-based line.
    pub line: usize,
    /// 0-based column in chars.
    pub column: usize,
}

/// A span in a source file, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// First character.
    pub start: LineColumn,
    /// One past the last character.
    pub end: LineColumn,
    /// Byte offsets into the parsed text.
    pub bytes: std::ops::Range<usize>,
}

impl Location {
    /// Reads a span produced by parsing text with proc-macro2 outside a proc macro.
    pub fn from_span(span: proc_macro2::Span) -> Location {
        let (s, e) = (span.start(), span.end());
        Location {
            start: LineColumn {
                line: s.line,
                column: s.column,
            },
            end: LineColumn {
                line: e.line,
                column: e.column,
            },
            bytes: span.byte_range(),
        }
    }
}

/// The kind of an exported macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacroKind {
    /// `attribute name { … }`: a `#[proc_macro_attribute]`.
    Attribute,
    /// `function name { … }`: a `#[proc_macro]` (function-like).
    Function,
    /// `derive Name { … }`: a `#[proc_macro_derive]`.
    Derive,
}

impl MacroKind {
    /// The keyword used in the declaration.
    pub const fn keyword(self) -> &'static str {
        match self {
            MacroKind::Attribute => "attribute",
            MacroKind::Function => "function",
            MacroKind::Derive => "derive",
        }
    }
}

impl fmt::Display for MacroKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The kind of value an argument takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// `str`: a string literal.
    Str,
    /// `bool`: `true` or `false`.
    Bool,
    /// `int`: an integer literal.
    Int,
    /// `expr`: any Rust expression (e.g. a range `1..=100`).
    Expr,
    /// `"a" | "b"`: one of these string literals.
    OneOf(Vec<String>),
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Str => f.write_str("str"),
            ValueKind::Bool => f.write_str("bool"),
            ValueKind::Int => f.write_str("int"),
            ValueKind::Expr => f.write_str("expr"),
            ValueKind::OneOf(values) => {
                let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                f.write_str(&quoted.join(" | "))
            }
        }
    }
}

/// A literal default value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
        }
    }
}

/// One argument of a macro's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec<S> {
    /// The argument's name, or `None` for the positional argument written `_`.
    pub name: Option<Spanned<String, S>>,
    /// Its value kind.
    pub kind: ValueKind,
    /// `?`: the argument may be left out.
    pub optional: bool,
    /// `= literal`: the value when left out.
    pub default: Option<Spanned<Literal, S>>,
    /// The whole argument.
    pub span: S,
}

impl<S> ArgSpec<S> {
    /// Converts every span.
    pub fn map_spans<S2>(self, f: &mut impl FnMut(S) -> S2) -> ArgSpec<S2> {
        ArgSpec {
            name: self.name.map(|n| n.map_span(f)),
            kind: self.kind,
            optional: self.optional,
            default: self.default.map(|d| d.map_span(f)),
            span: f(self.span),
        }
    }
}

impl<S> MacroExport<S> {
    /// The helper called `name`, if this macro consumes one.
    pub fn helper(&self, name: &str) -> Option<&HelperSpec<S>> {
        self.helpers.iter().find(|h| h.name.value == name)
    }
}

/// A helper attribute a macro consumes (`#[DB::key]`, `#[Val::range(1..=100)]`), with the
/// arguments it takes (`range(_: expr)` in the declaration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperSpec<S> {
    /// The helper's name as written after `Alias::`.
    pub name: Spanned<String, S>,
    /// Its argument schema; empty for a bare helper such as `key`.
    pub args: Vec<ArgSpec<S>>,
}

/// One exported macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroExport<S> {
    /// Attribute, function-like or derive.
    pub kind: MacroKind,
    /// The macro's name as the consumer writes it after `Alias::`.
    pub name: Spanned<String, S>,
    /// `///` docs written on the entry, if any (tools prefer the `#[proc_macro*]` fn's docs).
    pub docs: Option<String>,
    /// Helper attributes the macro consumes (`#[DB::key]` inside `#[DB::persist]`).
    pub helpers: Vec<HelperSpec<S>>,
    /// The argument schema.
    pub args: Vec<ArgSpec<S>>,
    /// The whole entry.
    pub span: S,
}

/// A provider's export declaration: everything inside `cell_sdk::export! { … }`.
///
/// Fields are `Option`/empty when the declaration left them out or they did not parse; the
/// accompanying errors say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDecl<S> {
    /// `format = 1;`
    pub format: Option<Spanned<u32, S>>,
    /// `cell = "celldb";` (must equal the package name).
    pub cell: Option<Spanned<String, S>>,
    /// `macros = celldb_macros;` — the path of the proc-macro crate as the provider names it.
    pub macros_crate: Option<Spanned<String, S>>,
    /// The exported macros, in declaration order.
    pub macros: Vec<MacroExport<S>>,
    /// `api = [insert, Db, ...];` — runtime items re-exported from the provider's crate root
    /// (paths written `a::b` keep their `::`).
    pub api: Vec<Spanned<String, S>>,
}

impl<S> Default for ExportDecl<S> {
    fn default() -> Self {
        ExportDecl {
            format: None,
            cell: None,
            macros_crate: None,
            macros: Vec::new(),
            api: Vec::new(),
        }
    }
}

impl<S> ExportDecl<S> {
    /// The exported macro called `name`, if any.
    pub fn macro_named(&self, name: &str) -> Option<&MacroExport<S>> {
        self.macros.iter().find(|m| m.name.value == name)
    }

    /// Converts every span (e.g. `proc_macro2::Span` → [`Location`]).
    pub fn map_spans<S2>(self, f: &mut impl FnMut(S) -> S2) -> ExportDecl<S2> {
        ExportDecl {
            format: self.format.map(|x| x.map_span(f)),
            cell: self.cell.map(|x| x.map_span(f)),
            macros_crate: self.macros_crate.map(|x| x.map_span(f)),
            macros: self
                .macros
                .into_iter()
                .map(|m| MacroExport {
                    kind: m.kind,
                    name: m.name.map_span(f),
                    docs: m.docs,
                    helpers: m
                        .helpers
                        .into_iter()
                        .map(|h| HelperSpec {
                            name: h.name.map_span(f),
                            args: h.args.into_iter().map(|a| a.map_spans(f)).collect(),
                        })
                        .collect(),
                    args: m.args.into_iter().map(|a| a.map_spans(f)).collect(),
                    span: f(m.span),
                })
                .collect(),
            api: self.api.into_iter().map(|a| a.map_span(f)).collect(),
        }
    }
}
