//! `#[schema]`: field helpers → a `validate()` that checks them all.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Fields, ItemStruct, Meta, Token, Type};

/// The helpers `schema` consumes; keep in sync with the `export!` declaration in `validate`.
const HELPERS: [&str; 5] = ["email", "non_empty", "range", "length", "custom"];

/// Problem codes (see `cell_resolver::ProblemCode`; spelled out to keep this crate's
/// dependency on the resolver to the one call it needs).
const FOREIGN_HELPER: cell_resolver::ProblemCode = cell_resolver::ProblemCode::ForeignHelper;
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
    if !args.is_empty() {
        errors.push(syn::Error::new(
            args.span(),
            format!("{BAD_ARGUMENT}: `schema` takes no arguments; put rules on the fields"),
        ));
    }
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
    let alias = invocation.and_then(alias_of);
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
                        errors.push(syn::Error::new(
                            attr.path().span(),
                            format!(
                                "{FOREIGN_HELPER}: `{helper}` is a helper of `{a}::schema`, but it \
                                 is written under `{foreign}`, another alias: write `#[{a}::{helper}]`",
                                helper = last(attr.path()),
                                a = alias.as_deref().unwrap_or("Val"),
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
                        Err(e) => errors.push(e),
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

/// `#[Val::schema(..)]` → `Val`; `#[validate::schema]` → `validate`; `#[schema]` → none.
fn alias_of(invocation: &str) -> Option<String> {
    let inner = invocation.trim().strip_prefix("#[")?;
    let path = inner.split(['(', ']', '=']).next()?.trim();
    let compact: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    let (prefix, _) = compact.rsplit_once("::")?;
    Some(prefix.trim_start_matches("::").to_owned())
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

fn rule(attr: &Attribute) -> Result<Rule, syn::Error> {
    let name = last(attr.path());
    let prefix = split(attr.path()).map_or_else(|| "Val".to_owned(), |(p, _)| p);
    let no_args = |rule: Rule| match &attr.meta {
        Meta::Path(_) => Ok(rule),
        _ => Err(syn::Error::new(
            name_span(attr),
            format!("{BAD_ARGUMENT}: `{name}` takes no arguments"),
        )),
    };
    let one_expr = |example: &str| -> Result<Expr, syn::Error> {
        let usage = format!(
            "{BAD_ARGUMENT}: `{name}` takes one argument, e.g. `#[{prefix}::{name}({example})]`"
        );
        match &attr.meta {
            Meta::List(list) if !list.tokens.is_empty() => syn::parse2::<Expr>(list.tokens.clone())
                .map_err(|e| syn::Error::new(e.span(), usage)),
            _ => Err(syn::Error::new(name_span(attr), usage)),
        }
    };
    match name.as_str() {
        "email" => no_args(Rule::Email),
        "non_empty" => no_args(Rule::NonEmpty),
        "range" => one_expr("1..=100").map(Rule::Range),
        "custom" => one_expr("my_check").map(Rule::Custom),
        "length" => length(attr, &prefix),
        other => {
            let close: Vec<&str> = HELPERS
                .iter()
                .copied()
                .filter(|h| h.starts_with(&other[..other.len().min(2)]) || h.contains(other))
                .collect();
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean `{}`?)", close.join("` or `"))
            };
            Err(syn::Error::new(
                name_span(attr),
                format!(
                    "{FOREIGN_HELPER}: `{other}` is not a helper of `schema`{hint}; helpers: {}",
                    HELPERS.join(", ")
                ),
            ))
        }
    }
}

fn length(attr: &Attribute, prefix: &str) -> Result<Rule, syn::Error> {
    let usage = format!(
        "{BAD_ARGUMENT}: `length` takes `min = N`, `max = N` or both, e.g. `#[{prefix}::length(min = 1, max = 64)]`"
    );
    let Meta::List(list) = &attr.meta else {
        return Err(syn::Error::new(attr.meta.span(), usage));
    };
    let pairs = list
        .parse_args_with(Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated)
        .map_err(|e| syn::Error::new(e.span(), &usage))?;
    let (mut min, mut max) = (None, None);
    for pair in &pairs {
        let value = match &pair.value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) => i.base10_parse::<usize>()?,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    format!("{BAD_ARGUMENT}: `length` bounds are integer literals"),
                ));
            }
        };
        let slot = if pair.path.is_ident("min") {
            &mut min
        } else if pair.path.is_ident("max") {
            &mut max
        } else {
            return Err(syn::Error::new(
                pair.path.span(),
                format!("{BAD_ARGUMENT}: unknown argument of `length`: expected `min` or `max`"),
            ));
        };
        if slot.replace(value).is_some() {
            return Err(syn::Error::new(
                pair.path.span(),
                format!("{BAD_ARGUMENT}: given twice"),
            ));
        }
    }
    match (min, max) {
        (None, None) => Err(syn::Error::new(list.span(), usage)),
        (Some(lo), Some(hi)) if lo > hi => Err(syn::Error::new(
            list.tokens.span(),
            format!("{BAD_ARGUMENT}: `min` ({lo}) is greater than `max` ({hi})"),
        )),
        _ => Ok(Rule::Length(min, max)),
    }
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

    #[test]
    fn the_alias_comes_from_the_attribute_as_written() {
        assert_eq!(alias_of("#[Val::schema]").as_deref(), Some("Val"));
        assert_eq!(alias_of("#[ v :: schema ( x ) ]").as_deref(), Some("v"));
        assert_eq!(
            alias_of("#[::validate::schema]").as_deref(),
            Some("validate")
        );
        assert_eq!(alias_of("#[schema]"), None);
        assert_eq!(alias_of("not an attribute"), None);
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
