//! `#[table]`: read the struct and its field helpers against the declaration, then generate
//! `impl Table`, `impl Tables` and the column constants.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Attribute, Fields, Ident, ItemStruct, Type, spanned::Spanned};

const HELPERS: [&str; 6] = [
    "primary_key",
    "serial",
    "unique",
    "index",
    "varchar",
    "column",
];

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// One field, as the table stores it.
struct Field {
    ident: Ident,
    ty: Type,
    /// The column's name.
    name: String,
    primary_key: bool,
    serial: Option<Span>,
    unique: bool,
    index: bool,
    varchar: Option<(u32, Span)>,
}

pub(crate) fn expand(
    args: TokenStream,
    item: TokenStream,
    invocation: Option<&str>,
) -> TokenStream {
    let mut errors: Vec<syn::Error> = Vec::new();
    let (parsed, problems) = schema().attribute_args("table", invocation, args);
    errors.extend(problems.iter().map(cell_export::attr::to_syn_error));
    let mut input: ItemStruct = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "`#[Postgres::table]` applies to a struct with named fields",
            );
            return with_errors(item, &[e]);
        }
    };
    let table = match parsed.str("name") {
        Some(lit) => {
            check_name(&lit.value(), lit.span(), "a table", &mut errors);
            lit.value()
        }
        None => snake_case(&input.ident.to_string()),
    };
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "a `#[Postgres::table]` struct cannot be generic: it is one table",
        ));
    }
    let alias = invocation.and_then(cell_export::attr::alias_of);
    // Parent attributes still to expand on this item: helpers under their aliases are theirs.
    let pending: Vec<String> = input
        .attrs
        .iter()
        .filter(|a| a.path().segments.len() > 1)
        .map(|a| prefix_of(a.path()))
        .collect();
    let fields = collect_fields(&mut input, alias.as_deref(), &pending, &mut errors);
    let key = choose_key(&input, &fields, &mut errors);
    let generated = match key {
        Some(key) if input.generics.params.is_empty() => {
            let (pg, pg_error) = crate::paths::runtime_path();
            errors.extend(pg_error);
            generate(&input, &table, &fields, key, &pg)
        }
        _ => TokenStream::new(),
    };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    // Best effort: the struct (helpers stripped) and what could be generated, next to the
    // errors, so an editor keeps completing `User::email` while the user fixes a field.
    quote! { #input #generated #(#errors)* }
}

/// A helper (`#[Postgres::unique]`…) used on its own, outside `#[Postgres::table]`.
pub(crate) fn helper_alone(name: &str, _args: TokenStream, item: TokenStream) -> TokenStream {
    let e = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{name}]` is only valid on a field inside a `#[Postgres::table]` struct, \
             which consumes it"
        ),
    );
    with_errors(item, &[e])
}

fn with_errors(tokens: TokenStream, errors: &[syn::Error]) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote!(#tokens #(#errors)*)
}

/// cell-postgres' export declaration, parsed once (from the copy in `export_decl.rs`).
fn schema() -> &'static cell_export::attr::Schema {
    static SCHEMA: std::sync::OnceLock<cell_export::attr::Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(
        || match cell_export::attr::Schema::parse(crate::export_decl::EXPORT_DECL) {
            Ok(schema) => schema,
            // The copy is checked against lib.rs by this crate's tests, so this cannot ship.
            Err(e) => panic!("cell-postgres-macros' copy of the export declaration is broken: {e}"),
        },
    )
}

/// Table and column names go into SQL quoted, so they only need to be plain identifiers; a
/// name PostgreSQL would truncate is refused rather than silently shortened.
fn check_name(name: &str, span: Span, what: &str, errors: &mut Vec<syn::Error>) {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        errors.push(syn::Error::new(
            span,
            format!(
                "{what} name is 1 to {MAX_NAME} ASCII letters, digits or `_`, not starting \
                 with a digit"
            ),
        ));
    }
}

/// Strips the helpers from the fields and reads them.
fn collect_fields(
    input: &mut ItemStruct,
    alias: Option<&str>,
    pending: &[String],
    errors: &mut Vec<syn::Error>,
) -> Vec<Field> {
    let mut out = Vec::new();
    let Fields::Named(named) = &mut input.fields else {
        errors.push(syn::Error::new(
            input.ident.span(),
            "`#[Postgres::table]` needs a struct with named fields (one per column)",
        ));
        return out;
    };
    for field in &mut named.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let plain = ident.to_string();
        let mut f = Field {
            name: plain.strip_prefix("r#").unwrap_or(&plain).to_owned(),
            ident,
            ty: field.ty.clone(),
            primary_key: false,
            serial: None,
            unique: false,
            index: false,
            varchar: None,
        };
        let mut renamed = false;
        let mut kept: Vec<Attribute> = Vec::new();
        for attr in field.attrs.drain(..) {
            let Some(name) = classify(&attr, alias, pending, errors) else {
                kept.push(attr);
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let (args, problems) = schema().helper_args("table", &attr);
            errors.extend(problems.iter().map(cell_export::attr::to_syn_error));
            let span = attr.path().span();
            match name.as_str() {
                "primary_key" => f.primary_key = true,
                "serial" => f.serial = Some(span),
                "unique" => f.unique = true,
                "index" => f.index = true,
                "varchar" => {
                    if let Some(value) = args.positional(0) {
                        match syn::parse2::<syn::LitInt>(value.tokens.clone())
                            .ok()
                            .and_then(|l| l.base10_parse::<u32>().ok())
                        {
                            Some(n) if (1..=10_485_760).contains(&n) => {
                                f.varchar = Some((n, span));
                            }
                            _ => errors.push(syn::Error::new_spanned(
                                value.span,
                                "a VARCHAR length is 1 to 10485760",
                            )),
                        }
                    }
                }
                _ => {
                    if let Some(lit) = args.str("name") {
                        check_name(&lit.value(), lit.span(), "a column", errors);
                        f.name = lit.value();
                        renamed = true;
                    }
                }
            }
        }
        if !renamed {
            check_name(&f.name, f.ident.span(), "a column", errors);
        }
        field.attrs = kept;
        out.push(f);
    }
    let mut seen: Vec<&str> = Vec::new();
    for f in &out {
        if seen.contains(&f.name.as_str()) {
            errors.push(syn::Error::new(
                f.ident.span(),
                format!("two fields are stored in the column `{}`", f.name),
            ));
        }
        seen.push(&f.name);
    }
    out
}

/// Whether `attr` is one of our helpers, and which. Under our alias (from the invocation),
/// every attribute is ours, and an unknown name is an error with a suggestion. One of our
/// helper names under another alias is an error too (CELL0011), unless a parent attribute of
/// that alias is still to expand on this struct (it will take its own helpers). Without a
/// known alias (rust-analyzer may not give the invocation's text), helpers are recognised by
/// name, as they are when written bare (`#[unique]`). An unknown name under our alias is
/// `Some("")`: reported here, and taken off the field.
fn classify(
    attr: &Attribute,
    alias: Option<&str>,
    pending: &[String],
    errors: &mut Vec<syn::Error>,
) -> Option<String> {
    let last = attr.path().segments.last()?.ident.to_string();
    let prefix = prefix_of(attr.path());
    let known = HELPERS.contains(&last.as_str());
    if prefix.is_empty() {
        return known.then_some(last);
    }
    if alias == Some(prefix.as_str()) {
        if !known {
            // The words cell-lsp shows for the same mistake (`cell_export::args`).
            let at = attr
                .path()
                .segments
                .last()
                .map_or_else(Span::call_site, |s| s.ident.span());
            errors.push(cell_export::attr::to_syn_error(
                &cell_export::args::unknown_helper(
                    &last,
                    "table",
                    &HELPERS,
                    cell_export::attr::SpanRange::single(at),
                ),
            ));
            // Reported: taken off the field (kept, rustc would add "cannot find `uniqe`").
            return Some(String::new());
        }
        return Some(last);
    }
    if !known || pending.contains(&prefix) {
        return None;
    }
    if let Some(alias) = alias {
        // At the alias written, in cell-lsp's words (`cell_export::args`).
        let at = attr
            .path()
            .segments
            .first()
            .map_or_else(|| attr.path().span(), |s| s.ident.span());
        errors.push(cell_export::attr::to_syn_error(
            &cell_export::args::foreign_helper(
                &last,
                alias,
                "table",
                &prefix,
                cell_export::attr::SpanRange::single(at),
            ),
        ));
    }
    Some(last)
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

fn choose_key(input: &ItemStruct, fields: &[Field], errors: &mut Vec<syn::Error>) -> Option<usize> {
    let marked: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].primary_key)
        .collect();
    for f in fields {
        if let Some(span) = f.serial
            && !(f.primary_key || (marked.is_empty() && f.ident == "id"))
        {
            errors.push(syn::Error::new(
                span,
                "`serial` applies to the primary key (`#[Postgres::primary_key] \
                 #[Postgres::serial] id: u64`)",
            ));
        }
    }
    match marked.as_slice() {
        [one] => Some(*one),
        [] => {
            let id = fields.iter().position(|f| f.ident == "id");
            if id.is_none() && matches!(input.fields, Fields::Named(_)) {
                errors.push(syn::Error::new(
                    input.ident.span(),
                    "a `#[Postgres::table]` struct needs a primary key: mark one field \
                     `#[Postgres::primary_key]` (or name it `id`)",
                ));
            }
            id
        }
        [first, rest @ ..] => {
            for &i in rest {
                errors.push(syn::Error::new(
                    fields[i].ident.span(),
                    format!(
                        "a table has one `#[Postgres::primary_key]`; `{}` is already the key",
                        fields[*first].ident
                    ),
                ));
            }
            Some(*first)
        }
    }
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn generate(
    input: &ItemStruct,
    table: &str,
    fields: &[Field],
    key: usize,
    pg: &TokenStream,
) -> TokenStream {
    let ident = &input.ident;
    let vis = &input.vis;
    let key_field = &fields[key];
    let key_ident = &key_field.ident;
    let key_ty = &key_field.ty;
    let serial = key_field.serial.is_some();
    let column = quote!(#pg::Column);

    // Every field's type must be a `Column`: checked at the field's type, so the error (with
    // the trait's list of supported types) points there.
    let checks = fields.iter().map(|f| {
        let ty = &f.ty;
        let mut out = quote_spanned! {ty.span()=>
            const _: fn() = || {
                fn must_be_a_column<C: #column>() {}
                must_be_a_column::<#ty>();
            };
        };
        if let Some((_, span)) = f.varchar {
            out.extend(quote_spanned! {span=>
                const _: () = ::core::assert!(
                    <#ty as #column>::TEXT,
                    "`varchar` applies to a `String` (or `Option<String>`) field"
                );
            });
        }
        if let Some(span) = f.serial {
            out.extend(quote_spanned! {span=>
                const _: () = ::core::assert!(
                    <#ty as #column>::SERIAL_TYPE.is_some(),
                    "`serial` applies to an integer key (i16, i32, i64, u16, u32, u64)"
                );
            });
        }
        out
    });

    let defs = fields.iter().enumerate().map(|(i, f)| {
        let ty = &f.ty;
        let name = &f.name;
        let sql_type = match (f.varchar, f.serial.is_some() && i == key) {
            (Some((n, _)), _) => {
                let s = format!("VARCHAR({n})");
                quote!(#s)
            }
            (None, true) => quote_spanned! {ty.span()=>
                match <#ty as #column>::SERIAL_TYPE {
                    ::core::option::Option::Some(s) => s,
                    ::core::option::Option::None => "BIGSERIAL",
                }
            },
            (None, false) => quote_spanned!(ty.span()=> <#ty as #column>::SQL_TYPE),
        };
        let primary_key = i == key;
        let (unique, index) = (f.unique, f.index);
        quote_spanned! {ty.span()=>
            #pg::ColumnDef {
                name: #name,
                sql_type: #sql_type,
                nullable: <#ty as #column>::NULLABLE,
                primary_key: #primary_key,
                unique: #unique,
                index: #index,
            }
        }
    });

    // The statements, as literals.
    let all: Vec<String> = fields.iter().map(|f| quoted(&f.name)).collect();
    let tq = quoted(table);
    let kq = quoted(&key_field.name);
    let select = format!("SELECT {} FROM {tq}", all.join(", "));
    let get = format!("{select} WHERE {kq} = $1");
    let inserted: Vec<usize> = (0..fields.len())
        .filter(|&i| !(i == key && serial))
        .collect();
    let insert = if inserted.is_empty() {
        format!("INSERT INTO {tq} DEFAULT VALUES RETURNING {kq}")
    } else {
        let cols: Vec<String> = inserted.iter().map(|&i| quoted(&fields[i].name)).collect();
        let params: Vec<String> = (1..=inserted.len()).map(|n| format!("${n}")).collect();
        format!(
            "INSERT INTO {tq} ({}) VALUES ({}) RETURNING {kq}",
            cols.join(", "),
            params.join(", ")
        )
    };
    let others: Vec<usize> = (0..fields.len()).filter(|&i| i != key).collect();
    let update = if others.is_empty() {
        format!("UPDATE {tq} SET {kq} = $1 WHERE {kq} = $1")
    } else {
        let sets: Vec<String> = others
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ${}", quoted(&fields[i].name), n + 1))
            .collect();
        format!(
            "UPDATE {tq} SET {} WHERE {kq} = ${}",
            sets.join(", "),
            others.len() + 1
        )
    };
    let delete = format!("DELETE FROM {tq} WHERE {kq} = $1");

    let encode = |i: usize| {
        let f = &fields[i];
        let (fi, ty, name) = (&f.ident, &f.ty, &f.name);
        quote_spanned! {ty.span()=>
            <#ty as #column>::encode(&self.#fi).map_err(|reason| #pg::Error::Encode {
                table: #table,
                column: #name,
                reason,
            })?
        }
    };
    let insert_params = inserted.iter().map(|&i| encode(i));
    let update_params = others
        .iter()
        .chain(std::iter::once(&key))
        .map(|&i| encode(i));
    let decode = fields.iter().enumerate().map(|(i, f)| {
        let (fi, ty, name) = (&f.ident, &f.ty, &f.name);
        quote_spanned! {ty.span()=>
            #fi: <#ty as #column>::decode(row, #i).map_err(|reason| #pg::Error::Decode {
                table: #table,
                column: #name,
                reason,
            })?
        }
    });
    let cols = fields.iter().map(|f| {
        let (fi, ty, name) = (&f.ident, &f.ty, &f.name);
        let doc = format!(
            "The column `{name}` of `{table}`, for `Postgres::query::<{ident}>()` (generated \
             by `#[Postgres::table]`)."
        );
        let konst = format_ident!("{}", fi, span = fi.span());
        quote! {
            #[doc = #doc]
            #vis const #konst: #pg::Col<#ident, #ty> = #pg::Col::new(#name);
        }
    });

    quote! {
        #(#checks)*

        impl #pg::Table for #ident {
            type Key = #key_ty;
            const TABLE: &'static str = #table;
            const COLUMNS: &'static [#pg::ColumnDef] = &[#(#defs),*];
            const KEY: usize = #key;
            const SQL: #pg::Statements = #pg::Statements {
                insert: #insert,
                get: #get,
                update: #update,
                delete: #delete,
                select: #select,
            };

            fn key(&self) -> &Self::Key {
                &self.#key_ident
            }

            fn insert_params(&self) -> #pg::Result<::std::vec::Vec<#pg::Param<'_>>> {
                ::core::result::Result::Ok(::std::vec![#(#insert_params),*])
            }

            fn update_params(&self) -> #pg::Result<::std::vec::Vec<#pg::Param<'_>>> {
                ::core::result::Result::Ok(::std::vec![#(#update_params),*])
            }

            fn from_row(row: &#pg::__private::Row) -> #pg::Result<Self> {
                ::core::result::Result::Ok(Self { #(#decode),* })
            }
        }

        impl #pg::Tables for #ident {
            fn schemas(out: &mut ::std::vec::Vec<#pg::TableSchema>) {
                out.push(#pg::TableSchema::of::<Self>());
            }
        }

        // Lower-case, like the fields they stand for: `User::email`.
        #[allow(non_upper_case_globals, dead_code)]
        impl #ident {
            #(#cols)*
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
    use proc_macro2::TokenStream;

    /// The macros read the copy of the declaration in `export_decl.rs`; it must say what
    /// lib.rs says. `CELL_EXPORT_UPDATE=1 cargo test -p cell-postgres-macros` rewrites it.
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

    /// Every helper the macro consumes is declared (so tools complete it) and exported as a
    /// macro of its own (so one written alone gets this crate's error).
    #[test]
    fn the_export_declaration_matches_the_implementation() {
        let file = cell_export::parse_file(include_str!("../../src/lib.rs"));
        assert_eq!(file.decls.len(), 1);
        assert!(
            file.decls[0].errors.is_empty(),
            "{:?}",
            file.decls[0].errors
        );
        let decl = &file.decls[0].decl;
        let table = decl.macro_named("table").unwrap();
        let helpers: Vec<&str> = table
            .helpers
            .iter()
            .map(|h| h.name.value.as_str())
            .collect();
        assert_eq!(helpers, super::HELPERS);
        for helper in &helpers {
            assert!(decl.macro_named(helper).is_some(), "{helper}");
        }
    }

    /// The errors of an expansion, but the resolver's (this crate does not depend on the
    /// runtime, so the resolver cannot find it here).
    fn errors_of(args: &str, item: &str) -> Vec<String> {
        let out = super::expand(args.parse().unwrap(), item.parse().unwrap(), None).to_string();
        out.split("compile_error !")
            .skip(1)
            .map(|s| {
                s.split(')')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches([' ', '(', '{'])
                    .to_owned()
            })
            .filter(|e| !e.contains("CELL0001"))
            .collect()
    }

    #[test]
    fn arguments_are_checked_against_the_declaration() {
        let item = "struct User { id: u64 }";
        assert!(errors_of("name = \"users\"", item).is_empty());
        let unknown = errors_of("nam = \"users\"", item);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert!(unknown[0].contains("CELL0014"), "{unknown:?}");
        let bad_name = errors_of("name = \"drop table\"", item);
        assert!(
            bad_name[0].contains("table name is 1 to 63"),
            "{bad_name:?}"
        );
    }

    #[test]
    fn helpers_are_checked_against_the_declaration() {
        let ok = "struct User { #[Postgres::primary_key] #[Postgres::serial] id: u64, \
                  #[Postgres::varchar(255)] #[Postgres::unique] email: String, \
                  #[Postgres::column(name = \"full_name\")] name: String }";
        assert!(errors_of("", ok).is_empty(), "{:?}", errors_of("", ok));
        let missing = errors_of(
            "",
            "struct User { id: u64, #[Postgres::varchar] email: String }",
        );
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("CELL0014"), "{missing:?}");
        let wrong = errors_of(
            "",
            "struct User { id: u64, #[Postgres::column(nme = \"x\")] e: String }",
        );
        assert!(wrong[0].contains("CELL0014"), "{wrong:?}");
        let zero = errors_of(
            "",
            "struct User { id: u64, #[Postgres::varchar(0)] e: String }",
        );
        assert!(zero[0].contains("VARCHAR length"), "{zero:?}");
    }

    fn errors_as(invocation: &str, item: &str) -> Vec<String> {
        let out = super::expand(TokenStream::new(), item.parse().unwrap(), Some(invocation));
        out.to_string()
            .split("compile_error !")
            .skip(1)
            .map(|s| s.split(')').next().unwrap_or_default().to_owned())
            .filter(|e| !e.contains("CELL0001"))
            .collect()
    }

    #[test]
    fn helpers_under_another_alias_or_unknown_under_ours_are_cell0011() {
        let at = "#[Postgres::table]";
        let foreign = errors_as(at, "struct U { id: u64, #[DB::unique] e: String }");
        assert_eq!(foreign.len(), 1, "{foreign:?}");
        assert!(
            foreign[0].contains("CELL0011") && foreign[0].contains("another alias"),
            "{foreign:?}"
        );
        let typo = errors_as(at, "struct U { id: u64, #[Postgres::uniqe] e: String }");
        assert!(
            typo[0].contains("CELL0011") && typo[0].contains("did you mean `unique`"),
            "{typo:?}"
        );
        // A helper of another parent still to expand is left to it.
        let other = "#[DB::persist] struct U { id: u64, #[DB::unique] e: String }";
        assert!(
            errors_as(at, other).is_empty(),
            "{:?}",
            errors_as(at, other)
        );
        // Bare helpers and unknown invocations are recognised by name.
        assert!(errors_as(at, "struct U { id: u64, #[unique] e: String }").is_empty());
        assert!(errors_of("", "struct U { id: u64, #[DB::unique] e: String }").is_empty());
    }

    #[test]
    fn a_table_needs_a_key_and_one_key() {
        let none = errors_of("", "struct User { email: String }");
        assert!(none[0].contains("needs a primary key"), "{none:?}");
        let two = errors_of(
            "",
            "struct User { #[Postgres::primary_key] a: u64, #[Postgres::primary_key] b: u64 }",
        );
        assert!(two[0].contains("one `#[Postgres::primary_key]`"), "{two:?}");
        let serial = errors_of("", "struct User { id: u64, #[Postgres::serial] n: u64 }");
        assert!(
            serial[0].contains("`serial` applies to the primary key"),
            "{serial:?}"
        );
    }
}
