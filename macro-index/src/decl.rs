//! The export declaration, read through the shared `cell-export` crate (its grammar and
//! recovering parser); this module only adapts its model to the index's [`Declaration`] with
//! file-anchored [`Span`]s. It is the only place the index touches `cell-export`.
//!
//! Parsing never fails: what was understood is returned together with the errors met.

use std::collections::BTreeMap;
use std::path::Path;

use proc_macro2::TokenStream;

use crate::code::ProblemCode;
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
    /// Errors: code (malformed export or unsupported format), message, where.
    pub(crate) errors: Vec<(ProblemCode, String, Span)>,
}

/// One `attribute|function|derive NAME { … }` entry.
#[derive(Debug)]
pub(crate) struct DeclaredExport {
    pub(crate) name: String,
    pub(crate) kind: ExportKind,
    pub(crate) docs: String,
    pub(crate) helpers: Vec<String>,
    pub(crate) helper_args: BTreeMap<String, Vec<ArgSchema>>,
    pub(crate) args: Vec<ArgSchema>,
    pub(crate) span: Span,
}

/// Parses the tokens inside `export! { … }` of `file`.
pub(crate) fn parse_declaration(file: &Path, body: TokenStream) -> Declaration {
    let parsed = cell_export::parse_tokens(body);
    let d = parsed.decl;
    let sp = |s: proc_macro2::Span| span_of(file, s);
    Declaration {
        format: d.format.map(|f| f.value),
        cell: d.cell.map(|c| (c.value, sp(c.span))),
        macros: d.macros_crate.map(|m| (m.value, sp(m.span))),
        exports: d
            .macros
            .into_iter()
            .map(|m| DeclaredExport {
                kind: match m.kind {
                    cell_export::MacroKind::Attribute => ExportKind::Attribute,
                    cell_export::MacroKind::Function => ExportKind::Function,
                    cell_export::MacroKind::Derive => ExportKind::Derive,
                },
                docs: m.docs.unwrap_or_default(),
                helpers: m.helpers.iter().map(|h| h.name.value.clone()).collect(),
                helper_args: m
                    .helpers
                    .into_iter()
                    .filter(|h| !h.args.is_empty())
                    .map(|h| (h.name.value, h.args.into_iter().map(arg_schema).collect()))
                    .collect(),
                args: m.args.into_iter().map(arg_schema).collect(),
                span: sp(m.name.span),
                name: m.name.value,
            })
            .collect(),
        api: d.api.into_iter().map(|a| (a.value, sp(a.span))).collect(),
        errors: parsed
            .errors
            .into_iter()
            .map(|e| (e.code, e.message, sp(e.span)))
            .collect(),
    }
}

fn arg_schema(a: cell_export::ArgSpec<proc_macro2::Span>) -> ArgSchema {
    ArgSchema {
        name: a.name.map(|n| n.value),
        kind: match a.kind {
            cell_export::ValueKind::Str => ValueKind::Str,
            cell_export::ValueKind::Bool => ValueKind::Bool,
            cell_export::ValueKind::Int => ValueKind::Int,
            cell_export::ValueKind::Expr => ValueKind::Expr,
            cell_export::ValueKind::OneOf(v) => ValueKind::OneOf(v),
        },
        optional: a.optional || a.default.is_some(),
        default: a.default.map(|l| match l.value {
            cell_export::Literal::Str(s) => s,
            other => other.to_string(),
        }),
    }
}

/// The doc comments among `attrs`, one line each, with the single leading space of `/// x`
/// removed.
pub(crate) fn docs_of(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parse(src: &str) -> Declaration {
        let ts = TokenStream::from_str(src).unwrap();
        parse_declaration(Path::new("/x/lib.rs"), ts)
    }

    #[test]
    fn adapts_the_contract_example_with_file_spans() {
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
        assert_eq!(
            d.macros.as_ref().map(|c| c.0.as_str()),
            Some("celldb_macros")
        );
        assert_eq!(d.exports.len(), 4);
        let p = &d.exports[0];
        assert_eq!(
            (p.name.as_str(), p.kind),
            ("persist", ExportKind::Attribute)
        );
        assert_eq!(p.helpers, ["key", "index", "unique", "auto_inc"]);
        assert_eq!(p.args[1].default.as_deref(), Some("local"));
        assert!(p.args[0].optional && p.args[1].optional);
        assert_eq!(d.exports[3].args[0].name, None);
        assert_eq!(d.exports[3].args[0].kind, ValueKind::Expr);
        assert_eq!(p.span.line, 6);
        assert_eq!(d.api.len(), 4);
    }

    #[test]
    fn errors_carry_their_codes() {
        let d = parse(r#"format = 2; cell = "kv";"#);
        assert!(
            d.errors
                .iter()
                .any(|e| e.0 == ProblemCode::UnsupportedExportFormat),
            "{:?}",
            d.errors
        );
        assert_eq!(d.cell.as_ref().map(|c| c.0.as_str()), Some("kv"));
        assert!(!parse("= = ; 12 \"x\"").errors.is_empty());
    }
}
