//! Reading a provider: its `export!` declaration, its macro crate's `#[proc_macro*]` functions
//! (CELL0007 for a declared macro it lacks) and its crate root's names (CELL0007 for a declared
//! `api` item it lacks), without compiling anything.

use super::*;

impl Index {
    pub(super) fn read_provider(
        &self,
        pkg: &Package,
        problems: &mut Vec<Problem>,
        stamps: &mut BTreeMap<PathBuf, Option<(u64, u128)>>,
    ) -> Option<Provider> {
        let lib = pkg.lib_path.as_ref()?;
        if pkg.proc_macro {
            return None;
        }
        let text = std::fs::read_to_string(lib).ok()?;
        // Cheap filter: most packages of a graph are not providers and are never lexed.
        if !text.contains("export!") && !text.contains("export !") {
            return None;
        }
        let found = match scan(lib, &text, &["export"]) {
            Ok(found) => found,
            Err((message, span)) => {
                if text.contains("cell_sdk::export") {
                    problems.push(problem(
                        ProblemCode::MalformedExport,
                        Severity::Error,
                        message,
                        Some(span),
                    ));
                }
                return None;
            }
        };
        // `cell_sdk::export!` always counts; a bare `export!` only when it looks like ours. One
        // that is always compiled first; one under `#[cfg(…)]` (maybe never compiled) is still
        // read, but reports nothing.
        let ours = |c: &crate::scan::MacroCall| {
            c.path.ends_with("cell_sdk::export")
                || (c.path == "export" && {
                    let body = c.group.stream().to_string();
                    body.contains("cell =") || body.starts_with("format")
                })
        };
        let mut calls: Vec<_> = found.calls.into_iter().filter(|c| ours(c)).collect();
        calls.sort_by_key(|c| c.gated);
        let call = calls.into_iter().next()?;
        let mut unheard = Vec::new();
        let problems = if call.gated { &mut unheard } else { problems };
        if !call.module.is_empty() {
            // `export!`'s compile-time check reports this at the whole call (E0080 carrying
            // CELL0010); what it declares is still read, as rustc still compiles it.
            problems.push(problem(
                ProblemCode::MalformedExport,
                Severity::Error,
                cell_export::NOT_AT_CRATE_ROOT.to_owned(),
                Some(call.span.clone()),
            ));
        }
        let decl = parse_declaration(lib, call.group.stream());
        for (code, message, span) in &decl.errors {
            problems.push(problem(
                *code,
                Severity::Error,
                message.clone(),
                Some(span.clone()),
            ));
        }
        let format = decl.format.unwrap_or(0);
        let cell = match &decl.cell {
            Some((name, span)) => {
                if *name != pkg.name {
                    let mut p = problem(
                        ProblemCode::MalformedExport,
                        Severity::Error,
                        // The words of `export!` itself.
                        cell_export::cell_name_mismatch(name, &pkg.name),
                        Some(span.clone()),
                    );
                    p.fix = Some(Fix {
                        title: format!("replace with \"{}\"", pkg.name),
                        replacement: format!("\"{}\"", pkg.name),
                        span: span.clone(),
                    });
                    problems.push(p);
                }
                name.clone()
            }
            None => pkg.name.clone(),
        };
        // The macro crate: the provider's dependency with that extern name.
        let macro_crate = decl.macros.as_ref().map(|(name, _)| {
            let dep_pkg = pkg
                .deps
                .iter()
                .find(|d| d.extern_crate == *name)
                .and_then(|d| self.package(&d.package_id))
                .or_else(|| {
                    // Unresolved graph: match by package name.
                    self.packages
                        .iter()
                        .find(|p| p.proc_macro && p.name.replace('-', "_") == *name)
                });
            MacroCrate {
                name: name.clone(),
                package_id: dep_pkg.map(|p| p.id.clone()),
                lib_path: dep_pkg.and_then(|p| p.lib_path.clone()),
            }
        });
        let macro_lib = macro_crate.as_ref().and_then(|m| m.lib_path.as_ref());
        if let Some(path) = macro_lib {
            stamps.insert(path.clone(), stamp_of(path));
        }
        let fns = match macro_lib {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match proc_macro_fns(path, &text) {
                    Ok(fns) => Some(fns),
                    Err((message, span)) => {
                        problems.push(problem(
                            ProblemCode::MalformedExport,
                            Severity::Warning,
                            format!("cannot read the macro crate: {message}"),
                            Some(span),
                        ));
                        None
                    }
                },
                Err(e) => {
                    problems.push(problem(
                        ProblemCode::MalformedExport,
                        Severity::Warning,
                        format!("cannot read the macro crate `{}`: {e}", path.display()),
                        Some(file_start(path)),
                    ));
                    None
                }
            },
            None => None,
        };
        let mut exports = Vec::new();
        for d in decl.exports {
            let found = fns
                .as_ref()
                .and_then(|fns| fns.iter().find(|f| f.name == d.name));
            if let (Some(_), Some(mc)) = (&fns, &macro_crate) {
                match found {
                    None => problems.push(problem(
                        ProblemCode::MissingExport,
                        Severity::Error,
                        format!(
                            "`{}` is declared in export! but `{}` has no {} named `{}`",
                            d.name,
                            mc.name,
                            fn_attr(d.kind),
                            d.name
                        ),
                        Some(d.span.clone()),
                    )),
                    Some(f) if f.kind != d.kind => problems.push(problem(
                        ProblemCode::MissingExport,
                        Severity::Error,
                        format!(
                            "`{}` is declared as {} but `{}` defines it with {}",
                            d.name,
                            d.kind.keyword(),
                            mc.name,
                            fn_attr(f.kind)
                        ),
                        Some(d.span.clone()),
                    )),
                    Some(_) => {}
                }
            }
            let shadows = match d.kind {
                ExportKind::Attribute => BUILTIN_ATTRIBUTES.contains(&d.name.as_str()),
                _ => false,
            } || CELL_SDK_NAMES.contains(&d.name.as_str());
            if shadows {
                problems.push(problem(
                    ProblemCode::BuiltinShadowing,
                    Severity::Warning,
                    format!(
                        "the exported macro `{}` shadows the builtin or cell-sdk `{}` wherever a \
                         consumer glob-imports this provider (`use Alias::*`)",
                        d.name, d.name
                    ),
                    Some(d.span.clone()),
                ));
            }
            let mut helpers = d.helpers;
            if let Some(f) = found {
                for h in &f.derive_helpers {
                    if !helpers.contains(h) {
                        helpers.push(h.clone());
                    }
                }
            }
            exports.push(Export {
                helper_args: d.helper_args,
                docs: found
                    .map(|f| f.docs.clone())
                    .filter(|d| !d.is_empty())
                    .unwrap_or(d.docs),
                definition: found.map(|f| f.span.clone()),
                name: d.name,
                kind: d.kind,
                helpers,
                args: d.args,
                declared_at: d.span,
            });
        }
        check_api(&text, &decl.api, &pkg.name, problems);
        Some(Provider {
            cell,
            package: pkg.name.clone(),
            package_id: pkg.id.clone(),
            version: pkg.version.clone(),
            source: pkg.source,
            manifest_path: pkg.manifest_path.clone(),
            lib_path: lib.clone(),
            declaration: call.span,
            format,
            macro_crate,
            exports,
            api: decl.api.into_iter().map(|(n, _)| n).collect(),
        })
    }
}

/// CELL0007 for a declared `api` item the provider's crate root does not have: `export!`
/// re-exports it with the declared name's span, so rustc reports E0432 there when compiling
/// the provider. Read from the source, never compiled: only single names (`snapshot`,
/// `crate::snapshot`) are checked, and nothing when the root has a glob `use` or a macro call
/// that may define names ([`crate::scan::root_names`]).
pub(super) fn check_api(
    lib_text: &str,
    api: &[(String, Span)],
    package: &str,
    problems: &mut Vec<Problem>,
) {
    if api.is_empty() {
        return;
    }
    let Some(names) = crate::scan::root_names(lib_text) else {
        return;
    };
    for (path, span) in api {
        let name = path.strip_prefix("crate::").unwrap_or(path);
        if name.contains("::") || names.contains(name) {
            continue;
        }
        let mut p = problem(
            ProblemCode::MissingExport,
            Severity::Error,
            format!(
                "`{name}` is declared in export!'s `api` but the crate root of `{package}` has no \
                 item named `{name}`"
            ),
            Some(span.clone()),
        );
        p.notes
            .push("note: rustc reports this as E0432 when compiling the provider".to_owned());
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(best) = did_you_mean(name, &candidates) {
            p.notes.push(format!("help: did you mean `{best}`?"));
            p.fix = Some(Fix {
                title: format!("replace with `{best}`"),
                replacement: best.to_owned(),
                span: span.clone(),
            });
        }
        problems.push(p);
    }
}

pub(super) fn fn_attr(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Attribute => "`#[proc_macro_attribute]` fn",
        ExportKind::Function => "`#[proc_macro]` fn",
        ExportKind::Derive => "`#[proc_macro_derive]`",
    }
}
