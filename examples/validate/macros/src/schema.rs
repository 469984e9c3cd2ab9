//! `#[schema]`: field helpers → a `validate()` that checks them all.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Fields, ItemStruct, Type};

/// The helpers `schema` consumes; keep in sync with the `export!` declaration in `validate`.
const HELPERS: [&str; 5] = ["email", "non_empty", "range", "length", "custom"];

/// The problem code of the checks only this macro makes (see `cell_resolver::ProblemCode`;
/// CELL0011's messages come from `cell_export::args`, shared with cell-lsp).
const BAD_ARGUMENT: cell_resolver::ProblemCode = cell_resolver::ProblemCode::InvalidMacroArgument;

enum Rule {
    Email,
    NonEmpty,
    Range(Expr),
    Length(Option<usize>, Option<usize>),
    Custom(Expr),
}

struct Check {
    field: TokenStream,
    name: String,
    optional: bool,
    rule: Rule,
    span: Span,
}

pub(crate) fn expand(
    args: TokenStream,
    item: TokenStream,
    invocation: Option<&str>,
) -> TokenStream {
    let mut errors = Vec::new();
    // `schema` declares no arguments: anything written is reported with the shared words.
    let (_, problems) = schema().attribute_args("schema", invocation, args);
    errors.extend(problems.iter().map(cell_export::attr::to_syn_error));
    let mut item: ItemStruct = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            // Not a struct (or not finished typing): keep the user's tokens for the editor.
            let message = if syn::parse2::<syn::DeriveInput>(item.clone()).is_ok() {
                "`schema` applies to a struct with fields; enums and unions are not supported"
                    .to_owned()
            } else {
                format!("`schema` applies to a struct: {e}")
            };
            let error = syn::Error::new(e.span(), message).to_compile_error();
            return quote!(#item #error);
        }
    };
    let alias = invocation.and_then(cell_export::attr::alias_of);
    // Parents still to expand on this item: helpers under their aliases are theirs.
    let pending: Vec<String> = item
        .attrs
        .iter()
        .filter_map(|a| split(a.path()).map(|(prefix, _)| prefix))
        .collect();

    let (runtime, runtime_error) = runtime_path();
    errors.extend(runtime_error);

    let mut checks = Vec::new();
    let fields: Vec<&mut syn::Field> = match &mut item.fields {
        Fields::Named(f) => f.named.iter_mut().collect(),
        Fields::Unnamed(f) => f.unnamed.iter_mut().collect(),
        Fields::Unit => Vec::new(),
    };
    for (index, field) in fields.into_iter().enumerate() {
        let (access, name) = match &field.ident {
            Some(ident) => (
                ident.to_token_stream(),
                ident.to_string().trim_start_matches("r#").to_owned(),
            ),
            None => (syn::Index::from(index).to_token_stream(), index.to_string()),
        };
        let optional = is_option(&field.ty);
        let mut kept = Vec::new();
        for attr in std::mem::take(&mut field.attrs) {
            match classify(&attr, alias.as_deref(), &pending) {
                Owner::Other => kept.push(attr),
                Owner::Ours { foreign } => {
                    if let Some(foreign) = foreign {
                        // The words cell-lsp shows for the same mistake, at the alias.
                        let at = attr
                            .path()
                            .segments
                            .first()
                            .map_or_else(|| attr.path().span(), |s| s.ident.span());
                        errors.push(cell_export::attr::to_syn_error(
                            &cell_export::args::foreign_helper(
                                &last(attr.path()),
                                alias.as_deref().unwrap_or("Val"),
                                "schema",
                                &foreign,
                                cell_export::attr::SpanRange::single(at),
                            ),
                        ));
                    }
                    match rule(&attr) {
                        Ok(rule) => checks.push(Check {
                            field: access.clone(),
                            name: name.clone(),
                            optional,
                            rule,
                            span: attr.span(),
                        }),
                        Err(e) => errors.extend(e),
                    }
                }
            }
        }
        field.attrs = kept;
    }

    let validate_impl = generate(&item, &checks, &runtime);
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        #item
        #validate_impl
        #(#errors)*
    }
}

fn split(path: &syn::Path) -> Option<(String, String)> {
    if path.segments.len() < 2 {
        return None;
    }
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let (last, prefix) = names.split_last()?;
    Some((prefix.join("::"), last.clone()))
}

/// The helper's own name token (`email` in `Val::email`): where argument errors point.
fn name_span(attr: &Attribute) -> Span {
    attr.path()
        .segments
        .last()
        .map_or_else(|| attr.span(), |s| s.ident.span())
}

fn last(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

enum Owner {
    /// Not ours: another provider's helper or an ordinary attribute.
    Other,
    /// Ours; `foreign` holds the alias it was wrongly written under.
    Ours { foreign: Option<String> },
}

fn classify(attr: &Attribute, alias: Option<&str>, pending: &[String]) -> Owner {
    let Some((prefix, name)) = split(attr.path()) else {
        return Owner::Other;
    };
    if alias == Some(prefix.as_str()) {
        // Under our alias: ours, known or not (unknown ones are reported by `rule`).
        return Owner::Ours { foreign: None };
    }
    if !HELPERS.contains(&name.as_str()) || pending.contains(&prefix) {
        return Owner::Other;
    }
    // One of our helper names under an alias no pending parent will consume: the user meant
    // us. With a known alias that is a mistake to report; without one it is simply ours.
    Owner::Ours {
        foreign: alias.map(|_| prefix),
    }
}

/// The rule a helper stands for. Its arguments are read against `validate`'s declaration by
/// `cell_export` (the words cell-lsp shows too); what is checked here is only what the
/// declaration cannot say: that `length` has a bound, and that `min <= max`.
fn rule(attr: &Attribute) -> Result<Rule, Vec<syn::Error>> {
    let name = last(attr.path());
    if !HELPERS.contains(&name.as_str()) {
        // The words cell-lsp shows for the same mistake (`cell_export::args`).
        let p = cell_export::args::unknown_helper(
            &name,
            "schema",
            &HELPERS,
            cell_export::attr::SpanRange::single(name_span(attr)),
        );
        return Err(vec![cell_export::attr::to_syn_error(&p)]);
    }
    let (args, problems) = schema().helper_args("schema", attr);
    if !problems.is_empty() {
        return Err(problems
            .iter()
            .map(cell_export::attr::to_syn_error)
            .collect());
    }
    let expr = || -> Result<Expr, Vec<syn::Error>> {
        let value = args.positional(0).ok_or_else(|| {
            vec![syn::Error::new(
                name_span(attr),
                format!("{BAD_ARGUMENT}: `{name}` needs an argument"),
            )]
        })?;
        syn::parse2::<Expr>(value.tokens.clone()).map_err(|e| vec![e])
    };
    match name.as_str() {
        "email" => Ok(Rule::Email),
        "non_empty" => Ok(Rule::NonEmpty),
        "range" => expr().map(Rule::Range),
        "custom" => expr().map(Rule::Custom),
        _ => {
            let (min, max) = (args.int::<usize>("min"), args.int::<usize>("max"));
            let bad = |span: Span, message: String| Err(vec![syn::Error::new(span, message)]);
            match (min, max) {
                (None, None) => bad(
                    name_span(attr),
                    format!(
                        "{BAD_ARGUMENT}: `length` takes `min = N`, `max = N` or both, e.g. \
                         `#[{}::length(min = 1, max = 64)]`",
                        split(attr.path()).map_or_else(|| "Val".to_owned(), |(p, _)| p)
                    ),
                ),
                (Some(lo), Some(hi)) if lo > hi => bad(
                    args.get("min")
                        .map_or_else(|| name_span(attr), |v| v.span.start),
                    format!("{BAD_ARGUMENT}: `min` ({lo}) is greater than `max` ({hi})"),
                ),
                _ => Ok(Rule::Length(min, max)),
            }
        }
    }
}

/// `validate`'s export declaration, parsed once (from the copy in `export_decl.rs`).
fn schema() -> &'static cell_export::attr::Schema {
    static SCHEMA: std::sync::OnceLock<cell_export::attr::Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(
        || match cell_export::attr::Schema::parse(crate::export_decl::EXPORT_DECL) {
            Ok(schema) => schema,
            // The copy is checked against lib.rs by this crate's tests, so this cannot ship.
            Err(e) => panic!("validate-macros' copy of the export declaration is broken: {e}"),
        },
    )
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option")
        }
        Type::Group(g) => is_option(&g.elem),
        Type::Paren(p) => is_option(&p.elem),
        _ => false,
    }
}

fn generate(item: &ItemStruct, checks: &[Check], v: &TokenStream) -> TokenStream {
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let body = checks.iter().map(|c| {
        let name = &c.name;
        let call = match &c.rule {
            Rule::Email => quote_spanned!(c.span=> #v::__private::email(&mut __errors, #name, __value)),
            Rule::NonEmpty => quote_spanned!(c.span=> #v::__private::non_empty(&mut __errors, #name, __value)),
            Rule::Range(range) => {
                let shown = range.to_token_stream().to_string().replace(" ", "");
                quote_spanned!(range.span()=> #v::__private::range(&mut __errors, #name, __value, #range, #shown))
            }
            Rule::Length(min, max) => {
                let opt = |x: &Option<usize>| match x {
                    Some(n) => quote!(::core::option::Option::Some(#n)),
                    None => quote!(::core::option::Option::None),
                };
                let (min, max) = (opt(min), opt(max));
                quote_spanned!(c.span=> #v::__private::length(&mut __errors, #name, __value, #min, #max))
            }
            Rule::Custom(f) => quote_spanned!(f.span()=> #v::__private::custom(&mut __errors, #name, __value, #f)),
        };
        let field = &c.field;
        if c.optional {
            quote!(if let ::core::option::Option::Some(__value) = &self.#field { #call; })
        } else {
            quote!({ let __value = &self.#field; #call; })
        }
    });
    quote! {
        impl #impl_generics #v::Validate for #ident #ty_generics #where_clause {
            fn validate(&self) -> ::core::result::Result<(), ::std::vec::Vec<#v::ValidationError>> {
                #[allow(unused_mut)]
                let mut __errors = ::std::vec::Vec::new();
                #(#body)*
                if __errors.is_empty() {
                    ::core::result::Result::Ok(())
                } else {
                    ::core::result::Result::Err(__errors)
                }
            }
        }

        impl #impl_generics #ident #ty_generics #where_clause {
            /// Checks every rule written on the fields (generated by `schema`); returns every
            /// failure, in field order.
            #[allow(dead_code)]
            pub fn validate(&self) -> ::core::result::Result<(), ::std::vec::Vec<#v::ValidationError>> {
                <Self as #v::Validate>::validate(self)
            }
        }
    }
}

/// The runtime crate as the consumer names it (through `cell-resolver`).
fn runtime_path() -> (TokenStream, Option<syn::Error>) {
    match cell_resolver::resolve_from_env(concat!("validate@", env!("CARGO_PKG_VERSION"))) {
        Ok(r) => match syn::parse_str::<syn::Ident>(&r.extern_crate) {
            Ok(ident) => (quote!(::#ident), None),
            Err(_) => (quote!(::validate), None),
        },
        Err(e) => (
            quote!(::validate),
            Some(syn::Error::new(
                Span::call_site(),
                format!("{e}\n  note: `schema` generates code that calls the `validate` crate"),
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(item: &str, invocation: Option<&str>) -> String {
        let item: TokenStream = item.parse().unwrap();
        expand(TokenStream::new(), item, invocation).to_string()
    }

    /// The `export!` declaration in `validate` is what tools show; it must describe exactly
    /// what this macro accepts.
    #[test]
    fn the_export_declaration_matches_the_implementation() {
        let file = cell_export::parse_file(include_str!("../../src/lib.rs"));
        assert_eq!(file.decls.len(), 1);
        let parsed = &file.decls[0];
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let schema = parsed.decl.macro_named("schema").unwrap();
        assert!(schema.args.is_empty());
        let names: Vec<&str> = schema
            .helpers
            .iter()
            .map(|h| h.name.value.as_str())
            .collect();
        assert_eq!(names, HELPERS);
        let args = |name: &str| -> Vec<(Option<String>, cell_export::ValueKind, bool)> {
            schema
                .helper(name)
                .unwrap()
                .args
                .iter()
                .map(|a| {
                    (
                        a.name.as_ref().map(|n| n.value.clone()),
                        a.kind.clone(),
                        a.optional,
                    )
                })
                .collect()
        };
        use cell_export::ValueKind::{Expr, Int};
        assert!(args("email").is_empty());
        assert!(args("non_empty").is_empty());
        assert_eq!(args("range"), [(None, Expr, false)]);
        assert_eq!(args("custom"), [(None, Expr, false)]);
        assert_eq!(
            args("length"),
            [
                (Some("min".into()), Int, true),
                (Some("max".into()), Int, true)
            ]
        );
    }

    /// The macro reads the copy of the declaration in `export_decl.rs`; it must say what
    /// lib.rs says. `CELL_EXPORT_UPDATE=1 cargo test -p validate-macros` rewrites a stale copy.
    #[test]
    fn the_copy_of_the_export_declaration_is_current() {
        let lib_rs = include_str!("../../src/lib.rs");
        if let Err(stale) = cell_export::attr::check_copy(lib_rs, crate::export_decl::EXPORT_DECL) {
            if std::env::var_os("CELL_EXPORT_UPDATE").is_some() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/export_decl.rs");
                std::fs::write(path, cell_export::attr::render_copy(lib_rs).unwrap()).unwrap();
            } else {
                panic!("{stale}\n(or run with CELL_EXPORT_UPDATE=1 to rewrite it)");
            }
        }
    }

    #[test]
    fn helpers_under_another_alias_are_rejected_and_stripped() {
        let out = expand_str("struct S { #[G::email] e: String }", Some("#[Val::schema]"));
        assert!(out.contains("CELL0011"), "{out}");
        assert!(!out.contains("# [G :: email]"), "{out}");
        // Best effort: the rule is still checked.
        assert!(out.contains("email (& mut __errors"), "{out}");
    }

    #[test]
    fn helpers_of_a_pending_parent_are_left_alone() {
        let out = expand_str(
            "#[G::persist] struct S { #[G::email] e: String }",
            Some("#[Val::schema]"),
        );
        assert!(!out.contains("CELL0011"), "{out}");
        assert!(out.contains("# [G :: email]"), "{out}");
    }

    #[test]
    fn without_source_text_helpers_are_recognised_by_name() {
        let out = expand_str(
            "struct S { #[V::email] e: String, #[serde(x)] f: u8 }",
            None,
        );
        assert!(!out.contains("CELL0011"), "{out}");
        assert!(!out.contains("V :: email"), "{out}");
        assert!(out.contains("# [serde (x)]"), "{out}");
    }

    #[test]
    fn half_typed_input_keeps_the_users_tokens() {
        let out = expand_str("struct S { email: }", Some("#[Val::schema]"));
        assert!(out.contains("struct S { email : }"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        let out = expand_str("enum E { A }", Some("#[Val::schema]"));
        assert!(out.contains("enum E { A }"), "{out}");
        assert!(out.contains("enums and unions are not supported"), "{out}");
    }

    #[test]
    fn arguments_of_schema_itself_are_rejected_but_the_struct_expands() {
        let args: TokenStream = "strict".parse().unwrap();
        let item: TokenStream = "struct S { #[Val::non_empty] n: String }".parse().unwrap();
        let out = expand(args, item, Some("#[Val::schema(strict)]")).to_string();
        assert!(out.contains("CELL0014"), "{out}");
        assert!(out.contains("impl"), "{out}");
    }
}
