//! Reading a consumer: its `cell_remote!` calls (aliases), glob imports and bare names in scope.

use super::*;

/// Reads a member's sources for `cell_remote!` calls and glob imports.
pub(super) fn read_consumer(
    pkg: &Package,
    problems: &mut Vec<Problem>,
) -> (Option<Consumer>, Vec<GlobImport>, Vec<ScopeName>) {
    let mut aliases = Vec::new();
    let mut globs = Vec::new();
    let mut names = Vec::new();
    {
        for file in source_files(pkg) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if !text.contains("cell_remote") {
                continue;
            }
            let found = match scan(&file, &text, &["cell_remote"]) {
                Ok(found) => found,
                Err((message, span)) => {
                    // Not even the error-tolerant lexing could read it: an error, since its
                    // aliases (and so every use of them) go unchecked, and rustc rejects it too.
                    problems.push(problem(
                        ProblemCode::MalformedRemote,
                        Severity::Error,
                        message,
                        Some(span),
                    ));
                    continue;
                }
            };
            for call in found.calls {
                match parse_remote(&file, &call) {
                    Ok(alias) => aliases.push(alias),
                    Err((message, notes, span)) => {
                        let mut p = problem(
                            ProblemCode::MalformedRemote,
                            Severity::Error,
                            message,
                            Some(span),
                        );
                        p.notes = notes;
                        problems.push(p);
                    }
                }
            }
            for g in found.globs {
                globs.push(GlobImport {
                    path: g.path,
                    file: file.clone(),
                    module: g.module,
                    span: g.span,
                });
            }
            for n in found.names {
                names.push(ScopeName {
                    name: n.name,
                    file: file.clone(),
                    module: n.module,
                    span: n.span,
                    defines: n.defines,
                });
            }
        }
    }
    if aliases.is_empty() {
        return (None, Vec::new(), Vec::new());
    }
    (
        Some(Consumer {
            package: pkg.name.clone(),
            package_id: pkg.id.clone(),
            manifest_path: pkg.manifest_path.clone(),
            aliases,
        }),
        globs,
        names,
    )
}

/// `Alias = "cell"` or `Alias = "cell@version"`, parsed by the parser `cell_remote!` itself uses
/// (`cell_export::parse_remote`) and checked by the same `cell_resolver::parse_spec`, so the
/// CELL0003 message and token are the ones the compiler shows. The error is (message without
/// the code, notes, span).
pub(super) fn parse_remote(
    file: &Path,
    call: &crate::scan::MacroCall,
) -> Result<Alias, (String, Vec<String>, Span)> {
    let input = cell_export::parse_remote(call.group.stream()).map_err(|e| {
        // An error at the end of the input or for an empty call carries no real location
        // (rustc shows the whole call there too): point at the call.
        let span = if e.span().byte_range().is_empty() {
            call.span.clone()
        } else {
            crate::span::span_of(file, e.span())
        };
        let text = e.to_string();
        let prefix = format!("{}: ", ProblemCode::MalformedRemote);
        let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
        (message, Vec::new(), span)
    })?;
    let literal = crate::span::span_of(file, input.cell.span());
    let spec = cell_resolver::parse_spec(&input.cell.value()).map_err(|e| {
        let notes = e.help.iter().map(|h| format!("help: {h}")).collect();
        (e.message, notes, literal.clone())
    })?;
    Ok(Alias {
        name: input.alias.to_string(),
        cell: spec.cell,
        version: spec.version,
        module: call.module.clone(),
        span: crate::span::span_of(file, input.alias.span()),
        literal,
        call: call.span.clone(),
        resolved: None,
    })
}

/// The cell as written in the call: `celldb` or `celldb@0.4`.
pub(super) fn spec(alias: &Alias) -> String {
    match &alias.version {
        Some(v) => format!("{}@{v}", alias.cell),
        None => alias.cell.clone(),
    }
}
