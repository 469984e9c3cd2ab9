//! Diagnostics for a buffer: the index's problems in the file, plus macro uses checked against
//! the declared schemas (CELL0011, CELL0014, CELL0015) with the words provider macros use.

use super::*;

/// CELL0015's note: the code rustc reports the same mistake with (docs/problems.md).
pub(super) const RUSTC_E0433: &str = "note: rustc reports this as E0433";

/// A suggested edit: (title, replacement, byte range, the file to edit when it is not the
/// diagnostic's own — `Cargo.toml` for "add the dependency").
/// A suggested edit, as plain data (the server turns it into a code action).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DiagFix {
    /// What the edit does (`replace with "raft"`).
    pub(crate) title: String,
    /// The new text.
    pub(crate) replacement: String,
    /// What it replaces (bytes of `file`, or of the buffer).
    pub(crate) range: (usize, usize),
    /// The file it edits, when not the buffer's (a `Cargo.toml`).
    pub(crate) file: Option<PathBuf>,
}

/// A diagnostic over a buffer. Serializable for `--check`'s findings cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Diag {
    #[serde(with = "code_serde")]
    pub(crate) code: Option<ProblemCode>,
    pub(crate) severity: Severity,
    pub(crate) message: String,
    pub(crate) range: (usize, usize),
    pub(crate) notes: Vec<String>,
    /// (title, replacement, range)
    /// A suggested edit, where there is one.
    pub(crate) fix: Option<DiagFix>,
    /// The provider's macro reports it too, in its expansion (`compile_error!` at the same
    /// token), which rust-analyzer shows when it expands the macro.
    pub(crate) in_expansion: bool,
}

/// A problem code as its stable name (`CELL0001`), as the index's snapshot stores it: an
/// unknown name (a cache written by another version) fails to load instead of guessing.
mod code_serde {
    use cell_macro_index::ProblemCode;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        code: &Option<ProblemCode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match code {
            Some(code) => s.serialize_some(code.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ProblemCode>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(D::Error::custom))
            .transpose()
    }
}

impl Diag {
    /// An error at `range` with no notes or fix yet: how every macro-use check starts one.
    pub(crate) fn error(code: Option<ProblemCode>, message: String, range: (usize, usize)) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message,
            range,
            notes: Vec::new(),
            fix: None,
            in_expansion: false,
        }
    }

    /// When `written` is close to one of `candidates`, adds "did you mean" and the quick fix
    /// replacing the text at `range` with it; says whether it did, so callers can fall back
    /// to listing the candidates.
    fn suggest(&mut self, written: &str, candidates: &[&str], range: (usize, usize)) -> bool {
        let Some(best) = did_you_mean(written, candidates) else {
            return false;
        };
        self.notes.push(format!("help: did you mean `{best}`?"));
        self.fix = Some(DiagFix {
            title: format!("replace with `{best}`"),
            replacement: best.to_owned(),
            range,
            file: None,
        });
        true
    }
}

/// Diagnostics for a buffer: the index's problems in this file (only while the buffer equals
/// the file on disk, so their spans are right) plus macro uses checked against the schemas;
/// beside rust-analyzer, without those it shows from the macros' expansions.
pub(crate) fn diagnostics(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    text: &str,
    companion: Companion,
) -> Vec<Diag> {
    let on_disk = std::fs::read_to_string(file).ok();
    let mut out = all_diagnostics(index, file, parsed, on_disk.as_deref() == Some(text));
    if companion == Companion::RustAnalyzer {
        out.retain(|d| !d.in_expansion);
    }
    out
}

/// [`diagnostics()`] of `parsed`, the contents of `file` as just read from disk (`--check`):
/// nothing is read again, so the result is a function of the text, `file` and `index` alone
/// (what `--check`'s findings cache keys on). Alone, not beside rust-analyzer.
pub(crate) fn diagnostics_of_file(index: &Index, file: &Path, parsed: &Parsed) -> Vec<Diag> {
    all_diagnostics(index, file, parsed, true)
}

/// `text_is_on_disk`: the buffer equals the file on disk, so the index's problems in the file
/// (whose spans are the file's) apply to it.
fn all_diagnostics(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    text_is_on_disk: bool,
) -> Vec<Diag> {
    let mut out = Vec::new();
    if text_is_on_disk {
        for p in index
            .problems
            .iter()
            .filter(|p| p.span.as_ref().is_some_and(|s| s.file == file))
        {
            out.push(from_problem(p));
        }
    }
    let aliases = aliases(index, file, parsed);
    for u in parsed.attr_uses() {
        if u.name.is_empty() {
            continue;
        }
        if let Some(d) = foreign_helper(&aliases, &u) {
            out.push(d);
            continue;
        }
        let Some(alias) = aliases.iter().find(|a| a.name == u.alias) else {
            continue;
        };
        let Some(p) = alias.provider else { continue };
        check_use(p, &u, &mut out);
    }
    for d in parsed.derive_uses() {
        let Some(p) = aliases
            .iter()
            .find(|a| a.name == d.alias)
            .and_then(|a| a.provider)
        else {
            continue;
        };
        if p.export(&d.name)
            .is_some_and(|e| e.kind == ExportKind::Derive)
        {
            continue;
        }
        let names: Vec<&str> = p
            .exports
            .iter()
            .filter(|e| e.kind == ExportKind::Derive)
            .map(|e| e.name.as_str())
            .collect();
        let mut diag = Diag::error(
            Some(ProblemCode::UnknownMacro),
            format!(
                "`{}` ({} {}) exports no derive macro `{}`",
                d.alias, p.cell, p.version, d.name
            ),
            d.name_range,
        );
        if !diag.suggest(&d.name, &names, d.name_range) {
            diag.notes.push(if names.is_empty() {
                format!("help: `{}` exports no derive macros", d.alias)
            } else {
                format!("help: `{}` derives: {}", d.alias, names.join(", "))
            });
        }
        diag.notes.push(RUSTC_E0433.to_owned());
        out.push(diag);
    }
    out
}

pub(crate) fn from_problem(p: &Problem) -> Diag {
    let range = p.span.as_ref().map_or((0, 0), |s| (s.start, s.end));
    Diag {
        code: Some(p.code),
        severity: p.severity,
        message: p.message.clone(),
        range,
        notes: p.notes.clone(),
        in_expansion: false,
        fix: p.fix.as_ref().map(|f| {
            let elsewhere = p.span.as_ref().is_none_or(|s| s.file != f.span.file);
            DiagFix {
                title: f.title.clone(),
                replacement: f.replacement.clone(),
                range: (f.span.start, f.span.end),
                file: elsewhere.then(|| f.span.file.clone()),
            }
        }),
    }
}

pub(super) fn check_use(p: &Provider, u: &AttrUse, out: &mut Vec<Diag>) {
    // A helper first, even when the provider also declares it as an attribute (celldb does,
    // so that one used alone gets its own error): outside its parent it is CELL0011 here too.
    // Every export declaring the helper: two parents may share a helper name with different
    // arguments, and the item may carry either.
    let declaring: Vec<&Export> = p
        .exports
        .iter()
        .filter(|e| e.helpers.contains(&u.name))
        .collect();
    if !declaring.is_empty() {
        // Only where the position is certain: on a field whose item carries none of the parent
        // macros, or directly on an item. Elsewhere (an enum variant, a half-typed spot) say
        // nothing.
        let carried: Option<Vec<&Export>> = u.parent_attrs.as_ref().map(|attrs| {
            declaring
                .iter()
                .copied()
                .filter(|e| attrs.iter().any(|(a, n)| *a == u.alias && *n == e.name))
                .collect()
        });
        match carried {
            Some(carried) if carried.is_empty() => {
                let names: Vec<String> = declaring
                    .iter()
                    .map(|e| format!("`#[{}::{}]`", u.alias, e.name))
                    .collect();
                out.push(shared_problem(stray_helper(
                    &u.alias,
                    &u.name,
                    &names,
                    u.position.unwrap_or(HelperPosition::Item),
                    u.name_range,
                )));
            }
            carried => {
                // Inside a parent (or where that is not certain): the helper's arguments must
                // fit one of the parents it may belong to; reported only when they fit none
                // (as checked against the first), and not at all when one of them declares no
                // argument schema.
                let parents = carried.unwrap_or(declaring);
                let mut first: Option<Vec<Diag>> = None;
                for e in parents {
                    let Some(schema) = e.helper_args.get(&u.name) else {
                        return;
                    };
                    let mut found = Vec::new();
                    check_args(u, schema, &mut found);
                    if found.is_empty() {
                        return;
                    }
                    first.get_or_insert(found);
                }
                out.extend(first.unwrap_or_default());
            }
        }
        return;
    }
    if let Some(e) = p.export(&u.name) {
        if e.kind != ExportKind::Attribute {
            out.push(Diag::error(
                None,
                format!(
                    "`{}::{}` is a {} macro, not an attribute",
                    u.alias,
                    u.name,
                    e.kind.keyword()
                ),
                u.name_range,
            ));
            return;
        }
        check_args(u, &e.args, out);
        return;
    }
    // On the item of a parent under this alias that consumes helpers: an unknown helper of
    // that parent (CELL0011, in the provider macro's words), not an unknown macro.
    let parent = u.parent_attrs.iter().flatten().find_map(|(a, n)| {
        (*a == u.alias)
            .then(|| p.export(n))
            .flatten()
            .filter(|e| !e.helpers.is_empty())
    });
    if let Some(parent) = parent {
        let helpers: Vec<&str> = parent.helpers.iter().map(String::as_str).collect();
        out.push(shared_problem(cell_export::args::unknown_helper(
            &u.name,
            &parent.name,
            &helpers,
            u.name_range,
        )));
        return;
    }
    let mut names: Vec<&str> = p
        .exports
        .iter()
        .filter(|e| e.kind == ExportKind::Attribute)
        .map(|e| e.name.as_str())
        .collect();
    for e in &p.exports {
        names.extend(e.helpers.iter().map(String::as_str));
    }
    // Celldb declares its helpers as attributes too: each name once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(*n));
    let mut d = Diag::error(
        Some(ProblemCode::UnknownMacro),
        format!(
            "`{}` ({} {}) exports no attribute macro `{}`",
            u.alias, p.cell, p.version, u.name
        ),
        u.name_range,
    );
    if !d.suggest(&u.name, &names, u.name_range) {
        d.notes
            .push(format!("help: `{}` exports: {}", u.alias, names.join(", ")));
    }
    d.notes.push(RUSTC_E0433.to_owned());
    out.push(d);
}

/// Checks the arguments written in `u` against `schema` (an attribute macro's or a helper's)
/// with `cell_export::args::check_args`: the same check, codes and words as the provider's
/// macro reports through rustc.
pub(super) fn check_args(u: &AttrUse, schema: &[ArgSchema], out: &mut Vec<Diag>) {
    // An attribute left open is still being typed: its arguments are not all there yet.
    if !u.closed {
        return;
    }
    let written: Vec<WrittenArg<(usize, usize)>> = u
        .args
        .iter()
        .flatten()
        .map(|a| WrittenArg {
            name: a
                .name
                .as_ref()
                .map(|n| Spanned::new(n.clone(), a.name_range)),
            value: Spanned::new(a.value.clone(), a.value_range),
        })
        .collect();
    let kinds: Vec<cell_export::ValueKind> = schema.iter().map(|a| export_kind(&a.kind)).collect();
    let rules: Vec<ArgRule<'_>> = schema
        .iter()
        .zip(&kinds)
        .map(|(a, kind)| ArgRule {
            name: a.name.as_deref(),
            kind,
            optional: a.optional,
        })
        .collect();
    let at = Written {
        alias: &u.alias,
        name: &u.name,
        name_span: &u.name_range,
    };
    // The provider's macro runs this same check on the same tokens and reports it in its
    // expansion.
    out.extend(
        check_args_shared(&at, &written, &rules)
            .into_iter()
            .map(shared_problem)
            .map(|d| Diag {
                in_expansion: true,
                ..d
            }),
    );
}

/// A problem from `cell_export::args` (the words provider macros use) as a diagnostic.
pub(super) fn shared_problem(p: SharedProblem<(usize, usize)>) -> Diag {
    Diag {
        code: p.code,
        severity: Severity::Error,
        message: p.message,
        range: p.span,
        notes: p.notes,
        in_expansion: false,
        fix: p.fix.map(|f| DiagFix {
            title: f.title,
            replacement: f.replacement,
            range: f.span,
            file: None,
        }),
    }
}

/// CELL0011 when `u` is a helper of a parent macro on its item but written under another
/// alias (`#[G::email]` inside `#[Val::schema]`, `#[M2::label]` inside `#[M::track]` with `M`
/// and `M2` naming one provider): a parent consumes only helpers under its own alias, so the
/// provider macro reports it at the alias, and so does this, with its words. Not when a parent
/// under `u`'s own alias consumes the name.
pub(super) fn foreign_helper(aliases: &[AliasInfo<'_>], u: &AttrUse) -> Option<Diag> {
    let attrs = u.parent_attrs.as_ref()?;
    let declares = |alias: &str, parent: &str| {
        aliases
            .iter()
            .find(|a| a.name == alias)
            .and_then(|a| a.provider)
            .and_then(|p| p.export(parent))
            .is_some_and(|e| e.helpers.contains(&u.name))
    };
    if attrs.iter().any(|(a, n)| *a == u.alias && declares(a, n)) {
        return None;
    }
    let (alias, parent) = attrs
        .iter()
        .find(|(a, n)| *a != u.alias && declares(a, n))?;
    Some(shared_problem(cell_export::args::foreign_helper(
        &u.name,
        alias,
        parent,
        &u.alias,
        u.alias_range,
    )))
}

/// The index stores its own copy of a value kind (serializable for the snapshot).
pub(super) fn export_kind(kind: &ValueKind) -> cell_export::ValueKind {
    match kind {
        ValueKind::Str => cell_export::ValueKind::Str,
        ValueKind::Bool => cell_export::ValueKind::Bool,
        ValueKind::Int => cell_export::ValueKind::Int,
        ValueKind::Expr => cell_export::ValueKind::Expr,
        ValueKind::OneOf(v) => cell_export::ValueKind::OneOf(v.clone()),
    }
}
