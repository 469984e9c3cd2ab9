//! Editor features over one buffer and the index, as plain data with byte ranges (the server
//! converts to LSP positions, `--check` prints them): aliases in scope, completion, hover,
//! definition and diagnostics. Where an alias cannot be resolved, nothing is reported.

use std::path::{Path, PathBuf};

use cell_macro_index::{
    ArgSchema, Export, ExportKind, Index, Problem, ProblemCode, Provider, Severity, ValueKind,
    did_you_mean, version_matches,
};

use crate::syntax::{AttrUse, CursorContext, Parsed};

/// An alias usable in a file and what it resolves to.
pub(crate) struct AliasInfo<'a> {
    pub(crate) name: String,
    pub(crate) provider: Option<&'a Provider>,
    /// The call's range, when it is in this buffer.
    pub(crate) call: Option<(usize, usize)>,
    pub(crate) extern_crate: Option<String>,
}

/// The aliases of `file`: `cell_remote!` calls in the buffer, plus those at the top level of
/// the crate root (`src/lib.rs`/`src/main.rs`) of the same package, resolved against the
/// package's dependencies in the index.
pub(crate) fn aliases<'a>(index: &'a Index, file: &Path, parsed: &Parsed) -> Vec<AliasInfo<'a>> {
    let Some(member) = index.member_for_file(file) else {
        return Vec::new();
    };
    let usable = index.providers_for(&member.id);
    let mut out: Vec<AliasInfo<'a>> = Vec::new();
    // Names whose meaning depends on where in the buffer they are used (a call in a module or
    // a body, or one name defined twice): which provider a use sees is not known here, so
    // nothing is said about them.
    let calls = parsed.remote_calls();
    let mut unsure: Vec<String> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let twice = calls[..i].iter().any(|c| c.alias == call.alias);
        let nested_root = call.nested
            && index
                .consumers
                .iter()
                .filter(|c| c.package_id == member.id)
                .flat_map(|c| &c.aliases)
                .any(|a| a.name == call.alias && a.span.file != file);
        if twice || nested_root {
            unsure.push(call.alias.clone());
        }
    }
    for call in calls {
        if out.iter().any(|a| a.name == call.alias) {
            continue;
        }
        let matching: Vec<&&Provider> = usable
            .iter()
            .filter(|p| p.cell == call.cell)
            .filter(|p| {
                call.version
                    .as_deref()
                    .is_none_or(|q| version_matches(&p.version, q))
            })
            .collect();
        let provider = match matching.as_slice() {
            [one] if !unsure.contains(&call.alias) => Some(**one),
            _ => None,
        };
        let extern_crate = provider.and_then(|p| {
            member
                .deps
                .iter()
                .find(|d| d.package_id == p.package_id)
                .map(|d| d.extern_crate.clone())
        });
        out.push(AliasInfo {
            name: call.alias,
            provider,
            call: Some(call.range),
            extern_crate,
        });
    }
    if let Some(consumer) = index.consumers.iter().find(|c| c.package_id == member.id) {
        for alias in &consumer.aliases {
            // A crate root (a target's root file) reaches the files under its directory.
            let root = (member.target_roots.contains(&alias.span.file)
                || member.lib_path.as_ref() == Some(&alias.span.file))
                && alias
                    .span
                    .file
                    .parent()
                    .is_some_and(|d| file.starts_with(d));
            if alias.span.file == file || !root || !alias.module.is_empty() {
                continue;
            }
            if out.iter().any(|a| a.name == alias.name) {
                continue;
            }
            out.push(AliasInfo {
                name: alias.name.clone(),
                provider: index.provider_of(alias),
                call: None,
                extern_crate: alias.resolved.as_ref().map(|r| r.extern_crate.clone()),
            });
        }
    }
    out
}

/// What a completion item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    Macro(ExportKind),
    Helper,
    Argument,
    Value,
    Cell,
    Api,
}

/// A completion item.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) label: String,
    pub(crate) kind: ItemKind,
    pub(crate) detail: String,
    pub(crate) docs: String,
    pub(crate) insert: String,
    pub(crate) replace: (usize, usize),
}

/// Completion at byte `offset`.
pub(crate) fn complete(index: &Index, file: &Path, parsed: &Parsed, offset: usize) -> Vec<Item> {
    let Some(ctx) = parsed.cursor_context(offset) else {
        return Vec::new();
    };
    let aliases = aliases(index, file, parsed);
    let provider_of = |alias: &str| {
        aliases
            .iter()
            .find(|a| a.name == alias)
            .and_then(|a| a.provider)
    };
    let mut items = Vec::new();
    match ctx {
        CursorContext::AttrName {
            alias,
            prefix,
            replace,
            parent_attrs,
        } => {
            let Some(p) = provider_of(&alias) else {
                return items;
            };
            // On a field of a struct carrying this alias's macro: its helpers first.
            for (palias, pname) in parent_attrs.iter().flatten() {
                if *palias != alias {
                    continue;
                }
                if let Some(parent) = p.export(pname) {
                    for h in &parent.helpers {
                        items.push(Item {
                            label: h.clone(),
                            kind: ItemKind::Helper,
                            detail: format!(
                                "{}helper of #[{alias}::{pname}] — {} {}",
                                helper_signature(parent, h),
                                p.cell,
                                p.version
                            ),
                            docs: String::new(),
                            insert: h.clone(),
                            replace,
                        });
                    }
                }
            }
            // Attributes that are some macro's helpers (celldb declares `key` as an attribute
            // only so that one used alone gets its error) are offered as helpers above, on a
            // field of their parent, and nowhere else: elsewhere they would only be noise.
            let helper_names: Vec<&str> = p
                .exports
                .iter()
                .flat_map(|e| e.helpers.iter().map(String::as_str))
                .collect();
            for e in p.exports.iter().filter(|e| {
                e.kind == ExportKind::Attribute && !helper_names.contains(&e.name.as_str())
            }) {
                items.push(Item {
                    label: e.name.clone(),
                    kind: ItemKind::Macro(e.kind),
                    detail: format!("{} {}", p.cell, p.version),
                    docs: e.docs.clone(),
                    insert: e.name.clone(),
                    replace,
                });
            }
            items.retain(|i| i.label.starts_with(&prefix));
        }
        CursorContext::FieldAttrStart {
            prefix,
            replace,
            parent_attrs,
        } => {
            for (palias, pname) in &parent_attrs {
                let Some(p) = provider_of(palias) else {
                    continue;
                };
                let Some(parent) = p.export(pname) else {
                    continue;
                };
                for h in &parent.helpers {
                    let label = format!("{palias}::{h}");
                    if label.starts_with(&prefix) {
                        items.push(Item {
                            insert: label.clone(),
                            label,
                            kind: ItemKind::Helper,
                            detail: format!(
                                "helper of #[{palias}::{pname}] — {} {}",
                                p.cell, p.version
                            ),
                            docs: String::new(),
                            replace,
                        });
                    }
                }
            }
        }
        CursorContext::AttrArgs {
            alias,
            name,
            written,
            value_of,
            prefix,
            replace,
        } => {
            let Some(p) = provider_of(&alias) else {
                return items;
            };
            let Some(schema) = args_of(p, &name) else {
                return items;
            };
            match value_of {
                None => {
                    for a in schema {
                        let Some(n) = &a.name else { continue };
                        if written.contains(n) || !n.starts_with(&prefix) {
                            continue;
                        }
                        items.push(Item {
                            label: n.clone(),
                            kind: ItemKind::Argument,
                            detail: describe_kind(&a.kind, a.optional, a.default.as_deref()),
                            docs: String::new(),
                            insert: format!("{n} = "),
                            replace,
                        });
                    }
                }
                Some(arg) => {
                    let Some(a) = schema.iter().find(|a| a.name.as_deref() == Some(&arg)) else {
                        return items;
                    };
                    let values: Vec<(String, String)> = match &a.kind {
                        ValueKind::OneOf(v) => {
                            v.iter().map(|s| (s.clone(), format!("\"{s}\""))).collect()
                        }
                        ValueKind::Bool => vec![
                            ("true".into(), "true".into()),
                            ("false".into(), "false".into()),
                        ],
                        _ => Vec::new(),
                    };
                    // The replace range covers the opening quote when one was typed.
                    let quoted = parsed
                        .text()
                        .get(..replace.0)
                        .is_some_and(|t| t.ends_with('"'));
                    for (label, insert) in values {
                        if !label.starts_with(&prefix) {
                            continue;
                        }
                        let is_default = a.default.as_deref() == Some(label.as_str());
                        items.push(Item {
                            detail: if is_default {
                                "default".into()
                            } else {
                                String::new()
                            },
                            kind: ItemKind::Value,
                            docs: String::new(),
                            insert: if quoted {
                                insert.trim_start_matches('"').to_owned()
                            } else {
                                insert
                            },
                            replace,
                            label,
                        });
                    }
                }
            }
        }
        CursorContext::AliasPath {
            alias,
            prefix,
            replace,
        } => {
            let Some(p) = provider_of(&alias) else {
                return items;
            };
            for e in p.exports.iter().filter(|e| e.kind == ExportKind::Function) {
                if e.name.starts_with(&prefix) {
                    items.push(Item {
                        label: format!("{}!", e.name),
                        kind: ItemKind::Macro(e.kind),
                        detail: format!("{} {}", p.cell, p.version),
                        docs: e.docs.clone(),
                        insert: format!("{}!", e.name),
                        replace,
                    });
                }
            }
            for a in p.api.iter().filter(|a| a.starts_with(&prefix)) {
                items.push(Item {
                    label: a.clone(),
                    kind: ItemKind::Api,
                    detail: format!("{} {} API", p.cell, p.version),
                    docs: String::new(),
                    insert: a.clone(),
                    replace,
                });
            }
        }
        CursorContext::DeriveName {
            alias,
            prefix,
            replace,
        } => {
            let Some(p) = provider_of(&alias) else {
                return items;
            };
            for e in p.exports.iter().filter(|e| e.kind == ExportKind::Derive) {
                if e.name.starts_with(&prefix) {
                    items.push(Item {
                        label: e.name.clone(),
                        kind: ItemKind::Macro(e.kind),
                        detail: format!("derive — {} {}", p.cell, p.version),
                        docs: e.docs.clone(),
                        insert: e.name.clone(),
                        replace,
                    });
                }
            }
        }
        CursorContext::RemoteCell { prefix, replace } => {
            let Some(member) = index.member_for_file(file) else {
                return items;
            };
            let usable = index.providers_for(&member.id);
            for p in &usable {
                let several = usable.iter().filter(|q| q.cell == p.cell).count() > 1;
                let label = if several {
                    format!("{}@{}", p.cell, p.version)
                } else {
                    p.cell.clone()
                };
                if !label.starts_with(&prefix) {
                    continue;
                }
                let exports: Vec<&str> = p.exports.iter().map(|e| e.name.as_str()).collect();
                items.push(Item {
                    insert: label.clone(),
                    label,
                    kind: ItemKind::Cell,
                    detail: format!("{} {}", p.package, p.version),
                    docs: format!("exports: {}", exports.join(", ")),
                    replace,
                });
            }
        }
    }
    items
}

/// The argument schema of `name` used as an attribute under `p`: a helper's declared arguments
/// (of the first parent declaring them), else the attribute macro's own. `None` when nothing is
/// declared: then nothing is offered.
fn args_of<'a>(p: &'a Provider, name: &str) -> Option<&'a [ArgSchema]> {
    p.exports
        .iter()
        .find_map(|e| e.helper_args.get(name).map(Vec::as_slice))
        .or_else(|| {
            p.export(name)
                .filter(|e| e.kind == ExportKind::Attribute)
                .map(|e| e.args.as_slice())
        })
}

/// `range(_: expr) — ` for a helper that declares arguments, else empty.
fn helper_signature(parent: &Export, helper: &str) -> String {
    match parent.helper_args.get(helper) {
        Some(args) => format!("{helper}({}) — ", signature(args)),
        None => String::new(),
    }
}

/// `min: int?, max: int?`.
fn signature(args: &[ArgSchema]) -> String {
    args.iter()
        .map(|a| {
            format!(
                "{}: {}",
                a.name.as_deref().unwrap_or("_"),
                describe_kind(&a.kind, a.optional, a.default.as_deref())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_kind(kind: &ValueKind, optional: bool, default: Option<&str>) -> String {
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

/// Hover markdown and the hovered range.
pub(crate) fn hover(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    offset: usize,
) -> Option<(String, (usize, usize))> {
    let aliases = aliases(index, file, parsed);
    if let Some(u) = parsed.attr_use_at(offset) {
        let alias = aliases.iter().find(|a| a.name == u.alias)?;
        let p = alias.provider?;
        if let Some(e) = p.export(&u.name) {
            let mut md = format!(
                "```rust\n#[{}::{}]\n```\n{} macro from **{}** {} ({})\n",
                u.alias,
                e.name,
                e.kind.keyword(),
                p.cell,
                p.version,
                source_word(p)
            );
            if !e.docs.is_empty() {
                md.push_str(&format!("\n---\n\n{}\n", e.docs));
            }
            if !e.args.is_empty() {
                md.push_str("\n**Arguments**\n\n");
                for a in &e.args {
                    md.push_str(&format!(
                        "- `{}`: {}\n",
                        a.name.as_deref().unwrap_or("_"),
                        describe_kind(&a.kind, a.optional, a.default.as_deref())
                    ));
                }
            }
            if !e.helpers.is_empty() {
                md.push_str(&format!(
                    "\n**Helpers**: {}\n",
                    e.helpers
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(d) = &e.definition {
                md.push_str(&format!("\nsource: `{}:{}`\n", d.file.display(), d.line));
            }
            return Some((md, u.name_range));
        }
        if let Some(parent) = p.exports.iter().find(|e| e.helpers.contains(&u.name)) {
            let mut md = format!(
                "```rust\n#[{}::{}]\n```\nhelper attribute of `#[{}::{}]` from **{}** {}\n",
                u.alias, u.name, u.alias, parent.name, p.cell, p.version
            );
            if let Some(args) = parent.helper_args.get(&u.name) {
                md.push_str("\n**Arguments**\n\n");
                for a in args {
                    md.push_str(&format!(
                        "- `{}`: {}\n",
                        a.name.as_deref().unwrap_or("_"),
                        describe_kind(&a.kind, a.optional, a.default.as_deref())
                    ));
                }
            }
            return Some((md, u.name_range));
        }
        return None;
    }
    if let Some(d) = parsed.derive_use_at(offset) {
        let p = aliases.iter().find(|a| a.name == d.alias)?.provider?;
        let e = p.export(&d.name).filter(|e| e.kind == ExportKind::Derive)?;
        let mut md = format!(
            "```rust\n#[derive({}::{})]\n```\nderive macro from **{}** {} ({})\n",
            d.alias,
            e.name,
            p.cell,
            p.version,
            source_word(p)
        );
        if !e.docs.is_empty() {
            md.push_str(&format!("\n---\n\n{}\n", e.docs));
        }
        if let Some(def) = &e.definition {
            md.push_str(&format!(
                "\nsource: `{}:{}`\n",
                def.file.display(),
                def.line
            ));
        }
        return Some((md, d.name_range));
    }
    for call in parsed.remote_calls() {
        if offset < call.range.0 || offset > call.range.1 {
            continue;
        }
        let alias = aliases.iter().find(|a| a.call == Some(call.range))?;
        let p = alias.provider?;
        let exports: Vec<String> = p
            .exports
            .iter()
            .map(|e| format!("`{}` ({})", e.name, e.kind.keyword()))
            .chain(p.api.iter().map(|a| format!("`{a}`")))
            .collect();
        let md = format!(
            "`{}` → **{}** {} ({}) as `::{}`\n\nexports: {}\n",
            alias.name,
            p.cell,
            p.version,
            source_word(p),
            alias
                .extern_crate
                .as_deref()
                .unwrap_or(&p.package.replace('-', "_")),
            exports.join(", ")
        );
        return Some((md, call.range));
    }
    None
}

fn source_word(p: &Provider) -> String {
    match p.source {
        cell_macro_index::SourceKind::Workspace => "workspace".into(),
        cell_macro_index::SourceKind::Path => format!(
            "path: {}",
            p.manifest_path
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ),
        cell_macro_index::SourceKind::Registry => "registry".into(),
        cell_macro_index::SourceKind::Git => "git".into(),
    }
}

/// The definition of the macro (or a helper's parent macro) under `offset`: file and byte range.
pub(crate) fn definition(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    offset: usize,
) -> Option<(PathBuf, (usize, usize))> {
    let aliases = aliases(index, file, parsed);
    let e = if let Some(d) = parsed.derive_use_at(offset) {
        let p = aliases.iter().find(|a| a.name == d.alias)?.provider?;
        p.export(&d.name).filter(|e| e.kind == ExportKind::Derive)?
    } else {
        let u = parsed
            .attr_use_at(offset)
            .filter(|u| offset >= u.name_range.0 && offset <= u.name_range.1)?;
        let p = aliases.iter().find(|a| a.name == u.alias)?.provider?;
        p.export(&u.name)
            .or_else(|| p.exports.iter().find(|e| e.helpers.contains(&u.name)))?
    };
    let d = e.definition.as_ref()?;
    Some((d.file.clone(), (d.start, d.end)))
}

/// A suggested edit: (title, replacement, byte range, the file to edit when it is not the
/// diagnostic's own — `Cargo.toml` for "add the dependency").
pub(crate) type DiagFix = (String, String, (usize, usize), Option<PathBuf>);

/// A diagnostic over a buffer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Diag {
    pub(crate) code: Option<ProblemCode>,
    pub(crate) severity: Severity,
    pub(crate) message: String,
    pub(crate) range: (usize, usize),
    pub(crate) notes: Vec<String>,
    /// (title, replacement, range)
    /// A suggested edit, where there is one.
    pub(crate) fix: Option<DiagFix>,
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
        self.fix = Some((
            format!("replace with `{best}`"),
            best.to_owned(),
            range,
            None,
        ));
        true
    }
}

/// Diagnostics for a buffer: the index's problems in this file (only while the buffer equals
/// the file on disk, so their spans are right) plus macro uses checked against the schemas.
pub(crate) fn diagnostics(index: &Index, file: &Path, parsed: &Parsed, text: &str) -> Vec<Diag> {
    let mut out = Vec::new();
    let on_disk = std::fs::read_to_string(file).ok();
    if on_disk.as_deref() == Some(text) {
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
        let Some(alias) = aliases.iter().find(|a| a.name == u.alias) else {
            continue;
        };
        let Some(p) = alias.provider else { continue };
        if u.name.is_empty() {
            continue;
        }
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
            None,
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
        fix: p.fix.as_ref().map(|f| {
            let elsewhere = p.span.as_ref().is_none_or(|s| s.file != f.span.file);
            (
                f.title.clone(),
                f.replacement.clone(),
                (f.span.start, f.span.end),
                elsewhere.then(|| f.span.file.clone()),
            )
        }),
    }
}

fn check_use(p: &Provider, u: &AttrUse, out: &mut Vec<Diag>) {
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
                out.push(Diag::error(
                    Some(ProblemCode::ForeignHelper),
                    format!(
                        "`#[{}::{}]` is a helper of {} and only works on a field of a struct marked with it",
                        u.alias,
                        u.name,
                        names.join(" or ")
                    ),
                    u.name_range,
                ));
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
    let mut names: Vec<&str> = p
        .exports
        .iter()
        .filter(|e| e.kind == ExportKind::Attribute)
        .map(|e| e.name.as_str())
        .collect();
    for e in &p.exports {
        names.extend(e.helpers.iter().map(String::as_str));
    }
    let mut d = Diag::error(
        None,
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
    out.push(d);
}

/// Checks the arguments written in `u` against `schema` (an attribute macro's or a helper's):
/// unknown names (with "did you mean"), values of the wrong kind, positional arguments where
/// none or fewer are declared, missing required ones. CELL0014 each, at the user's token.
fn check_args(u: &AttrUse, schema: &[ArgSchema], out: &mut Vec<Diag>) {
    let written = u.args.clone().unwrap_or_default();
    let names: Vec<&str> = schema.iter().filter_map(|a| a.name.as_deref()).collect();
    let positional: Vec<&ArgSchema> = schema.iter().filter(|a| a.name.is_none()).collect();
    let invalid = |message: String, range: (usize, usize)| {
        Diag::error(Some(ProblemCode::InvalidMacroArgument), message, range)
    };
    let mut positional_seen = 0;
    for arg in &written {
        let (kind, label) = match &arg.name {
            None => {
                let Some(p) = positional.get(positional_seen) else {
                    let mut d = invalid(
                        format!(
                            "`#[{}::{}]` takes {} positional argument{}",
                            u.alias,
                            u.name,
                            if positional.is_empty() {
                                "no".to_owned()
                            } else {
                                positional.len().to_string()
                            },
                            if positional.len() == 1 { "" } else { "s" }
                        ),
                        arg.value_range,
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
                (&p.kind, "the positional argument".to_owned())
            }
            Some(name) => {
                let Some(a) = schema.iter().find(|a| a.name.as_deref() == Some(name)) else {
                    let mut d = invalid(
                        format!("`#[{}::{}]` has no argument `{name}`", u.alias, u.name),
                        arg.name_range,
                    );
                    if !d.suggest(name, &names, arg.name_range) {
                        d.notes.push(if names.is_empty() {
                            format!(
                                "help: `#[{}::{}]` takes no named arguments",
                                u.alias, u.name
                            )
                        } else {
                            format!("help: arguments: {}", names.join(", "))
                        });
                    }
                    out.push(d);
                    continue;
                };
                (&a.kind, format!("`{name}`"))
            }
        };
        let v = arg.value.as_str();
        // A value holding a quote that `unquote` cannot read (a byte string, `concat!(…)`) may
        // still be what the macro accepts: say nothing about it.
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
        if !ok && !v.is_empty() {
            let expected = describe_kind(kind, false, None);
            let mut d = invalid(
                format!("invalid value {v} for {label}: expected {expected}"),
                arg.value_range,
            );
            if let ValueKind::OneOf(values) = kind {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                if let Some(best) = did_you_mean(v.trim_matches('"'), &refs) {
                    d.notes.push(format!("help: did you mean \"{best}\"?"));
                    d.fix = Some((
                        format!("replace with \"{best}\""),
                        format!("\"{best}\""),
                        arg.value_range,
                        None,
                    ));
                }
            }
            out.push(d);
        }
    }
    for a in schema {
        let missing = match &a.name {
            Some(n) => !a.optional && !written.iter().any(|w| w.name.as_deref() == Some(n)),
            None => false,
        };
        if missing {
            let n = a.name.as_deref().unwrap_or("_");
            out.push(invalid(
                format!("`#[{}::{}]` needs the argument `{n}`", u.alias, u.name),
                u.name_range,
            ));
        }
    }
    let required_positional = positional.iter().filter(|a| !a.optional).count();
    if positional_seen < required_positional {
        out.push(invalid(
            format!(
                "`#[{}::{}]` needs a positional argument ({})",
                u.alias,
                u.name,
                positional
                    .iter()
                    .map(|a| describe_kind(&a.kind, false, None))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            u.name_range,
        ));
    }
}

/// The value of a plain or raw string literal (`"a\"b"`, `r"a"`, `r#"a"#`), escapes resolved;
/// `None` when `v` is not one or holds an escape this does not read.
fn unquote(v: &str) -> Option<String> {
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
fn is_int_literal(v: &str) -> bool {
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
    use super::{is_int_literal, unquote};

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
}
