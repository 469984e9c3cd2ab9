//! `#[protein]`: rkyv derives with validation, plus the structural fingerprint.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::{
    Data, DeriveInput, Fields, GenericParam, Type, punctuated::Punctuated, spanned::Spanned,
};

/// Standard derives `#[protein]` adds unless the user already derives them: the name the user
/// would write, and the absolute path the expansion writes (so a user type or macro named
/// `Debug`, or `#![no_implicit_prelude]`, cannot capture it).
const CONVENIENCE_DERIVES: [(&str, &str); 3] = [
    ("Debug", "::core::fmt::Debug"),
    ("Clone", "::core::clone::Clone"),
    ("PartialEq", "::core::cmp::PartialEq"),
];

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new(
            args.span(),
            "`#[protein]` takes no arguments; write `#[protein]`",
        ));
    }
    let input: DeriveInput = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(e) => {
            // Not a struct or enum at all: keep the user's tokens so the editor still sees them.
            let e = syn::Error::new(e.span(), "`#[protein]` applies to a struct or an enum");
            return with_errors(item, &[e]);
        }
    };
    check_supported(&input, &mut errors);
    let (sdk, sdk_error) = crate::paths::cell_sdk();
    errors.extend(sdk_error);
    let expansion = generate(&input, &sdk);
    if errors.is_empty() {
        expansion
    } else {
        // Best effort: the item as written (without derives that would pile up errors) plus
        // every error at its own span.
        with_errors(input.to_token_stream(), &errors)
    }
}

fn with_errors(tokens: TokenStream, errors: &[syn::Error]) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote!(#tokens #(#errors)*)
}

fn check_supported(input: &DeriveInput, errors: &mut Vec<syn::Error>) {
    if let Data::Union(u) = &input.data {
        errors.push(syn::Error::new(
            u.union_token.span,
            "`#[protein]` does not support unions: their active field is unknown, so the bytes \
             cannot be validated; use an enum",
        ));
    }
    for param in &input.generics.params {
        if let GenericParam::Lifetime(l) = param {
            errors.push(syn::Error::new(
                l.lifetime.span(),
                "a protein cannot borrow: it must own its data to cross a process boundary \
                 (remove the lifetime; use `String`/`Vec<T>` instead of references)",
            ));
        }
    }
    for field in all_fields(input) {
        check_field_type(&field.ty, errors);
    }
}

fn check_field_type(ty: &Type, errors: &mut Vec<syn::Error>) {
    match ty {
        Type::Reference(r) => errors.push(syn::Error::new(
            r.span(),
            "a protein field cannot be a reference: it must own its data \
             (use `String` instead of `&str`, `Vec<T>` instead of `&[T]`)",
        )),
        Type::Ptr(p) => errors.push(syn::Error::new(
            p.span(),
            "a protein field cannot be a raw pointer: its target cannot be sent or validated",
        )),
        Type::TraitObject(t) => errors.push(syn::Error::new(
            t.span(),
            "a protein field cannot be a trait object: its layout is unknown; use an enum",
        )),
        Type::ImplTrait(t) => errors.push(syn::Error::new(t.span(), "`impl Trait` is not a type")),
        Type::Paren(p) => check_field_type(&p.elem, errors),
        Type::Group(g) => check_field_type(&g.elem, errors),
        Type::Array(a) => check_field_type(&a.elem, errors),
        Type::Slice(s) => errors.push(syn::Error::new(
            s.span(),
            "a protein field cannot be an unsized slice; use `Vec<T>`",
        )),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_field_type(e, errors)),
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                    for arg in &args.args {
                        match arg {
                            syn::GenericArgument::Type(t) => check_field_type(t, errors),
                            syn::GenericArgument::Lifetime(l) => errors.push(syn::Error::new(
                                l.span(),
                                "a protein cannot borrow: remove the lifetime",
                            )),
                            _ => {}
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn all_fields(input: &DeriveInput) -> Vec<&syn::Field> {
    match &input.data {
        Data::Struct(s) => s.fields.iter().collect(),
        Data::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter()).collect(),
        Data::Union(u) => u.fields.named.iter().collect(),
    }
}

fn generate(input: &DeriveInput, sdk: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let rkyv = quote!(#sdk::__private::rkyv);
    let fp = quote!(#sdk::fingerprint);

    let existing = existing_derives(input);
    let convenience = CONVENIENCE_DERIVES
        .iter()
        .filter(|(name, _)| !existing.iter().any(|e| e == name))
        .filter_map(|(_, path)| syn::parse_str::<syn::Path>(path).ok());

    // Fingerprint bounds: every type parameter must itself be fingerprinted.
    let mut generics = input.generics.clone();
    for param in &mut generics.params {
        if let GenericParam::Type(t) = param {
            t.bounds.push(syn::parse_quote!(#sdk::Fingerprint));
        }
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let type_params: Vec<_> = input.generics.type_params().map(|t| &t.ident).collect();

    let (hash, describe) = match &input.data {
        Data::Struct(s) => {
            let (hash, desc) = fields_fingerprint(&s.fields, &fp);
            (
                quote! { let state = #fp::mix_str(#fp::SEED, "struct"); #hash state },
                quote! { ::std::format!("struct{}", #desc) },
            )
        }
        Data::Enum(e) => {
            let mut hash = quote! { let state = #fp::mix_str(#fp::SEED, "enum"); };
            let mut parts = Vec::new();
            for variant in &e.variants {
                let name = variant.ident.to_string();
                let (fields_hash, desc) = fields_fingerprint(&variant.fields, &fp);
                hash.extend(quote! { let state = #fp::mix_str(state, #name); #fields_hash });
                parts.push(quote! { ::std::format!("{}{}", #name, #desc) });
            }
            (
                quote! { #hash state },
                quote! { ::std::format!("enum {{ {} }}", [#(#parts),*].join(", ")) },
            )
        }
        Data::Union(_) => (
            quote!(#fp::SEED),
            quote!(::std::string::String::from("union")),
        ),
    };

    let name = ident.to_string();
    let type_name = if type_params.is_empty() {
        quote!(::std::string::String::from(#name))
    } else {
        quote! {{
            let params: ::std::vec::Vec<::std::string::String> =
                ::std::vec![#(<#type_params as #sdk::Fingerprint>::type_name()),*];
            ::std::format!("{}<{}>", #name, params.join(", "))
        }}
    };

    let attrs = &input.attrs;
    let vis = &input.vis;
    let body = item_body(input);
    let crate_attr = quote_spanned!(Span::call_site()=> #[rkyv(crate = #rkyv)]);

    quote! {
        #(#attrs)*
        #[derive(#rkyv::Archive, #rkyv::Serialize, #rkyv::Deserialize #(, #convenience)*)]
        #crate_attr
        #vis #body

        impl #impl_generics #sdk::Fingerprint for #ident #ty_generics #where_clause {
            const FINGERPRINT: u64 = { #hash };
            fn type_name() -> ::std::string::String { #type_name }
            fn describe() -> ::std::string::String { #describe }
        }
    }
}

/// Hash statements and a description expression (`{ a: u64, b: String }`) for a field list.
fn fields_fingerprint(fields: &Fields, fp: &TokenStream) -> (TokenStream, TokenStream) {
    let kind = match fields {
        Fields::Named(_) => "named",
        Fields::Unnamed(_) => "tuple",
        Fields::Unit => "unit",
    };
    let mut hash = quote! { let state = #fp::mix_str(state, #kind); };
    let mut parts = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let name = field
            .ident
            .as_ref()
            .map_or_else(|| index.to_string(), |i| i.to_string());
        let ty = &field.ty;
        hash.extend(quote! {
            let state = #fp::mix_str(state, #name);
            let state = #fp::mix_u64(state, <#ty as #fp::Fingerprint>::FINGERPRINT);
        });
        parts.push(quote! { #fp::describe_field::<#ty>(#name) });
    }
    let desc = match fields {
        Fields::Named(_) => quote! { ::std::format!(" {{ {} }}", [#(#parts),*].join(", ")) },
        Fields::Unnamed(_) => quote! { ::std::format!("({})", [#(#parts),*].join(", ")) },
        Fields::Unit => quote! { ::std::string::String::new() },
    };
    (hash, desc)
}

/// The derive list the user already wrote, as last path segments (`Debug`, `Clone`, …).
fn existing_derives(input: &DeriveInput) -> Vec<String> {
    let mut names = Vec::new();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let parser = Punctuated::<syn::Path, syn::Token![,]>::parse_terminated;
        if let Ok(paths) = attr.parse_args_with(parser) {
            names.extend(
                paths
                    .iter()
                    .filter_map(|p| p.segments.last())
                    .map(|s| s.ident.to_string()),
            );
        }
    }
    names
}

/// The item without its outer attributes and visibility: `struct X { … }` / `enum X { … }`.
fn item_body(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let generics = &input.generics;
    let where_clause = &input.generics.where_clause;
    match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => quote!(struct #ident #generics #where_clause #f),
            Fields::Unnamed(f) => quote!(struct #ident #generics #f #where_clause;),
            Fields::Unit => quote!(struct #ident #generics #where_clause;),
        },
        Data::Enum(e) => {
            let variants = &e.variants;
            quote!(enum #ident #generics #where_clause { #variants })
        }
        Data::Union(u) => {
            let fields = &u.fields;
            quote!(union #ident #generics #where_clause #fields)
        }
    }
}
