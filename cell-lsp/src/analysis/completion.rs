//! Completion: macro names after `Alias::`, helpers on the items their parent marks (fields,
//! parameters, variants, methods), argument names and values, cells in `cell_remote!`.

use super::*;

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
    /// A real item of the alias's module (a macro, an API item, a helper the provider also
    /// exports as an attribute), which rust-analyzer completes by name resolution.
    pub(crate) resolvable: bool,
}

/// Completion at byte `offset`; beside rust-analyzer, without what it offers itself.
pub(crate) fn complete(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    offset: usize,
    companion: Companion,
) -> Vec<Item> {
    let mut items = complete_all(index, file, parsed, offset);
    if companion == Companion::RustAnalyzer {
        items.retain(|i| !i.resolvable);
    }
    items
}

/// Every completion cell-lsp knows at byte `offset`.
fn complete_all(index: &Index, file: &Path, parsed: &Parsed, offset: usize) -> Vec<Item> {
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
                            resolvable: p.export(h).is_some(),
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
                    docs: super::hover::shown_docs(&e.docs),
                    insert: e.name.clone(),
                    replace,
                    resolvable: true,
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
                            resolvable: false,
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
                            resolvable: false,
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
                            resolvable: false,
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
                        docs: super::hover::shown_docs(&e.docs),
                        insert: format!("{}!", e.name),
                        replace,
                        resolvable: true,
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
                    resolvable: true,
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
                        docs: super::hover::shown_docs(&e.docs),
                        insert: e.name.clone(),
                        replace,
                        resolvable: true,
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
                    resolvable: false,
                });
            }
        }
    }
    items
}
