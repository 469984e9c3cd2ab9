//! Editor features over one buffer and the index, as plain data with byte ranges (the server
//! converts to LSP positions, `--check` prints them): aliases in scope, completion, hover,
//! definition and diagnostics. Where an alias cannot be resolved, nothing is reported.

use std::path::{Path, PathBuf};

use cell_macro_index::{
    ExportKind, Index, Problem, ProblemCode, Provider, Severity, ValueKind, did_you_mean,
    version_matches,
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
    for call in parsed.remote_calls() {
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
            [one] => Some(**one),
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
                                "helper of #[{alias}::{pname}] — {} {}",
                                p.cell, p.version
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
            let Some(e) = p.export(&name) else {
                return items;
            };
            match value_of {
                None => {
                    for a in &e.args {
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
                    let Some(a) = e.args.iter().find(|a| a.name.as_deref() == Some(&arg)) else {
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
            return Some((
                format!(
                    "```rust\n#[{}::{}]\n```\nhelper attribute of `#[{}::{}]` from **{}** {}\n",
                    u.alias, u.name, u.alias, parent.name, p.cell, p.version
                ),
                u.name_range,
            ));
        }
        return None;
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
    let u = parsed
        .attr_use_at(offset)
        .filter(|u| offset >= u.name_range.0 && offset <= u.name_range.1)?;
    let p = aliases.iter().find(|a| a.name == u.alias)?.provider?;
    let e = p
        .export(&u.name)
        .or_else(|| p.exports.iter().find(|e| e.helpers.contains(&u.name)))?;
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
    if let Some(parent) = p.exports.iter().find(|e| e.helpers.contains(&u.name)) {
        // Only where the position is certain: on a field whose item lacks the parent macro,
        // or directly on an item. Elsewhere (an enum variant, a half-typed spot) say nothing.
        let outside = u.parent_attrs.as_ref().is_some_and(|attrs| {
            !attrs
                .iter()
                .any(|(a, n)| *a == u.alias && *n == parent.name)
        });
        if outside {
            out.push(Diag {
                code: Some(ProblemCode::ForeignHelper),
                severity: Severity::Error,
                message: format!(
                    "`#[{}::{}]` is a helper of `#[{}::{}]` and only works on a field of a struct marked with it",
                    u.alias, u.name, u.alias, parent.name
                ),
                range: u.name_range,
                notes: Vec::new(),
                fix: None,
            });
        }
        return;
    }
    if let Some(e) = p.export(&u.name) {
        if e.kind != ExportKind::Attribute {
            out.push(Diag {
                code: None,
                severity: Severity::Error,
                message: format!(
                    "`{}::{}` is a {} macro, not an attribute",
                    u.alias,
                    u.name,
                    e.kind.keyword()
                ),
                range: u.name_range,
                notes: Vec::new(),
                fix: None,
            });
            return;
        }
        check_args(u, e, out);
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
    let mut d = Diag {
        code: None,
        severity: Severity::Error,
        message: format!(
            "`{}` ({} {}) exports no attribute macro `{}`",
            u.alias, p.cell, p.version, u.name
        ),
        range: u.name_range,
        notes: Vec::new(),
        fix: None,
    };
    if let Some(best) = did_you_mean(&u.name, &names) {
        d.notes.push(format!("help: did you mean `{best}`?"));
        d.fix = Some((
            format!("replace with `{best}`"),
            best.to_owned(),
            u.name_range,
            None,
        ));
    } else {
        d.notes
            .push(format!("help: `{}` exports: {}", u.alias, names.join(", ")));
    }
    out.push(d);
}

fn check_args(u: &AttrUse, e: &cell_macro_index::Export, out: &mut Vec<Diag>) {
    let written = u.args.clone().unwrap_or_default();
    let names: Vec<&str> = e.args.iter().filter_map(|a| a.name.as_deref()).collect();
    for arg in &written {
        let Some(name) = &arg.name else { continue };
        let Some(schema) = e.args.iter().find(|a| a.name.as_deref() == Some(name)) else {
            let mut d = Diag {
                code: Some(ProblemCode::InvalidMacroArgument),
                severity: Severity::Error,
                message: format!("`#[{}::{}]` has no argument `{name}`", u.alias, u.name),
                range: arg.name_range,
                notes: Vec::new(),
                fix: None,
            };
            if let Some(best) = did_you_mean(name, &names) {
                d.notes.push(format!("help: did you mean `{best}`?"));
                d.fix = Some((
                    format!("replace with `{best}`"),
                    best.to_owned(),
                    arg.name_range,
                    None,
                ));
            } else if !names.is_empty() {
                d.notes
                    .push(format!("help: arguments: {}", names.join(", ")));
            }
            out.push(d);
            continue;
        };
        let v = arg.value.as_str();
        let ok = match &schema.kind {
            ValueKind::Str => v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
            ValueKind::Bool => v == "true" || v == "false",
            ValueKind::Int => v.parse::<i128>().is_ok(),
            ValueKind::Expr => !v.is_empty(),
            ValueKind::OneOf(values) => values.iter().any(|x| format!("\"{x}\"") == v),
        };
        if !ok && !v.is_empty() {
            let expected = describe_kind(&schema.kind, false, None);
            let mut d = Diag {
                code: Some(ProblemCode::InvalidMacroArgument),
                severity: Severity::Error,
                message: format!("invalid value {v} for `{name}`: expected {expected}"),
                range: arg.value_range,
                notes: Vec::new(),
                fix: None,
            };
            if let ValueKind::OneOf(values) = &schema.kind {
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
    for a in &e.args {
        let Some(n) = &a.name else { continue };
        if !a.optional && !written.iter().any(|w| w.name.as_deref() == Some(n)) {
            out.push(Diag {
                code: Some(ProblemCode::InvalidMacroArgument),
                severity: Severity::Error,
                message: format!("`#[{}::{}]` needs the argument `{n}`", u.alias, u.name),
                range: u.name_range,
                notes: Vec::new(),
                fix: None,
            });
        }
    }
}
