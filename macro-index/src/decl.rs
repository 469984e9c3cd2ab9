//! The export declaration parser (the body of `cell_sdk::export! { … }`, see
//! `notes/export-format.md` / `docs/` "Write a provider").
//!
//! This is the ONLY module that knows the declaration's grammar. When the shared `cell-export`
//! crate lands on `main`, this module becomes a thin adapter from its model to [`Declaration`]:
//! a one-file change.
//!
//! Parsing never fails: what was understood is returned together with the errors met.

use std::path::Path;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Expr, Ident, LitInt, LitStr, Token, braced, bracketed};

use crate::model::{ArgSchema, ExportKind, Span, ValueKind};
use crate::span::span_of;

/// What one `export!` body declares.
#[derive(Debug, Default)]
pub(crate) struct Declaration {
    pub(crate) format: Option<u32>,
    pub(crate) cell: Option<(String, Span)>,
    pub(crate) macros: Option<(String, Span)>,
    pub(crate) exports: Vec<DeclaredExport>,
    pub(crate) api: Vec<(String, Span)>,
    /// Syntax errors: message and where.
    pub(crate) errors: Vec<(String, Span)>,
}

/// One `attribute|function|derive NAME { … }` entry.
#[derive(Debug)]
pub(crate) struct DeclaredExport {
    pub(crate) name: String,
    pub(crate) kind: ExportKind,
    pub(crate) docs: String,
    pub(crate) helpers: Vec<String>,
    pub(crate) args: Vec<ArgSchema>,
    pub(crate) span: Span,
}

/// Parses the tokens inside `export! { … }` of `file`.
pub(crate) fn parse_declaration(file: &Path, body: TokenStream) -> Declaration {
    let mut decl = Declaration::default();
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        while !input.is_empty() {
            if let Err(e) = parse_entry(file, input, &mut decl) {
                decl.errors.push((e.to_string(), span_of(file, e.span())));
                // Skip the rest: one syntax error is enough, and what came before is kept.
                input.step(|cursor| {
                    let mut rest = *cursor;
                    while let Some((_, next)) = rest.token_tree() {
                        rest = next;
                    }
                    Ok(((), rest))
                })?;
            }
        }
        Ok(())
    };
    if let Err(e) = parser.parse2(body) {
        decl.errors.push((e.to_string(), span_of(file, e.span())));
    }
    decl
}

fn parse_entry(file: &Path, input: ParseStream<'_>, decl: &mut Declaration) -> syn::Result<()> {
    let attrs = input.call(Attribute::parse_outer)?;
    let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
    match key.to_string().as_str() {
        "format" => {
            input.parse::<Token![=]>()?;
            let lit: LitInt = input.parse()?;
            decl.format = Some(lit.base10_parse()?);
            input.parse::<Token![;]>()?;
        }
        "cell" => {
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            decl.cell = Some((lit.value(), span_of(file, lit.span())));
            input.parse::<Token![;]>()?;
        }
        "macros" => {
            input.parse::<Token![=]>()?;
            let name: Ident = input.parse()?;
            decl.macros = Some((name.to_string(), span_of(file, name.span())));
            input.parse::<Token![;]>()?;
        }
        "api" => {
            input.parse::<Token![=]>()?;
            let content;
            bracketed!(content in input);
            let names = content.parse_terminated(Ident::parse_any_ident, Token![,])?;
            decl.api = names
                .into_iter()
                .map(|n| (n.to_string(), span_of(file, n.span())))
                .collect();
            input.parse::<Token![;]>()?;
        }
        "attribute" | "function" | "derive" => {
            let kind = match key.to_string().as_str() {
                "attribute" => ExportKind::Attribute,
                "function" => ExportKind::Function,
                _ => ExportKind::Derive,
            };
            let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            let content;
            braced!(content in input);
            let (helpers, args) = parse_export_body(&content)?;
            decl.exports.push(DeclaredExport {
                name: name.to_string(),
                kind,
                docs: docs_of(&attrs),
                helpers,
                args,
                span: span_of(file, name.span()),
            });
            // A trailing `;` after an entry is tolerated.
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
            }
        }
        other => {
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown entry `{other}` in export! (expected format, cell, macros, \
                     attribute, function, derive or api)"
                ),
            ));
        }
    }
    Ok(())
}

/// `helpers = [a, b]; args { … }` in any order, both optional.
fn parse_export_body(input: ParseStream<'_>) -> syn::Result<(Vec<String>, Vec<ArgSchema>)> {
    let mut helpers = Vec::new();
    let mut args = Vec::new();
    while !input.is_empty() {
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        match key.to_string().as_str() {
            "helpers" => {
                input.parse::<Token![=]>()?;
                let content;
                bracketed!(content in input);
                let names = content.parse_terminated(Ident::parse_any_ident, Token![,])?;
                helpers = names.into_iter().map(|n| n.to_string()).collect();
            }
            "args" => {
                let content;
                braced!(content in input);
                while !content.is_empty() {
                    args.push(parse_arg(&content)?);
                    if content.is_empty() {
                        break;
                    }
                    content.parse::<Token![,]>()?;
                }
            }
            other => {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown key `{other}` (expected helpers or args)"),
                ));
            }
        }
        if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
        }
    }
    Ok((helpers, args))
}

/// `name: kind?`, `name: "a" | "b" = "a"`, `_: expr`.
fn parse_arg(input: ParseStream<'_>) -> syn::Result<ArgSchema> {
    let name = if input.peek(Token![_]) {
        input.parse::<Token![_]>()?;
        None
    } else {
        Some(
            input
                .call(<Ident as syn::ext::IdentExt>::parse_any)?
                .to_string(),
        )
    };
    input.parse::<Token![:]>()?;
    let kind = if input.peek(LitStr) {
        let mut values = vec![input.parse::<LitStr>()?.value()];
        while input.peek(Token![|]) {
            input.parse::<Token![|]>()?;
            values.push(input.parse::<LitStr>()?.value());
        }
        ValueKind::OneOf(values)
    } else {
        let kind: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        match kind.to_string().as_str() {
            "str" => ValueKind::Str,
            "bool" => ValueKind::Bool,
            "int" => ValueKind::Int,
            "expr" => ValueKind::Expr,
            other => {
                return Err(syn::Error::new(
                    kind.span(),
                    format!(
                        "unknown value kind `{other}` (expected str, bool, int, expr or \"a\" | \"b\")"
                    ),
                ));
            }
        }
    };
    let mut optional = false;
    if input.peek(Token![?]) {
        input.parse::<Token![?]>()?;
        optional = true;
    }
    let mut default = None;
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let expr: Expr = input.parse()?;
        default = Some(match &expr {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s.value(),
            other => token_text(quote::ToTokens::to_token_stream(other)),
        });
        optional = true;
    }
    Ok(ArgSchema {
        name,
        kind,
        optional,
        default,
    })
}

/// The doc comments among `attrs`, one line each, with the single leading space of `/// x`
/// removed.
pub(crate) fn docs_of(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let value = s.value();
            for line in value.lines() {
                lines.push(line.strip_prefix(' ').unwrap_or(line).to_owned());
            }
            if value.is_empty() {
                lines.push(String::new());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

/// Tokens printed compactly (`1..=100`, not `1 ..= 100`) for display of defaults.
fn token_text(tokens: TokenStream) -> String {
    let mut out = String::new();
    for tt in tokens {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push_str(&token_text(g.stream()));
                out.push_str(close);
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
        input.call(syn::ext::IdentExt::parse_any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parse(src: &str) -> Declaration {
        let ts = TokenStream::from_str(src).unwrap();
        parse_declaration(Path::new("/x/lib.rs"), ts)
    }

    #[test]
    fn parses_the_contract_example() {
        let d = parse(
            r#"
            format = 1;
            cell = "celldb";
            macros = celldb_macros;
            /// Persist docs.
            attribute persist {
                helpers = [key, index, unique, auto_inc];
                args {
                    table: str?,
                    replicate: "local" | "gossip" | "raft" | "sharded" = "local",
                    durability: "sync" | "buffered" = "sync",
                }
            }
            function query {}
            derive Table {}
            attribute range { args { _: expr } }
            api = [insert, get, Db, Error];
            "#,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.format, Some(1));
        assert_eq!(d.cell.as_ref().map(|c| c.0.as_str()), Some("celldb"));
        assert_eq!(
            d.macros.as_ref().map(|c| c.0.as_str()),
            Some("celldb_macros")
        );
        assert_eq!(d.exports.len(), 4);
        let p = &d.exports[0];
        assert_eq!(p.name, "persist");
        assert_eq!(p.docs, "Persist docs.");
        assert_eq!(p.helpers, ["key", "index", "unique", "auto_inc"]);
        assert_eq!(p.args[0].name.as_deref(), Some("table"));
        assert_eq!(p.args[0].kind, ValueKind::Str);
        assert!(p.args[0].optional);
        assert_eq!(
            p.args[1].kind,
            ValueKind::OneOf(vec![
                "local".into(),
                "gossip".into(),
                "raft".into(),
                "sharded".into()
            ])
        );
        assert_eq!(p.args[1].default.as_deref(), Some("local"));
        assert_eq!(d.exports[1].kind, ExportKind::Function);
        assert_eq!(d.exports[2].kind, ExportKind::Derive);
        assert_eq!(d.exports[3].args[0].name, None);
        assert_eq!(d.exports[3].args[0].kind, ValueKind::Expr);
        assert_eq!(d.api.len(), 4);
        // Spans are real: `persist` is on line 6 of the source.
        assert_eq!(p.span.line, 6);
    }

    #[test]
    fn keeps_what_came_before_a_syntax_error() {
        let d =
            parse(r#"format = 1; cell = "kv"; attribute get { args { x: nonsense } } derive T {}"#);
        assert_eq!(d.format, Some(1));
        assert_eq!(d.cell.as_ref().map(|c| c.0.as_str()), Some("kv"));
        assert_eq!(d.errors.len(), 1);
        assert!(
            d.errors[0].0.contains("unknown value kind `nonsense`"),
            "{:?}",
            d.errors
        );
    }

    #[test]
    fn empty_and_garbage_bodies_do_not_panic() {
        assert!(parse("").errors.is_empty());
        assert!(!parse("= = ; 12 \"x\"").errors.is_empty());
        assert!(!parse("attribute").errors.is_empty());
    }
}
