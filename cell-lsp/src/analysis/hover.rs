//! Hover: a macro's or helper's docs and argument schema, an alias's provider.

use super::*;

/// Hover markdown and the hovered range. Beside rust-analyzer, nothing on `Alias::item` in
/// code: it resolves those itself (an attribute macro's hover stays; rust-analyzer loses it
/// under another attribute macro).
pub(crate) fn hover(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    offset: usize,
    companion: Companion,
) -> Option<(String, (usize, usize))> {
    let aliases = aliases(index, file, parsed);
    // On the attribute's path or one of its argument names: what the cursor is on, never the
    // attribute for any offset inside it.
    if let Some(u) = parsed.attr_use_at(offset).filter(|u| {
        let on = |r: (usize, usize)| r.0 <= offset && offset <= r.1;
        on((u.alias_range.0, u.name_range.1))
            || u.args
                .iter()
                .flatten()
                .any(|a| a.name.is_some() && on(a.name_range))
    }) {
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
    if let Some((alias, name, range)) = parsed.alias_path_at(offset) {
        if companion == Companion::RustAnalyzer {
            return None;
        }
        let p = aliases.iter().find(|a| a.name == alias)?.provider?;
        return api_hover(p, &alias, &name).map(|md| (md, range));
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

/// Hover on `Alias::name` in code: an API item (its declaration and docs, read from the
/// provider's crate root) or a function-like macro the provider exports — what completion
/// offers after `Alias::`.
fn api_hover(p: &Provider, alias: &str, name: &str) -> Option<String> {
    let source = source_word(p);
    if let Some(e) = p.export(name).filter(|e| e.kind == ExportKind::Function) {
        let mut md = format!(
            "```rust\n{alias}::{}!\n```\nfunction-like macro from **{}** {} ({source})\n",
            e.name, p.cell, p.version
        );
        if !e.docs.is_empty() {
            md.push_str(&format!("\n---\n\n{}\n", shown_docs(&e.docs)));
        }
        return Some(md);
    }
    if !p.api.iter().any(|a| a == name) {
        return None;
    }
    // The crate root is read as it is on disk now; an item it re-exports from elsewhere is
    // shown without docs (`item_docs` reads the root only).
    let found = std::fs::read_to_string(&p.lib_path)
        .ok()
        .and_then(|text| crate::syntax::item_docs(&text, name));
    let mut md = format!(
        "```rust\n{alias}::{name}\n```\nAPI item of **{}** {} ({source})\n",
        p.cell, p.version
    );
    if let Some((docs, declaration)) = found {
        md.push_str(&format!("\n```rust\n{declaration}\n```\n"));
        if !docs.is_empty() {
            md.push_str(&format!("\n---\n\n{}\n", shown_docs(&docs)));
        }
    }
    Some(md)
}

/// Docs as rustdoc shows them: in Rust code blocks the hidden lines (`# use …`, a lone `#`) are
/// left out and `##` shows as `#`; the block is labelled `rust` so that editors highlight it
/// (rustdoc's `no_run`, `ignore`, … are not languages).
pub(super) fn shown_docs(docs: &str) -> String {
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
pub(super) fn is_rust_block(info: &str) -> bool {
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

pub(super) fn source_word(p: &Provider) -> String {
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
