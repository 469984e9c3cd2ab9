//! Token-level scanning of a source file: macro calls (`cell_sdk::export! {…}`,
//! `cell_remote!(…)`), glob `use`s, and the inline module each sits in.
//!
//! Why tokens and not `syn::parse_file`: a file with one broken item still lexes, so the calls in
//! the rest of the file are still found ("parsing never fails"). Only unbalanced delimiters or an
//! unterminated literal make a file unreadable, and then the caller reports it.

use std::path::Path;

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};

use crate::model::Span;
use crate::span::{join, span_of};

/// A macro call found in a file.
#[derive(Debug)]
pub(crate) struct MacroCall {
    /// The full path as written (`cell_sdk::export`).
    pub(crate) path: String,
    /// Inline modules around the call.
    pub(crate) module: Vec<String>,
    /// The delimited input.
    pub(crate) group: Group,
    /// From the first path segment to the closing delimiter.
    pub(crate) span: Span,
}

/// A glob import (`use a::b::*;`).
#[derive(Debug)]
pub(crate) struct GlobUse {
    /// The path before `*`, without leading `crate`/`self`/`super`/`::`.
    pub(crate) path: Vec<String>,
    /// Inline modules around the `use`.
    pub(crate) module: Vec<String>,
    /// The whole `use` item.
    pub(crate) span: Span,
}

/// What scanning found in a file.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) calls: Vec<MacroCall>,
    pub(crate) globs: Vec<GlobUse>,
}

/// Lexes `text` and collects calls to macros named in `names` (last segment) plus glob `use`s.
pub(crate) fn scan(file: &Path, text: &str, names: &[&str]) -> Result<Scan, (String, Span)> {
    let tokens: TokenStream = text.parse().map_err(|e: proc_macro2::LexError| {
        (
            format!("cannot lex this file: {e}"),
            span_of(file, e.span()),
        )
    })?;
    let mut out = Scan::default();
    walk(file, tokens, names, &mut Vec::new(), &mut out);
    Ok(out)
}

fn walk(
    file: &Path,
    tokens: TokenStream,
    names: &[&str],
    module: &mut Vec<String>,
    out: &mut Scan,
) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(g))) =
                    (tts.get(i + 1), tts.get(i + 2))
                    && g.delimiter() == Delimiter::Brace
                {
                    module.push(name.to_string());
                    walk(file, g.stream(), names, module, out);
                    module.pop();
                    i += 3;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "use" => {
                let start = i;
                let mut end = i + 1;
                while end < tts.len()
                    && !matches!(&tts[end], TokenTree::Punct(p) if p.as_char() == ';')
                {
                    end += 1;
                }
                if end < tts.len() {
                    let item: TokenStream = tts[start..=end].iter().cloned().collect();
                    if let Ok(parsed) = syn::parse2::<syn::ItemUse>(item) {
                        let span = join(
                            &span_of(file, tts[start].span()),
                            &span_of(file, tts[end].span()),
                        );
                        collect_globs(&parsed.tree, &mut Vec::new(), module, &span, out);
                    }
                    i = end + 1;
                    continue;
                }
            }
            TokenTree::Ident(id) if names.iter().any(|n| id == n) => {
                if let (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g))) =
                    (tts.get(i + 1), tts.get(i + 2))
                    && bang.as_char() == '!'
                    && g.delimiter() != Delimiter::None
                {
                    // Walk back over `a::b::` to the start of the path.
                    let mut first = i;
                    let mut path = vec![id.to_string()];
                    while first >= 3
                        && matches!(&tts[first - 1], TokenTree::Punct(p) if p.as_char() == ':')
                        && matches!(&tts[first - 2], TokenTree::Punct(p) if p.as_char() == ':')
                    {
                        match &tts[first - 3] {
                            TokenTree::Ident(seg) => {
                                path.insert(0, seg.to_string());
                                first -= 3;
                            }
                            _ => break,
                        }
                    }
                    if first >= 2
                        && matches!(&tts[first - 1], TokenTree::Punct(p) if p.as_char() == ':')
                        && matches!(&tts[first - 2], TokenTree::Punct(p) if p.as_char() == ':')
                    {
                        first -= 2; // leading `::`
                    }
                    let span = join(
                        &span_of(file, tts[first].span()),
                        &span_of(file, g.span_close()),
                    );
                    out.calls.push(MacroCall {
                        path: path.join("::"),
                        module: module.clone(),
                        group: g.clone(),
                        span,
                    });
                    i += 3;
                    continue;
                }
            }
            TokenTree::Group(g) => {
                // Function bodies, impl blocks, macro inputs: calls may sit anywhere.
                walk(file, g.stream(), names, module, out);
            }
            _ => {}
        }
        i += 1;
    }
}

fn collect_globs(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    module: &[String],
    span: &Span,
    out: &mut Scan,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_globs(&p.tree, prefix, module, span, out);
            prefix.pop();
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                collect_globs(t, prefix, module, span, out);
            }
        }
        syn::UseTree::Glob(_) => {
            let path: Vec<String> = prefix
                .iter()
                .skip_while(|s| matches!(s.as_str(), "crate" | "self" | "super"))
                .cloned()
                .collect();
            out.globs.push(GlobUse {
                path,
                module: module.to_vec(),
                span: span.clone(),
            });
        }
        syn::UseTree::Name(_) | syn::UseTree::Rename(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_in_modules_and_bodies_and_globs() {
        let src = r#"
            use cell_sdk::cell_remote;
            cell_remote!(DB = "celldb");
            mod inner {
                use crate::DB::*;
                fn f() { ::cell_sdk::cell_remote!(X = "x"); }
            }
            broken item here (
            ) ;
            cell_sdk::export! { format = 1; }
        "#;
        let s = scan(Path::new("/a.rs"), src, &["cell_remote", "export"]).unwrap();
        assert_eq!(s.calls.len(), 3);
        assert_eq!(s.calls[0].path, "cell_remote");
        assert_eq!(s.calls[0].span.line, 3);
        assert_eq!(s.calls[1].module, ["inner"]);
        assert_eq!(s.calls[1].path, "cell_sdk::cell_remote");
        assert_eq!(s.calls[2].path, "cell_sdk::export");
        assert_eq!(s.globs.len(), 1);
        assert_eq!(s.globs[0].path, ["DB"]);
        assert_eq!(s.globs[0].module, ["inner"]);
    }

    #[test]
    fn unbalanced_delimiters_are_an_error_not_a_panic() {
        let e = scan(
            Path::new("/a.rs"),
            "fn f() { cell_remote!(A = \"b\") ",
            &["cell_remote"],
        )
        .unwrap_err();
        assert!(e.0.contains("cannot lex"), "{}", e.0);
    }
}
