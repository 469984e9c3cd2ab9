//! `cell-lsp --check [PATH]`: the editor's diagnostics over a whole workspace, for CI.
//! Human output is rustc-style (annotate-snippets); `--message-format json` prints one
//! cargo-compatible `compiler-message` per finding (so rust-analyzer's
//! `check.overrideCommand` can show them) and a final `build-finished`.
//! Exit codes: 0 no errors (warnings allowed), 1 at least one error, 2 usage or I/O error, or
//! an incomplete check: when cargo cannot resolve the dependency graph (a cold registry cache,
//! a dependency that exists nowhere) the index is degraded, no alias can be judged, and the
//! check fails with 2 rather than pass — `--check` never exits 0 unless it read everything.
//! Consumer files are read with rust-analyzer's error-tolerant parser, as in the editor: a
//! syntax error is an error at its span, and every other problem of the file is still reported.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use annotate_snippets::{Level, Renderer, Snippet};
use anyhow::Context;
use cell_macro_index::{Index, IndexOptions, Severity};
use serde_json::json;

use crate::analysis::{self, Diag};
use crate::lines::LineIndex;
use crate::syntax::Parsed;

mod cache;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MessageFormat {
    /// rustc-style text.
    Human,
    /// cargo-compatible JSON lines.
    Json,
}

/// One finding with its file.
struct Finding {
    file: PathBuf,
    package_id: Option<String>,
    diag: Diag,
}

/// Runs the check; returns the exit code.
pub(crate) fn run(path: &Path, format: MessageFormat, out: &mut dyn Write) -> anyhow::Result<i32> {
    let manifest = manifest_of(path)?;
    let options = IndexOptions::new(&manifest);
    let mut index = cell_macro_index::load_or_build(&options)?;
    // Beside the snapshot, named after the index's canonical manifest path: `--check .` and
    // `--check /abs/path` share one.
    let cache_file = cell_macro_index::snapshot::workspace_file(
        &options.snapshot_target_dir(),
        &index.manifest_path,
        "check",
        "json",
    );
    let mut cache = cache::FindingsCache::open(cache_file, &mut index);
    let (findings, unreadable) = collect(&index, &mut cache);
    tracing::debug!(
        "findings cache: {} file(s) served, {} checked",
        cache.hits,
        cache.misses
    );
    // Only a check that read everything is remembered (see `cache`).
    if unreadable.is_empty()
        && !index.status.is_degraded()
        && let Err(e) = cache.save()
    {
        tracing::warn!("cannot save the findings cache: {e}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.diag.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    for f in &findings {
        let text = std::fs::read_to_string(&f.file).unwrap_or_default();
        let rendered = render(&index.workspace_root, f, &text);
        match format {
            MessageFormat::Human => writeln!(out, "{rendered}")?,
            MessageFormat::Json => writeln!(out, "{}", to_json(&index, f, &text, &rendered))?,
        }
    }
    if let Some(cause) = incomplete(&index, &manifest, &unreadable) {
        match format {
            MessageFormat::Human => writeln!(
                out,
                "cell-lsp: incomplete check, {errors} error(s) and {warnings} warning(s) in \
                 what could be read"
            )?,
            MessageFormat::Json => writeln!(
                out,
                "{}",
                json!({ "reason": "build-finished", "success": false })
            )?,
        }
        anyhow::bail!("incomplete check: {cause}");
    }
    match format {
        MessageFormat::Human => {
            if findings.is_empty() {
                writeln!(out, "cell-lsp: no problems")?;
            } else {
                writeln!(out, "cell-lsp: {errors} error(s), {warnings} warning(s)")?;
            }
        }
        MessageFormat::Json => {
            writeln!(
                out,
                "{}",
                json!({ "reason": "build-finished", "success": errors == 0 })
            )?;
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

/// Why the check did not read everything it needed (`None`: it did): files it could not read,
/// or a dependency graph cargo could not resolve.
fn incomplete(index: &Index, manifest: &Path, unreadable: &[String]) -> Option<String> {
    if !unreadable.is_empty() {
        return Some(format!(
            "cannot read {} source file(s) of the workspace:\n{}",
            unreadable.len(),
            unreadable.join("\n")
        ));
    }
    let reason = index.status.reason()?;
    Some(format!(
        "cargo could not resolve the dependency graph of {}, so no provider outside the \
         workspace is known and no `cell_remote!` alias was checked\n\
         cause: {}\n\
         help: run `cargo fetch` (it needs the network) or fix the dependency, then check again",
        manifest.display(),
        reason.trim_end()
    ))
}

/// The manifest `path` names (a directory's `Cargo.toml`, or `path` itself). Only a path that
/// does not exist is "no Cargo.toml": any other failure (a permission denied, a path component
/// that is a file, a symlink loop) is named as the operating system reports it.
fn manifest_of(path: &Path) -> anyhow::Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no Cargo.toml at {}: the path does not exist",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let manifest = if meta.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_path_buf()
    };
    // Opening, not only `metadata`: a file may exist and still be unreadable.
    match std::fs::File::open(&manifest) {
        Ok(_) => Ok(manifest),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no Cargo.toml at {}", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", manifest.display())),
    }
}

/// The findings, and the files that could not be read (each "path: error").
fn collect(index: &Index, cache: &mut cache::FindingsCache) -> (Vec<Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut unreadable = Vec::new();
    let mut seen_files = BTreeSet::new();
    // Only members that call `cell_remote!` can have alias-based findings; the others' index
    // problems are reported below without parsing their sources.
    let consumers: BTreeSet<&str> = index
        .consumers
        .iter()
        .map(|c| c.package_id.as_str())
        .collect();
    for member in index
        .packages
        .iter()
        .filter(|p| index.members.contains(&p.id))
    {
        let files = cell_macro_index::source_files(member);
        for file in files {
            // Every member's files are read, not only consumers': a file the index could not
            // read may hold a `cell_remote!` that would have made its package a consumer.
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => {
                    unreadable.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            if !consumers.contains(member.id.as_str()) {
                continue;
            }
            let diags = cache.diagnostics(&file, &text, || file_diagnostics(index, &file, &text));
            for diag in diags {
                findings.push(Finding {
                    file: file.clone(),
                    package_id: Some(member.id.clone()),
                    diag,
                });
            }
            seen_files.insert(file);
        }
    }
    // Index problems elsewhere (a path provider's declaration, …).
    for p in &index.problems {
        let Some(span) = &p.span else { continue };
        if seen_files.contains(&span.file) {
            continue;
        }
        findings.push(Finding {
            file: span.file.clone(),
            package_id: None,
            diag: analysis::from_problem(p),
        });
    }
    (findings, unreadable)
}

/// One consumer file's findings: its syntax errors (rustc rejects the file too; the rest of it
/// is still checked) and the editor's diagnostics, in source order.
fn file_diagnostics(index: &Index, file: &Path, text: &str) -> Vec<Diag> {
    let (parsed, errors) = Parsed::with_errors(text);
    let mut diags: Vec<Diag> = Vec::new();
    for (message, range) in errors {
        // One error per spot: the parser often reports a missing token twice there
        // (`#[DB::` lacks both a name and `]`), rustc once.
        if diags.last().is_some_and(|d: &Diag| d.range.0 == range.0) {
            continue;
        }
        diags.push(Diag::error(None, format!("syntax error: {message}"), range));
    }
    diags.extend(analysis::diagnostics_of_file(index, file, &parsed));
    diags.sort_by_key(|d| d.range.0);
    diags
}

fn display_path(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn render(root: &Path, f: &Finding, text: &str) -> String {
    let level = match f.diag.severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
    };
    let origin = display_path(root, &f.file);
    let (s, e) = (
        f.diag.range.0.min(text.len()),
        f.diag.range.1.min(text.len()),
    );
    let code = f.diag.code.map(|c| c.as_str().to_owned());
    let mut message = level.title(&f.diag.message);
    if let Some(code) = &code {
        message = message.id(code);
    }
    let notes: Vec<(Level, &str)> = f
        .diag
        .notes
        .iter()
        .map(|n| match n.split_once(": ") {
            Some(("help", rest)) => (Level::Help, rest),
            Some(("note", rest)) => (Level::Note, rest),
            _ => (Level::Note, n.as_str()),
        })
        .collect();
    if !text.is_empty() {
        message = message.snippet(
            Snippet::source(text)
                .origin(&origin)
                .line_start(1)
                .fold(true)
                .annotation(level.span(s..e.max(s))),
        );
    }
    for (l, n) in &notes {
        message = message.footer(l.title(n));
    }
    Renderer::plain().render(message).to_string()
}

fn to_json(index: &Index, f: &Finding, text: &str, rendered: &str) -> serde_json::Value {
    let idx = LineIndex::new(text);
    let (ls, cs) = idx.line_col(f.diag.range.0);
    let (le, ce) = idx.line_col(f.diag.range.1);
    let level = match f.diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let package = f.package_id.as_ref().and_then(|id| index.package(id));
    let line_text = text.lines().nth(ls.saturating_sub(1)).unwrap_or("");
    let suggestion = f
        .diag
        .fix
        .as_ref()
        .filter(|fix| fix.range == f.diag.range && fix.file.is_none());
    let children: Vec<serde_json::Value> = f
        .diag
        .notes
        .iter()
        .map(|n| {
            let (lvl, msg) = match n.split_once(": ") {
                Some(("help", rest)) => ("help", rest),
                Some(("note", rest)) => ("note", rest),
                _ => ("note", n.as_str()),
            };
            json!({ "message": msg, "code": null, "level": lvl, "spans": [], "children": [], "rendered": null })
        })
        .collect();
    json!({
        "reason": "compiler-message",
        "package_id": f.package_id.clone().unwrap_or_default(),
        "manifest_path": package.map(|p| p.manifest_path.display().to_string()).unwrap_or_default(),
        "target": {
            "kind": ["lib"],
            "crate_types": ["lib"],
            "name": package.map(|p| p.name.replace('-', "_")).unwrap_or_default(),
            "src_path": package.and_then(|p| p.lib_path.as_ref()).map(|p| p.display().to_string()).unwrap_or_default(),
            "edition": "2024",
            "doc": true,
            "doctest": true,
            "test": true
        },
        "message": {
            "$message_type": "diagnostic",
            "rendered": format!("{rendered}\n"),
            "message": f.diag.message,
            "code": f.diag.code.map(|c| json!({ "code": c.as_str(), "explanation": null })),
            "level": level,
            "spans": [{
                "file_name": f.file.display().to_string(),
                "byte_start": f.diag.range.0,
                "byte_end": f.diag.range.1,
                "line_start": ls,
                "line_end": le,
                "column_start": cs,
                "column_end": ce,
                "is_primary": true,
                "text": [{ "text": line_text, "highlight_start": cs, "highlight_end": if le == ls { ce } else { line_text.chars().count() + 1 } }],
                "label": null,
                "suggested_replacement": suggestion.map(|s| s.replacement.clone()),
                "suggestion_applicability": suggestion.map(|_| "MaybeIncorrect"),
                "expansion": null
            }],
            "children": children
        }
    })
}
