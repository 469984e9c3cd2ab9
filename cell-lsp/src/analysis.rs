//! Editor features over one buffer and the index, as plain data with byte ranges — no LSP type
//! here (`server.rs` alone converts to LSP positions and types, `--check` prints rustc-style):
//! aliases in scope (this file), and one module per feature: [`completion`],
//! [`hover`](mod@hover), [`definition`](mod@definition), [`diagnostics`](mod@diagnostics).
//! Where an alias cannot be resolved, nothing is reported.

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

mod completion;
mod definition;
mod diagnostics;
mod hover;
#[cfg(test)]
mod tests;

pub(crate) use completion::{ItemKind, complete};
pub(crate) use definition::definition;
use diagnostics::export_kind;
pub(crate) use diagnostics::{Diag, diagnostics, diagnostics_of_file, from_problem};
pub(crate) use hover::hover;

/// Who else answers in the editor. Alone, cell-lsp offers and reports everything it knows.
/// Beside rust-analyzer (the client says so in `initializationOptions.rustAnalyzer`), it leaves
/// out what rust-analyzer gives by itself, so that each item appears once: the names that
/// resolve as items of the alias's module (macro names after `#[Alias::`, derives, function
/// macros and API items after `Alias::`, and hover on those in code), and the argument errors
/// a provider macro reports in its own expansion (which rust-analyzer shows at the same token).
/// What only cell-lsp knows stays: argument names and values, helpers that are not items,
/// hover on attribute macros and helpers, unknown helpers and macros, cell names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Companion {
    /// No other server: everything.
    #[default]
    Alone,
    /// rust-analyzer runs beside cell-lsp on the same files.
    RustAnalyzer,
}

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
