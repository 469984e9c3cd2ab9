//! Checking the arguments a consumer wrote against a declared schema, with one set of words.
//!
//! The same mistake must read the same in rustc (through the provider's macro) and in the
//! editor (through cell-lsp). So the check lives here, once, over a neutral model of what was
//! written: [`WrittenArg`]s with text and spans of any type. Each front end produces that
//! model from its own syntax tree — [`crate::attr`] from the macro's `proc_macro2` tokens,
//! cell-lsp from rust-analyzer's tree — and renders the [`Problem`]s in its own way (a
//! `compile_error!`, an LSP diagnostic), with the code, span and words they carry.

use std::fmt;

use cell_resolver::ProblemCode;

use crate::model::{ArgSpec, Spanned, ValueKind};

/// One argument as the consumer wrote it: `name = value`, or a positional `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArg<S> {
    /// `replicate` in `replicate = "raft"`; `None` for a positional argument.
    pub name: Option<Spanned<String, S>>,
    /// The value's source text, trimmed (`"raft"`, `true`, `1..=100`); empty when nothing
    /// follows the `=` yet.
    pub value: Spanned<String, S>,
}

/// The attribute whose arguments are checked: the alias and name it was written with, and the
/// span of its name (where "missing argument" problems point).
#[derive(Debug, Clone, Copy)]
pub struct Written<'a, S> {
    /// `DB` in `#[DB::persist(…)]` (empty when written without an alias).
    pub alias: &'a str,
    /// `persist`.
    pub name: &'a str,
    /// Where `persist` was written.
    pub name_span: &'a S,
}

impl<S> Written<'_, S> {
    /// `#[DB::persist]`, as messages show the attribute.
    pub fn display(&self) -> String {
        if self.alias.is_empty() {
            format!("#[{}]", self.name)
        } else {
            format!("#[{}::{}]", self.alias, self.name)
        }
    }
}

/// One argument of a schema, as the check needs it: a view over [`ArgSpec`] (or over a tool's
/// own stored copy of the schema).
#[derive(Debug, Clone, Copy)]
pub struct ArgRule<'a> {
    /// The argument's name; `None` for the positional argument (`_: expr`).
    pub name: Option<&'a str>,
    /// Its value kind.
    pub kind: &'a ValueKind,
    /// Whether it may be left out (`?`, or a default).
    pub optional: bool,
}

impl<'a, S> From<&'a ArgSpec<S>> for ArgRule<'a> {
    fn from(spec: &'a ArgSpec<S>) -> Self {
        ArgRule {
            name: spec.name.as_ref().map(|n| n.value.as_str()),
            kind: &spec.kind,
            optional: spec.optional || spec.default.is_some(),
        }
    }
}

/// A suggested edit: replace the text at `span` with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix<S> {
    /// What the edit does, for a menu (`replace with "raft"`).
    pub title: String,
    /// The new text.
    pub replacement: String,
    /// What it replaces.
    pub span: S,
}

/// A problem found in what a consumer wrote, as every front end reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem<S> {
    /// The stable code, where the problem has one.
    pub code: Option<ProblemCode>,
    /// The message, without the code (front ends add it their way).
    pub message: String,
    /// The user's token it points at.
    pub span: S,
    /// `help: …` lines.
    pub notes: Vec<String>,
    /// A suggested edit, where there is one.
    pub fix: Option<Fix<S>>,
}

impl<S> Problem<S> {
    /// An error with a code and no notes yet.
    pub fn new(code: Option<ProblemCode>, message: String, span: S) -> Self {
        Problem {
            code,
            message,
            span,
            notes: Vec::new(),
            fix: None,
        }
    }

    /// When `written` is close to one of `candidates`, adds "did you mean" and the fix that
    /// replaces the text at `span` with it; says whether it did, so callers can fall back to
    /// listing the candidates.
    pub fn suggest(&mut self, written: &str, candidates: &[&str], span: S) -> bool {
        let Some(best) = did_you_mean(written, candidates) else {
            return false;
        };
        self.notes.push(format!("help: did you mean `{best}`?"));
        self.fix = Some(Fix {
            title: format!("replace with `{best}`"),
            replacement: best.to_owned(),
            span,
        });
        true
    }
}

impl<S> fmt::Display for Problem<S> {
    /// `CELL0014: message`, then each note on its own line: what a `compile_error!` shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)?;
        for note in &self.notes {
            write!(f, "\n  {note}")?;
        }
        Ok(())
    }
}

/// Checks the arguments written on `at` against `rules` (an attribute macro's or a helper's):
/// unknown names (with "did you mean"), values of the wrong kind, positional arguments where
/// none or fewer are declared, names given twice, missing required arguments. CELL0014 each,
/// at the user's token.
pub fn check_args<S: Clone>(
    at: &Written<'_, S>,
    written: &[WrittenArg<S>],
    rules: &[ArgRule<'_>],
) -> Vec<Problem<S>> {
    let mut out = Vec::new();
    let names: Vec<&str> = rules.iter().filter_map(|a| a.name).collect();
    let positional: Vec<&ArgRule<'_>> = rules.iter().filter(|a| a.name.is_none()).collect();
    let invalid = |message: String, span: S| {
        Problem::new(Some(ProblemCode::InvalidMacroArgument), message, span)
    };
    let mut positional_seen = 0;
    for (i, arg) in written.iter().enumerate() {
        let (kind, label) = match &arg.name {
            None => {
                let Some(p) = positional.get(positional_seen) else {
                    let mut d = invalid(
                        format!(
                            "`{}` takes {} positional argument{}",
                            at.display(),
                            if positional.is_empty() {
                                "no".to_owned()
                            } else {
                                positional.len().to_string()
                            },
                            if positional.len() == 1 { "" } else { "s" }
                        ),
                        arg.value.span.clone(),
                    );
                    if !names.is_empty() {
                        d.notes.push(format!(
                            "help: write `name = value`; arguments: {}",
                            names.join(", ")
                        ));
                    }
                    out.push(d);
                    continue;
                };
                positional_seen += 1;
                (p.kind, "the positional argument".to_owned())
            }
            Some(name) => {
                let Some(a) = rules.iter().find(|a| a.name == Some(name.value.as_str())) else {
                    let mut d = invalid(
                        format!("`{}` has no argument `{}`", at.display(), name.value),
                        name.span.clone(),
                    );
                    if !d.suggest(&name.value, &names, name.span.clone()) {
                        d.notes.push(if names.is_empty() {
                            format!("help: `{}` takes no named arguments", at.display())
                        } else {
                            format!("help: arguments: {}", names.join(", "))
                        });
                    }
                    out.push(d);
                    continue;
                };
                let earlier = written[..i]
                    .iter()
                    .any(|w| w.name.as_ref().is_some_and(|n| n.value == name.value));
                if earlier {
                    out.push(invalid(
                        format!("`{}` is given twice", name.value),
                        name.span.clone(),
                    ));
                    continue;
                }
                (a.kind, format!("`{}`", name.value))
            }
        };
        if let Some(d) = check_value(kind, &label, &arg.value) {
            out.push(d);
        }
    }
    for a in rules {
        if let Some(n) = a.name
            && !a.optional
            && !written
                .iter()
                .any(|w| w.name.as_ref().is_some_and(|w| w.value == n))
        {
            out.push(invalid(
                format!("`{}` needs the argument `{n}`", at.display()),
                at.name_span.clone(),
            ));
        }
    }
    let required_positional = positional.iter().filter(|a| !a.optional).count();
    if positional_seen < required_positional {
        out.push(invalid(
            format!(
                "`{}` needs a positional argument ({})",
                at.display(),
                positional
                    .iter()
                    .map(|a| describe_kind(a.kind, false, None))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            at.name_span.clone(),
        ));
    }
    out
}

/// The problem with one value, if it is not of `kind`. A value holding a quote that
/// [`unquote`] cannot read (a byte string, `concat!(…)`) may still be what the macro accepts:
/// nothing is said about it. Nothing is said about an empty value either (still being typed).
fn check_value<S: Clone>(
    kind: &ValueKind,
    label: &str,
    value: &Spanned<String, S>,
) -> Option<Problem<S>> {
    let v = value.value.as_str();
    let ok = match kind {
        ValueKind::Str => unquote(v).is_some() || v.contains('"'),
        ValueKind::Bool => v == "true" || v == "false",
        ValueKind::Int => is_int_literal(v),
        ValueKind::Expr => !v.is_empty(),
        ValueKind::OneOf(values) => match unquote(v) {
            Some(s) => values.contains(&s),
            None => v.contains('"'),
        },
    };
    if ok || v.is_empty() {
        return None;
    }
    let expected = describe_kind(kind, false, None);
    let mut d = Problem::new(
        Some(ProblemCode::InvalidMacroArgument),
        format!("invalid value {v} for {label}: expected {expected}"),
        value.span.clone(),
    );
    if let ValueKind::OneOf(values) = kind {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        if let Some(best) = did_you_mean(v.trim_matches('"'), &refs) {
            d.notes.push(format!("help: did you mean \"{best}\"?"));
            d.fix = Some(Fix {
                title: format!("replace with \"{best}\""),
                replacement: format!("\"{best}\""),
                span: value.span.clone(),
            });
        }
    }
    Some(d)
}

/// Where a helper attribute was written, for the words of a stray helper: helpers may sit on
/// fields, parameters, variants and methods of the item their parent macro marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperPosition {
    /// A field of a struct, enum variant or union.
    Field,
    /// A parameter of a function.
    Parameter,
    /// A variant of an enum.
    Variant,
    /// A method (or other associated item) of an `impl` or trait.
    Method,
    /// Directly on an item.
    Item,
}

impl HelperPosition {
    /// "a field of a struct", as the stray-helper message says it.
    pub fn describe(self) -> &'static str {
        match self {
            HelperPosition::Field => "a field of a struct",
            HelperPosition::Parameter => "a parameter of a function",
            HelperPosition::Variant => "a variant of an enum",
            HelperPosition::Method => "a method of an `impl`",
            HelperPosition::Item => "an item inside one",
        }
    }
}

/// CELL0011 for a helper outside every parent that consumes it: `#[M::label]` on a parameter
/// of a function that carries no `#[M::track]`. `parents` are the attributes as written
/// (`#[M::track]`); `span` is the helper's name.
pub fn stray_helper<S>(
    alias: &str,
    helper: &str,
    parents: &[String],
    position: HelperPosition,
    span: S,
) -> Problem<S> {
    Problem::new(
        Some(ProblemCode::ForeignHelper),
        format!(
            "`#[{alias}::{helper}]` is a helper of {} and only works on {} marked with it",
            parents.join(" or "),
            position.describe()
        ),
        span,
    )
}

/// CELL0011 for a name under the parent's own alias that is none of its helpers
/// (`#[Val::emial]` on a field of a `#[Val::schema]` struct): "did you mean" when a helper is
/// close (and a fix), and the list of helpers. `span` is the written name.
pub fn unknown_helper<S: Clone>(name: &str, parent: &str, helpers: &[&str], span: S) -> Problem<S> {
    let best = did_you_mean(name, helpers);
    let hint = best.map_or_else(String::new, |b| format!(" (did you mean `{b}`?)"));
    let mut p = Problem::new(
        Some(ProblemCode::ForeignHelper),
        format!(
            "`{name}` is not a helper of `{parent}`{hint}; helpers: {}",
            helpers.join(", ")
        ),
        span.clone(),
    );
    if let Some(best) = best {
        p.fix = Some(Fix {
            title: format!("replace with `{best}`"),
            replacement: best.to_owned(),
            span,
        });
    }
    p
}

/// CELL0011 for one of a parent's helpers written under another alias (`#[G::email]` inside
/// `#[Val::schema]`, or `#[M2::label]` inside `#[M::track]` when `M` and `M2` name one provider):
/// the parent macro consumes only helpers under its own alias. `span` is the written alias.
pub fn foreign_helper<S: Clone>(
    helper: &str,
    parent_alias: &str,
    parent: &str,
    written_alias: &str,
    span: S,
) -> Problem<S> {
    let mut p = Problem::new(
        Some(ProblemCode::ForeignHelper),
        format!(
            "`{helper}` is a helper of `{parent_alias}::{parent}`, but it is written under \
             `{written_alias}`, another alias: write `#[{parent_alias}::{helper}]`"
        ),
        span.clone(),
    );
    p.fix = Some(Fix {
        title: format!("write `{parent_alias}`"),
        replacement: parent_alias.to_owned(),
        span,
    });
    p
}

/// A kind as the docs and messages write it: `str`, `"sync" | "buffered"`, with `?` or
/// `= "default"` when asked.
pub fn describe_kind(kind: &ValueKind, optional: bool, default: Option<&str>) -> String {
    let k = match kind {
        ValueKind::Str => "str".to_owned(),
        ValueKind::Bool => "bool".to_owned(),
        ValueKind::Int => "int".to_owned(),
        ValueKind::Expr => "expr".to_owned(),
        ValueKind::OneOf(v) => v
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(" | "),
    };
    match (optional, default) {
        (_, Some(d)) => format!("{k} = \"{d}\""),
        (true, None) => format!("{k}?"),
        (false, None) => k,
    }
}

/// The candidate closest to `wanted` (case and `-`/`_` folded), if it is close enough to be
/// what was meant: at most a third of the word's length in edits (two at least).
pub fn did_you_mean<'a>(wanted: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let w = norm(wanted);
    let limit = (wanted.len() / 3).max(2);
    candidates
        .iter()
        .copied()
        .filter(|c| *c != wanted)
        .map(|c| (strsim::levenshtein(&w, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// The value of a plain or raw string literal (`"a\"b"`, `r"a"`, `r#"a"#`), escapes resolved;
/// `None` when `v` is not one or holds an escape this does not read.
pub fn unquote(v: &str) -> Option<String> {
    if let Some(raw) = v.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let fence = "#".repeat(hashes);
        let inner = raw
            .strip_prefix(&fence)?
            .strip_prefix('"')?
            .strip_suffix(&fence)?
            .strip_suffix('"')?;
        // A closing quote followed by the fence inside would have ended the literal.
        return (!inner.contains(&format!("\"{fence}"))).then(|| inner.to_owned());
    }
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let b = u8::from_str_radix(&hex, 16).ok().filter(u8::is_ascii)?;
                    out.push(char::from(b));
                }
                'u' => {
                    let rest = chars.as_str().strip_prefix('{')?;
                    let close = rest.find('}')?;
                    let code = u32::from_str_radix(&rest[..close].replace('_', ""), 16).ok()?;
                    out.push(char::from_u32(code)?);
                    chars = rest[close + 1..].chars();
                }
                '\n' => {
                    // A line continuation: the newline and the next line's leading whitespace.
                    chars = chars.as_str().trim_start().chars();
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// An integer literal as Rust writes it: sign, `_` separators, `0x`/`0o`/`0b`, a type suffix.
pub fn is_int_literal(v: &str) -> bool {
    let v = v.strip_prefix('-').unwrap_or(v).replace('_', "");
    let (digits, radix) = if let Some(h) = v.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = v.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = v.strip_prefix("0b") {
        (b, 2)
    } else {
        (v.as_str(), 10)
    };
    let suffixes = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ];
    let digits = suffixes
        .iter()
        .find_map(|s| digits.strip_suffix(s).filter(|d| !d.is_empty()))
        .unwrap_or(digits);
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

#[cfg(test)]
mod tests {
    use super::{did_you_mean, is_int_literal, unquote};

    #[test]
    fn string_literals_are_unquoted_or_left_alone() {
        assert_eq!(unquote("\"raft\"").as_deref(), Some("raft"));
        assert_eq!(unquote("r\"raft\"").as_deref(), Some("raft"));
        assert_eq!(unquote("r##\"a\"#b\"##").as_deref(), Some("a\"#b"));
        assert_eq!(unquote("\"r\\x61ft\"").as_deref(), Some("raft"));
        assert_eq!(unquote("\"s\\u{79}nc\"").as_deref(), Some("sync"));
        assert_eq!(unquote("\"a\\\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(unquote("\"a\\\n   b\"").as_deref(), Some("ab"));
        // Not a plain or raw string, or an escape not read here: unsure.
        for v in [
            "b\"x\"",
            "raft",
            "\"a\\q\"",
            "r#\"a\"",
            "\"a\"b\"",
            "\"\\u{d800}\"",
            "\"é",
        ] {
            assert_eq!(unquote(v), None, "{v}");
        }
    }

    #[test]
    fn integer_literals_as_rust_writes_them() {
        for ok in ["0", "-12", "1_000", "0xff", "0b1010", "7u8", "100_usize"] {
            assert!(is_int_literal(ok), "{ok}");
        }
        for bad in ["", "x", "1.5", "\"3\"", "0xg", "u8", "1..=3"] {
            assert!(!is_int_literal(bad), "{bad}");
        }
    }

    #[test]
    fn did_you_mean_folds_case_and_dashes() {
        assert_eq!(
            did_you_mean("celdb", &["celldb", "validate"]),
            Some("celldb")
        );
        assert_eq!(did_you_mean("cell_db", &["cell-db"]), Some("cell-db"));
        assert_eq!(did_you_mean("zzz", &["celldb"]), None);
    }
}
