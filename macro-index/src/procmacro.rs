//! Finds the `#[proc_macro_attribute]`, `#[proc_macro]` and `#[proc_macro_derive(Name)]`
//! functions at the root of a proc-macro crate, with their `///` docs and exact spans.
//!
//! Items are found at token level (a broken function elsewhere does not hide the others);
//! attributes are parsed with syn. Proc-macro functions must sit at the crate root, so nested
//! modules are not searched.

use std::path::Path;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::Attribute;
use syn::parse::Parser;

use crate::decl::docs_of;
use crate::model::{ExportKind, Span};
use crate::span::span_of;

/// One proc-macro function.
#[derive(Debug, Clone)]
pub(crate) struct ProcMacroFn {
    /// The macro's name as users write it (the derive name for derives).
    pub(crate) name: String,
    pub(crate) kind: ExportKind,
    pub(crate) docs: String,
    /// Helper attributes declared by a derive (`attributes(...)`).
    pub(crate) derive_helpers: Vec<String>,
    /// The function name's span (the derive name's span for derives).
    pub(crate) span: Span,
}

/// Lexes `text` and returns its proc-macro functions.
pub(crate) fn proc_macro_fns(file: &Path, text: &str) -> Result<Vec<ProcMacroFn>, (String, Span)> {
    let tokens: TokenStream = text.parse().map_err(|e: proc_macro2::LexError| {
        (
            format!("cannot lex this file: {e}"),
            span_of(file, e.span()),
        )
    })?;
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::new();
    let mut attrs: Vec<Attribute> = Vec::new();
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = tts.get(i + 1)
                    && g.delimiter() == Delimiter::Bracket
                {
                    let attr_tokens: TokenStream = tts[i..i + 2].iter().cloned().collect();
                    if let Ok(mut parsed) = Attribute::parse_outer.parse2(attr_tokens) {
                        attrs.append(&mut parsed);
                    }
                    i += 2;
                    continue;
                }
                // `#!` inner attributes and stray `#` end the current item.
                attrs.clear();
            }
            TokenTree::Ident(id) if id == "fn" => {
                if let Some(TokenTree::Ident(name)) = tts.get(i + 1)
                    && let Some(found) = classify(file, &attrs, name)
                {
                    out.push(found);
                }
                attrs.clear();
            }
            TokenTree::Punct(p) if p.as_char() == ';' => attrs.clear(),
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => attrs.clear(),
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

fn classify(file: &Path, attrs: &[Attribute], fn_name: &proc_macro2::Ident) -> Option<ProcMacroFn> {
    let docs = docs_of(attrs);
    for attr in &with_cfg_attr_contents(attrs) {
        let path = attr.path();
        if path.is_ident("proc_macro_attribute") || path.is_ident("proc_macro") {
            let kind = if path.is_ident("proc_macro") {
                ExportKind::Function
            } else {
                ExportKind::Attribute
            };
            return Some(ProcMacroFn {
                name: fn_name.to_string(),
                kind,
                docs,
                derive_helpers: Vec::new(),
                span: span_of(file, fn_name.span()),
            });
        }
        if path.is_ident("proc_macro_derive") {
            // `#[proc_macro_derive(Name, attributes(a, b))]`
            let mut name = None;
            let mut helpers = Vec::new();
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("attributes") {
                    meta.parse_nested_meta(|inner| {
                        if let Some(id) = inner.path.get_ident() {
                            helpers.push(id.to_string());
                        }
                        Ok(())
                    })
                } else {
                    if let Some(id) = meta.path.get_ident()
                        && name.is_none()
                    {
                        name = Some(id.clone());
                    }
                    Ok(())
                }
            });
            let name = name?;
            return Some(ProcMacroFn {
                name: name.to_string(),
                kind: ExportKind::Derive,
                docs,
                derive_helpers: helpers,
                span: span_of(file, name.span()),
            });
        }
    }
    None
}

/// `attrs` with each `#[cfg_attr(pred, a, b)]` replaced by `#[a] #[b]` (recursively): the
/// predicate is not evaluated (features are unknown here), so a function that is a proc macro
/// only under some cfg (`#[cfg_attr(not(test), proc_macro_attribute)]`, a common way to unit
/// test a macro's function) is one, as rust-analyzer sees it with the cfg active — never a
/// false "declared but missing" (CELL0007). A `cfg_attr` that does not parse adds nothing.
fn with_cfg_attr_contents(attrs: &[Attribute]) -> Vec<Attribute> {
    let mut out = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("cfg_attr") {
            out.push(attr.clone());
            continue;
        }
        let Ok(list) = attr.meta.require_list() else {
            continue;
        };
        let Ok(metas) = list.parse_args_with(
            syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
        ) else {
            continue;
        };
        let inner: Vec<Attribute> = metas
            .into_iter()
            .skip(1)
            .map(|meta| Attribute {
                pound_token: attr.pound_token,
                style: attr.style,
                bracket_token: attr.bracket_token,
                meta,
            })
            .collect();
        out.extend(with_cfg_attr_contents(&inner));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_all_three_kinds_with_docs() {
        let src = r#"
            //! crate docs
            use proc_macro::TokenStream;

            /// Persists a struct.
            ///
            /// More.
            #[proc_macro_attribute]
            pub fn persist(a: TokenStream, i: TokenStream) -> TokenStream { i }

            /// A query.
            #[proc_macro]
            pub fn query(i: TokenStream) -> TokenStream { i }

            #[proc_macro_derive(Table, attributes(column))]
            pub fn derive_table(i: TokenStream) -> TokenStream { i }

            /// not a macro
            fn helper() {}
        "#;
        let fns = proc_macro_fns(Path::new("/m.rs"), src).unwrap();
        assert_eq!(fns.len(), 3);
        assert_eq!(fns[0].name, "persist");
        assert_eq!(fns[0].kind, ExportKind::Attribute);
        assert_eq!(fns[0].docs, "Persists a struct.\n\nMore.");
        assert_eq!(fns[0].span.line, 9);
        assert_eq!(fns[1].kind, ExportKind::Function);
        assert_eq!(fns[2].name, "Table");
        assert_eq!(fns[2].derive_helpers, ["column"]);
    }

    #[test]
    fn proc_macros_behind_cfg_attr_are_found() {
        let src = r#"
            use proc_macro::TokenStream;

            /// Persists a struct.
            #[cfg_attr(not(test), proc_macro_attribute)]
            pub fn persist(a: TokenStream, i: TokenStream) -> TokenStream { i }

            #[cfg_attr(feature = "derive", cfg_attr(all(), proc_macro_derive(Table, attributes(column))))]
            pub fn derive_table(i: TokenStream) -> TokenStream { i }

            #[cfg_attr(test, allow(dead_code))]
            fn helper() {}

            #[cfg_attr(a, proc_macro_attribute = 1 + )]
            fn also_not_a_macro() {}
        "#;
        let fns = proc_macro_fns(Path::new("/m.rs"), src).unwrap();
        let found: Vec<(&str, ExportKind)> =
            fns.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            found,
            [
                ("persist", ExportKind::Attribute),
                ("Table", ExportKind::Derive)
            ]
        );
        assert_eq!(fns[0].docs, "Persists a struct.");
        assert_eq!(fns[1].derive_helpers, ["column"]);
        // The derive's name, at its place inside the `cfg_attr`.
        assert_eq!((fns[1].span.line, fns[1].span.col), (8, 78));
    }
}
