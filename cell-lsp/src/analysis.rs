//! Editor features over one buffer and the index, as plain data with byte ranges (the server
//! converts to LSP positions, `--check` prints them): aliases in scope, completion, hover,
//! definition and diagnostics. Where an alias cannot be resolved, nothing is reported.

use std::path::{Path, PathBuf};

use cell_macro_index::{
    ArgSchema, Export, ExportKind, Index, Problem, ProblemCode, Provider, Severity, ValueKind,
    did_you_mean, version_matches,
};

use cell_export::Spanned;
use cell_export::args::{
    ArgRule, HelperPosition, Problem as SharedProblem, Written, WrittenArg,
    check_args as check_args_shared, stray_helper,
};

use crate::syntax::{AttrUse, CursorContext, Parsed};

/// CELL0015's note: the code rustc reports the same mistake with (docs/problems.md).
const RUSTC_E0433: &str = "note: rustc reports this as E0433";

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
    cell_export::args::describe_kind(&export_kind(kind), optional, default)
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
                md.push_str(&format!("\n---\n\n{}\n", shown_docs(&e.docs)));
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
            md.push_str(&format!("\n---\n\n{}\n", shown_docs(&e.docs)));
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

/// Docs as rustdoc shows them: in Rust code blocks the hidden lines (`# use …`, a lone `#`) are
/// left out and `##` shows as `#`; the block is labelled `rust` so that editors highlight it
/// (rustdoc's `no_run`, `ignore`, … are not languages).
fn shown_docs(docs: &str) -> String {
    let mut out = String::with_capacity(docs.len());
    // Inside a code block: its fence character and length, and whether it is Rust.
    let mut block: Option<(char, usize, bool)> = None;
    for line in docs.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        match block {
            None => {
                if let Some(ch) = trimmed.chars().next().filter(|c| matches!(c, '`' | '~')) {
                    let len = trimmed.chars().take_while(|&c| c == ch).count();
                    if len >= 3 {
                        let rust = is_rust_block(&trimmed[len..]);
                        block = Some((ch, len, rust));
                        if rust {
                            out.push_str(&format!("{indent}{}rust\n", &trimmed[..len]));
                            continue;
                        }
                    }
                }
            }
            Some((ch, len, rust)) => {
                let run = trimmed.chars().take_while(|&c| c == ch).count();
                if run >= len && trimmed[run..].trim().is_empty() {
                    block = None;
                } else if rust {
                    // rustdoc's rule, on the line without surrounding whitespace.
                    let code = line.trim();
                    if code == "#" || code.starts_with("# ") || code.starts_with("#\t") {
                        continue;
                    }
                    if code.starts_with("##") {
                        out.push_str(&line.replacen("##", "#", 1));
                        out.push('\n');
                        continue;
                    }
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !docs.ends_with('\n') {
        out.pop();
    }
    out
}

/// Whether rustdoc treats a code block with this info string as Rust: no info string, or any
/// of rustdoc's own attributes, or `rust`; another language alone (`text`, `sh`) is not.
fn is_rust_block(info: &str) -> bool {
    let (mut rust, mut other) = (false, false);
    for token in info
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        let known = matches!(
            token,
            "rust" | "ignore" | "should_panic" | "no_run" | "compile_fail" | "test_harness"
        ) || token.starts_with("edition")
            || token.starts_with("ignore-")
            || (token.len() == 5
                && token.starts_with('E')
                && token[1..].bytes().all(|b| b.is_ascii_digit()));
        if known {
            rust = true;
        } else {
            other = true;
        }
    }
    rust || !other
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
/// A suggested edit, as plain data (the server turns it into a code action).
#[derive(Debug, Clone, PartialEq, Eq)]
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
fn check_args(u: &AttrUse, schema: &[ArgSchema], out: &mut Vec<Diag>) {
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
    out.extend(
        check_args_shared(&at, &written, &rules)
            .into_iter()
            .map(shared_problem),
    );
}

/// A problem from `cell_export::args` (the words provider macros use) as a diagnostic.
fn shared_problem(p: SharedProblem<(usize, usize)>) -> Diag {
    Diag {
        code: p.code,
        severity: Severity::Error,
        message: p.message,
        range: p.span,
        notes: p.notes,
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
fn foreign_helper(aliases: &[AliasInfo<'_>], u: &AttrUse) -> Option<Diag> {
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
fn export_kind(kind: &ValueKind) -> cell_export::ValueKind {
    match kind {
        ValueKind::Str => cell_export::ValueKind::Str,
        ValueKind::Bool => cell_export::ValueKind::Bool,
        ValueKind::Int => cell_export::ValueKind::Int,
        ValueKind::Expr => cell_export::ValueKind::Expr,
        ValueKind::OneOf(v) => cell_export::ValueKind::OneOf(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::shown_docs;

    #[test]
    fn hover_docs_leave_out_rustdoc_hidden_lines() {
        let docs = "Stores it.\n\n```\n# use kv::persist;\n#\n#[persist]\n##[x]\n  # fn f() {}\nstruct T;\n```\n";
        assert_eq!(
            shown_docs(docs),
            "Stores it.\n\n```rust\n#[persist]\n#[x]\nstruct T;\n```\n"
        );
        // rustdoc's attributes are Rust too; other languages are left as written.
        let docs = "```no_run\n# hidden\nshown();\n```\n```sh\n# a shell comment\n```";
        assert_eq!(
            shown_docs(docs),
            "```rust\nshown();\n```\n```sh\n# a shell comment\n```"
        );
        // Outside code blocks a `# ` line is a heading, and an unclosed block ends the docs.
        assert_eq!(
            shown_docs("# Examples\n~~~\n# x\ny"),
            "# Examples\n~~~rust\ny"
        );
        assert_eq!(shown_docs(""), "");
    }
}
