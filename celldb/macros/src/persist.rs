//! `#[persist]`: parse the struct and its field helpers, then generate `impl Table` and the
//! sugar methods (`get`, `by_<field>`, `scan`, `save`, `delete`, `count`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Attribute, Fields, Ident, ItemStruct, LitStr, Type, spanned::Spanned};

const HELPERS: [&str; 4] = ["key", "index", "unique", "auto_inc"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Key,
    Index,
    Unique,
}

struct Args {
    table: Option<LitStr>,
    buffered: bool,
    raft: bool,
    prev: Option<syn::Path>,
}

struct Column {
    ident: Ident,
    ty: Type,
    role: Role,
    /// `#[DB::auto_inc]`: the key is assigned from a counter when inserted as `0`.
    auto_inc: Option<Span>,
}

pub(crate) fn expand(
    args: TokenStream,
    item: TokenStream,
    invocation: Option<&str>,
) -> TokenStream {
    let mut errors: Vec<syn::Error> = Vec::new();
    let args = parse_args(args, invocation, &mut errors);
    let mut input: ItemStruct = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(e) => {
            // Point at the item's name when it is another kind of item (its keyword may have
            // been re-emitted by an outer macro such as `#[protein]`, with that macro's span).
            let span = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Enum(i)) => i.ident.span(),
                Ok(syn::Item::Union(i)) => i.ident.span(),
                Ok(syn::Item::Fn(i)) => i.sig.ident.span(),
                Ok(syn::Item::Trait(i)) => i.ident.span(),
                Ok(syn::Item::Impl(i)) => i.impl_token.span,
                _ => e.span(),
            };
            let e = syn::Error::new(
                span,
                "`#[DB::persist]` applies to a struct with named fields",
            );
            return with_errors(item, &[e]);
        }
    };
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "a `#[DB::persist]` table cannot be generic: its fingerprint must be one value",
        ));
    }
    let columns = collect_columns(&mut input, &mut errors);
    let key = choose_key(&input, &columns, &mut errors);
    let generated = match (&input.fields, key) {
        (Fields::Named(_), Some(key)) if input.generics.params.is_empty() => {
            let (db, db_error) = crate::paths::celldb_path();
            errors.extend(db_error);
            generate(&input, &args, key, &columns, &db)
        }
        _ => TokenStream::new(),
    };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    // Best effort: the struct (helpers stripped) and whatever could be generated stay, next to
    // the errors, so an editor keeps completing `User::get` while the user fixes a field.
    quote! { #input #generated #(#errors)* }
}

/// A helper (`#[DB::key]`…) used on its own, outside `#[DB::persist]`.
pub(crate) fn helper_alone(name: &str, _args: TokenStream, item: TokenStream) -> TokenStream {
    let e = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{name}]` is only valid on a field inside a `#[DB::persist]` struct, \
             which consumes it"
        ),
    );
    with_errors(item, &[e])
}

fn with_errors(tokens: TokenStream, errors: &[syn::Error]) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote!(#tokens #(#errors)*)
}

/// Reads `#[DB::persist(…)]`'s arguments against celldb's declaration: unknown names, wrong
/// kinds and undeclared values are reported by `cell_export` with the words cell-lsp uses; what
/// is left here is what only celldb knows (what a table name may be, that `prev` is a type).
fn parse_args(args: TokenStream, invocation: Option<&str>, errors: &mut Vec<syn::Error>) -> Args {
    let (parsed, problems) = schema().attribute_args("persist", invocation, args);
    errors.extend(problems.iter().map(cell_export::attr::to_syn_error));
    let table = parsed.str("table");
    if let Some(lit) = &table {
        let name = lit.value();
        if name.is_empty()
            || name.len() > 200
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errors.push(syn::Error::new(
                lit.span(),
                "a table name is 1 to 200 characters of `a-z`, `A-Z`, `0-9`, `_` or `-`",
            ));
        }
    }
    let prev = parsed
        .get("prev")
        .and_then(|v| match syn::parse2::<syn::Path>(v.tokens.clone()) {
            Ok(path) => Some(path),
            Err(_) => {
                errors.push(syn::Error::new_spanned(
                    v.span,
                    "`prev` names the type the records were written with: `prev = UserV1`",
                ));
                None
            }
        });
    let buffered = parsed.choice("durability").as_deref() == Some("buffered");
    let raft = parsed.choice("replicate").as_deref() == Some("raft");
    if raft
        && buffered
        && let Some(durability) = parsed.get("durability")
    {
        // Reported at the durability argument: it is the one that cannot hold.
        errors.push(syn::Error::new_spanned(
            durability.span,
            "`durability = \"buffered\"` cannot be combined with `replicate = \"raft\"`: a raft \
             table's write is acknowledged once a majority of the group has fsynced it\n\
             help: remove `durability`, or use `replicate = \"local\"` for a buffered table",
        ));
    }
    Args {
        table,
        buffered,
        raft,
        prev,
    }
}

/// celldb's export declaration, parsed once (from the copy in `export_decl.rs`).
pub(crate) fn schema() -> &'static cell_export::attr::Schema {
    static SCHEMA: std::sync::OnceLock<cell_export::attr::Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(
        || match cell_export::attr::Schema::parse(crate::export_decl::EXPORT_DECL) {
            Ok(schema) => schema,
            // The copy is checked against lib.rs by this crate's tests, so this cannot ship.
            Err(e) => panic!("celldb-macros' copy of the export declaration is broken: {e}"),
        },
    )
}

/// Strips helper attributes from the fields and returns the columns they mark.
fn collect_columns(input: &mut ItemStruct, errors: &mut Vec<syn::Error>) -> Vec<Column> {
    let mut columns = Vec::new();
    // The alias prefix of the first helper seen (`DB` in `#[DB::key]`); see the crate docs.
    let mut alias: Option<(String, Span)> = None;
    let Fields::Named(fields) = &mut input.fields else {
        errors.push(syn::Error::new(
            input.ident.span(),
            "`#[DB::persist]` needs a struct with named fields (one of them the key)",
        ));
        return columns;
    };
    for field in &mut fields.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut roles: Vec<(Role, Span)> = Vec::new();
        let mut auto_inc: Option<Span> = None;
        let mut kept: Vec<Attribute> = Vec::new();
        for attr in field.attrs.drain(..) {
            let Some(name) = helper_name(&attr) else {
                // A refused `cfg_attr` is dropped: kept, rustc would add its own error.
                if !refuse_helpers_in_cfg_attr(&attr, errors) {
                    kept.push(attr);
                }
                continue;
            };
            let prefix = prefix_of(attr.path());
            match &alias {
                None => alias = Some((prefix, attr.path().span())),
                Some((first, _)) if *first != prefix => errors.push(syn::Error::new(
                    attr.path().span(),
                    format!(
                        "this helper is written under `{}` but the other helpers of this table \
                         under `{}`: write every helper under the alias of the provider whose \
                         `persist` you use",
                        display_prefix(&prefix),
                        display_prefix(first)
                    ),
                )),
                Some(_) => {}
            }
            // Arguments on a helper: checked against the declaration (`key` takes none).
            let (_, problems) = schema().helper_args("persist", &attr);
            errors.extend(problems.iter().map(cell_export::attr::to_syn_error));
            let role = match name.as_str() {
                "key" => Role::Key,
                "index" => Role::Index,
                "unique" => Role::Unique,
                _ => {
                    auto_inc = Some(attr.path().span());
                    continue;
                }
            };
            if let Some((_, first)) = roles.first() {
                errors.push(syn::Error::new(
                    attr.path().span(),
                    "a field takes one of `key`, `index`, `unique` (a key is already unique)",
                ));
                let _ = first;
                continue;
            }
            roles.push((role, attr.path().span()));
        }
        field.attrs = kept;
        // `auto_inc` alone implies `key`.
        let role = match (roles.first(), auto_inc) {
            (Some((role, _)), _) => Some(*role),
            (None, Some(_)) => Some(Role::Key),
            (None, None) => None,
        };
        if let Some(role) = role {
            if let Some(span) = auto_inc {
                if role != Role::Key {
                    errors.push(syn::Error::new(
                        span,
                        "`auto_inc` applies to the key field (`#[DB::key] #[DB::auto_inc] id: u64`)",
                    ));
                } else if !is_u64(&field.ty) {
                    errors.push(syn::Error::new(
                        field.ty.span(),
                        "an `auto_inc` key must be a `u64`",
                    ));
                }
            }
            columns.push(Column {
                ident,
                ty: field.ty.clone(),
                role,
                auto_inc: auto_inc.filter(|_| role == Role::Key && is_u64(&field.ty)),
            });
        }
    }
    columns
}

fn is_u64(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("u64"))
}

/// A helper behind `cfg_attr` would reach `persist` unexpanded (an attribute macro sees its
/// item before `cfg_attr` is evaluated) and would then fail as a stray attribute on a field.
/// It is refused with the reason instead: a table's key and indexes decide its stored layout,
/// which must not change with the features a binary is built with. Returns whether it refused.
fn refuse_helpers_in_cfg_attr(attr: &Attribute, errors: &mut Vec<syn::Error>) -> bool {
    if !attr.path().is_ident("cfg_attr") {
        return false;
    }
    let Ok(items) = attr.parse_args_with(
        syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
    ) else {
        return false; // Malformed: rustc reports it.
    };
    let mut refused = false;
    // The first item is the condition; the rest are attributes (nested `cfg_attr` included).
    for meta in items.iter().skip(1) {
        let path = meta.path();
        let Some(last) = path.segments.last() else {
            continue;
        };
        let name = last.ident.to_string();
        if HELPERS.contains(&name.as_str()) {
            refused = true;
            errors.push(syn::Error::new_spanned(
                path,
                format!(
                    "`#[{}]` cannot sit inside `cfg_attr`: a table's key, indexes and unique \
                     fields decide how its records are stored, so they must be the same in \
                     every build; write it as a plain attribute",
                    quote::quote!(#path).to_string().replace(' ', "")
                ),
            ));
        } else if path.is_ident("cfg_attr")
            && let syn::Meta::List(list) = meta
        {
            let nested: Attribute = syn::parse_quote!(#[#list]);
            refused |= refuse_helpers_in_cfg_attr(&nested, errors);
        }
    }
    refused
}

fn helper_name(attr: &Attribute) -> Option<String> {
    let last = attr.path().segments.last()?.ident.to_string();
    HELPERS.contains(&last.as_str()).then_some(last)
}

fn prefix_of(path: &syn::Path) -> String {
    let n = path.segments.len();
    path.segments
        .iter()
        .take(n.saturating_sub(1))
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn display_prefix(prefix: &str) -> &str {
    if prefix.is_empty() {
        "no alias"
    } else {
        prefix
    }
}

fn choose_key<'a>(
    input: &ItemStruct,
    columns: &'a [Column],
    errors: &mut Vec<syn::Error>,
) -> Option<KeyChoice<'a>> {
    let keys: Vec<&Column> = columns.iter().filter(|c| c.role == Role::Key).collect();
    match keys.as_slice() {
        [one] => Some(KeyChoice::Column(one)),
        [] => {
            // Documented default: a field named `id` is the key.
            let id = input
                .fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| i == "id"));
            match id {
                Some(field) => Some(KeyChoice::Id(Box::new(field.ty.clone()))),
                None => {
                    if matches!(input.fields, Fields::Named(_)) {
                        errors.push(syn::Error::new(
                            input.ident.span(),
                            "a `#[DB::persist]` struct needs a key: mark one field `#[DB::key]` \
                             (or name it `id`)",
                        ));
                    }
                    None
                }
            }
        }
        [first, rest @ ..] => {
            for extra in rest {
                errors.push(syn::Error::new(
                    extra.ident.span(),
                    format!(
                        "a table has exactly one `#[DB::key]`; `{}` is already the key \
                         (for a composite key use one tuple field)",
                        first.ident
                    ),
                ));
            }
            Some(KeyChoice::Column(first))
        }
    }
}

enum KeyChoice<'a> {
    Column(&'a Column),
    Id(Box<Type>),
}

fn generate(
    input: &ItemStruct,
    args: &Args,
    key: KeyChoice<'_>,
    columns: &[Column],
    db: &TokenStream,
) -> TokenStream {
    let ident = &input.ident;
    let vis = &input.vis;
    let (key_ident, key_ty, auto_inc) = match key {
        KeyChoice::Column(c) => (c.ident.clone(), c.ty.clone(), c.auto_inc.is_some()),
        KeyChoice::Id(ty) => (format_ident!("id"), *ty, false),
    };
    let auto_inc = auto_inc.then(|| {
        quote! {
            fn auto_key(&self) -> ::core::option::Option<u64> {
                ::core::option::Option::Some(self.#key_ident)
            }
            fn with_auto_key(&self, key: u64) -> ::core::option::Option<Self> {
                let mut copy = ::core::clone::Clone::clone(self);
                copy.#key_ident = key;
                ::core::option::Option::Some(copy)
            }
        }
    });
    let table = args
        .table
        .as_ref()
        .map_or_else(|| snake_case(&ident.to_string()), LitStr::value);
    let indexed: Vec<&Column> = columns.iter().filter(|c| c.role != Role::Key).collect();

    // Every key and indexed field must implement `Key`: checked at the field's type, so the
    // error points there and not at the macro.
    let key_checks = std::iter::once(&key_ty)
        .chain(indexed.iter().map(|c| &c.ty))
        .map(|ty| {
            quote_spanned! {ty.span()=>
                const _: fn() = || {
                    fn must_be_a_key<K: #db::Key>() {}
                    must_be_a_key::<#ty>();
                };
            }
        });

    let index_defs = indexed.iter().map(|c| {
        let name = c.ident.to_string();
        let unique = c.role == Role::Unique;
        quote!(#db::IndexDef { name: #name, unique: #unique })
    });
    let encode_arms = indexed.iter().enumerate().map(|(i, c)| {
        let f = &c.ident;
        // Spanned at the field's type: a type that is not a `Key` is reported there.
        quote_spanned!(c.ty.span()=> #i => #db::Key::encode_key(&self.#f, out),)
    });
    let durability = if args.buffered {
        quote!(::core::option::Option::Some(#db::Durability::Buffered))
    } else {
        quote!(::core::option::Option::None)
    };
    let replicate = if args.raft {
        quote!(#db::Replicate::Raft)
    } else {
        quote!(#db::Replicate::Local)
    };
    let previous = args.prev.as_ref().map(|prev| {
        quote! {
            fn previous() -> ::core::option::Option<#db::Previous<Self>> {
                ::core::option::Option::Some(#db::Previous {
                    fingerprint: <#prev as #db::__private::Fingerprint>::FINGERPRINT,
                    describe: <#prev as #db::__private::Fingerprint>::describe,
                    upgrade: |bytes| {
                        #db::__private::codec::from_bytes::<#prev>(bytes)
                            .map(<Self as ::core::convert::From<#prev>>::from)
                    },
                })
            }
        }
    });

    let lookups = indexed.iter().enumerate().map(|(i, c)| {
        let f = &c.ident;
        let ty = &c.ty;
        let method = format_ident!("by_{}", f, span = f.span());
        if c.role == Role::Unique {
            let doc = format!("The `{table}` record whose unique `{f}` equals `value`.");
            quote! {
                #[doc = #doc]
                #vis async fn #method(
                    value: impl #db::KeyArg<#ty>,
                ) -> #db::Result<::core::option::Option<Self>> {
                    let value = #db::__private::encode::<#ty, _>(&value);
                    let found = #db::current()?.by_index::<Self>(#i, value).await?;
                    ::core::result::Result::Ok(found.into_iter().next())
                }
            }
        } else {
            let doc = format!("Every `{table}` record whose `{f}` equals `value`, in key order.");
            quote! {
                #[doc = #doc]
                #vis async fn #method(
                    value: impl #db::KeyArg<#ty>,
                ) -> #db::Result<::std::vec::Vec<Self>> {
                    let value = #db::__private::encode::<#ty, _>(&value);
                    #db::current()?.by_index::<Self>(#i, value).await
                }
            }
        }
    });
    let get_doc =
        format!("The `{table}` record with key `{key_ident}`, from the current database.");

    quote! {
        #(#key_checks)*

        impl #db::Table for #ident {
            type Key = #key_ty;
            const TABLE: &'static str = #table;
            const INDEXES: &'static [#db::IndexDef] = &[#(#index_defs),*];
            const DURABILITY: ::core::option::Option<#db::Durability> = #durability;
            const REPLICATE: #db::Replicate = #replicate;

            fn key(&self) -> &Self::Key {
                &self.#key_ident
            }

            #[allow(unused_variables)]
            fn encode_index(&self, index: usize, out: &mut ::std::vec::Vec<u8>) {
                match index {
                    #(#encode_arms)*
                    _ => {}
                }
            }

            #previous
            #auto_inc
        }

        #[allow(dead_code)]
        impl #ident {
            #[doc = #get_doc]
            #vis async fn get(
                #key_ident: impl #db::KeyArg<#key_ty>,
            ) -> #db::Result<::core::option::Option<Self>> {
                #db::get::<Self>(#key_ident).await
            }

            #(#lookups)*

            /// The records whose key lies in `range`, in key order.
            #vis async fn scan(
                range: impl ::core::ops::RangeBounds<#key_ty>,
            ) -> #db::Result<::std::vec::Vec<Self>> {
                #db::scan::<Self>(range).await
            }

            /// Inserts this record as new; returns its key (the assigned one for an
            /// `auto_inc` key given as `0`).
            #vis async fn insert(&self) -> #db::Result<#key_ty> {
                #db::insert(self).await
            }

            /// Inserts or replaces this record (and its index entries) atomically.
            #vis async fn save(&self) -> #db::Result<()> {
                #db::upsert(self).await
            }

            /// Deletes the record with this key; `true` if it existed.
            #vis async fn delete(
                #key_ident: impl #db::KeyArg<#key_ty>,
            ) -> #db::Result<bool> {
                #db::delete::<Self>(#key_ident).await
            }

            /// Number of records in the table.
            #vis async fn count() -> #db::Result<usize> {
                #db::count::<Self>().await
            }
        }
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cell_export::ValueKind;

    /// The macros read the copy of the declaration in `export_decl.rs`; it must say what
    /// lib.rs says. `CELL_EXPORT_UPDATE=1 cargo test -p celldb-macros` rewrites a stale copy.
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

    /// celldb's `export!` declaration is what tools (the index, cell-lsp) show and check; it
    /// must describe exactly what this macro accepts.
    #[test]
    fn the_export_declaration_matches_the_implementation() {
        let file = cell_export::parse_file(include_str!("../../src/lib.rs"));
        assert_eq!(file.decls.len(), 1);
        let parsed = &file.decls[0];
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let decl = &parsed.decl;
        let persist = decl.macro_named("persist").unwrap();
        let helpers: Vec<&str> = persist
            .helpers
            .iter()
            .map(|h| h.name.value.as_str())
            .collect();
        assert_eq!(helpers, ["key", "index", "unique", "auto_inc"]);
        // Every helper is also exported as a macro (celldb-macros' `helper_alone`), so one
        // written outside `persist` gets celldb's error rather than "cannot find attribute".
        for helper in &helpers {
            assert!(decl.macro_named(helper).is_some(), "{helper}");
        }

        let args: Vec<(String, ValueKind, bool, Option<String>)> = persist
            .args
            .iter()
            .map(|a| {
                (
                    a.name.as_ref().unwrap().value.clone(),
                    a.kind.clone(),
                    a.optional,
                    a.default.as_ref().map(|d| d.value.to_string()),
                )
            })
            .collect();
        let one_of = |v: &[&str]| ValueKind::OneOf(v.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(
            args,
            [
                ("table".into(), ValueKind::Str, true, None),
                (
                    "durability".into(),
                    one_of(&["sync", "buffered"]),
                    false,
                    Some("\"sync\"".into())
                ),
                ("prev".into(), ValueKind::Expr, true, None),
                (
                    "replicate".into(),
                    one_of(&["local", "raft"]),
                    false,
                    Some("\"local\"".into())
                ),
            ]
        );

        // Every declared value is accepted, and nothing else.
        for arg in &persist.args {
            let name = &arg.name.as_ref().unwrap().value;
            let values: Vec<String> = match &arg.kind {
                ValueKind::OneOf(values) => values.iter().map(|v| format!("{v:?}")).collect(),
                ValueKind::Str => vec!["\"users\"".into()],
                ValueKind::Expr => vec!["UserV1".into()],
                other => panic!("{name}: no sample for {other}"),
            };
            for value in values {
                let mut errors = Vec::new();
                parse_args(
                    format!("{name} = {value}").parse().unwrap(),
                    None,
                    &mut errors,
                );
                assert!(errors.is_empty(), "{name} = {value}: {errors:?}");
            }
            if let ValueKind::OneOf(_) = arg.kind {
                let mut errors = Vec::new();
                parse_args(
                    format!("{name} = \"other\"").parse().unwrap(),
                    None,
                    &mut errors,
                );
                assert_eq!(errors.len(), 1, "{name} = \"other\"");
            }
        }
        let mut errors = Vec::new();
        parse_args("colour = 1".parse().unwrap(), None, &mut errors);
        assert_eq!(errors.len(), 1);
    }
}
