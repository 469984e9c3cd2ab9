//! `#[service]` and the protocol generator shared with `#[handler]`.
//!
//! Two forms, one generator:
//! - `#[service] pub struct Users;` names a service whose handlers are an inherent
//!   `#[handler] impl Users { async fn … }` in the same crate (everything in one crate);
//! - `#[service] pub trait Ping { async fn …; }` declares only the *protocol*, in an api
//!   crate: it generates the typed client `PingClient` and the server adapter
//!   `PingServer<T: Ping>`, so callers depend on the api crate without compiling any server
//!   (`docs/design.md`, "Callers don't compile servers").
//!
//! A method's arguments travel as one archive: `()` for none, the value itself for one, a
//! tuple for more. The service fingerprint mixes, in order, every method's name, argument
//! fingerprint and return fingerprint, so any change to the protocol is caught at the
//! handshake.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{
    FnArg, GenericArgument, Ident, Item, LitStr, Pat, PathArguments, ReturnType, Signature, Type,
    spanned::Spanned,
};

/// Most arguments a method may take (tuples are fingerprinted up to six).
const MAX_ARGS: usize = 6;

/// Names the generated client (`connect`, …) or service (`serve`) already define.
const RESERVED: [&str; 6] = [
    "connect",
    "connect_to",
    "connect_with",
    "with_timeout",
    "with_metadata",
    "serve",
];

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    let (name, strict) = parse_args(args, &mut errors);
    let parsed: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "`#[service]` applies to a struct (`#[service] pub struct Users;`) or a trait",
            );
            return with_errors(item, &errors_plus(errors, e));
        }
    };
    match parsed {
        Item::Struct(s) => {
            if !s.generics.params.is_empty() {
                errors.push(syn::Error::new(
                    s.generics.span(),
                    "a service struct cannot be generic: its protocol must be one fixed type",
                ));
                return with_errors(s.into_token_stream(), &errors);
            }
            let name = name.unwrap_or_else(|| kebab(&s.ident.to_string()));
            // A cell-sdk the manifest does not name: the expansion falls back to `::cell_sdk`
            // and the resolver's explanation is reported next to it.
            let (sdk, sdk_error) = crate::paths::cell_sdk();
            errors.extend(sdk_error);
            let ident = &s.ident;
            let strict = strict.then(|| {
                quote!(
                    const STRICT: bool = true;
                )
            });
            let expansion = quote! {
                #s
                impl #sdk::__private::ServiceName for #ident {
                    const NAME: &'static str = #name;
                    #strict
                }
            };
            with_errors(expansion, &errors)
        }
        Item::Trait(t) => expand_trait(t, name, strict, errors),
        other => {
            let e = syn::Error::new(
                item_keyword_span(&other),
                "`#[service]` applies to a struct (`#[service] pub struct Users;`) or a trait",
            );
            with_errors(other.into_token_stream(), &errors_plus(errors, e))
        }
    }
}

fn errors_plus(mut errors: Vec<syn::Error>, e: syn::Error) -> Vec<syn::Error> {
    errors.push(e);
    errors
}

fn item_keyword_span(item: &Item) -> Span {
    match item {
        Item::Enum(e) => e.enum_token.span,
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Union(u) => u.union_token.span,
        other => other.span(),
    }
}

pub(crate) fn with_errors(tokens: TokenStream, errors: &[syn::Error]) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote!(#tokens #(#errors)*)
}

/// `name = "…"` and `strict` (both optional).
fn parse_args(args: TokenStream, errors: &mut Vec<syn::Error>) -> (Option<String>, bool) {
    if args.is_empty() {
        return (None, false);
    }
    let mut name = None;
    let mut strict = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("strict") {
            strict = true;
            Ok(())
        } else if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            let value = lit.value();
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(syn::Error::new(
                    lit.span(),
                    "a service name is a socket file name: use letters, digits, `-` and `_`",
                ));
            }
            name = Some(value);
            Ok(())
        } else {
            Err(meta.error("unknown `#[service]` argument; expected `name = \"...\"` or `strict`"))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    (name, strict)
}

/// `UserStore` → `user-store`: the default service (and socket) name.
pub(crate) fn kebab(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else if c == '_' {
            out.push('-');
        } else {
            out.push(c);
        }
    }
    out
}

/// One RPC method as the generator sees it.
pub(crate) struct Method {
    pub(crate) name: Ident,
    /// The wire types of the arguments (for a borrowed archive `&Archived<T>`, `T`).
    pub(crate) args: Vec<(Ident, Type)>,
    /// Per argument: a borrowed archive (`&Archived<T>`). With any, the request bytes are kept
    /// (validated), owned arguments are deserialized from their fields, and the handler reads
    /// handler reads them in place instead of receiving a deserialized value.
    pub(crate) borrowed: Vec<bool>,
    /// The declared return type (`()` when omitted).
    pub(crate) ret: Type,
    /// `Some((T, E))` when the return type is `Result<T, E>`: `E` is the application error.
    pub(crate) result: Option<(Type, Type)>,
    /// `Some((T, E))` when the handler returns `Streaming<T>` (`E` is `None`) or
    /// `Streaming<T, E>`: a server-to-client stream of `T`.
    pub(crate) stream: Option<(Type, Option<Type>)>,
}

impl Method {
    /// Whether any argument is a borrowed archive (the request's bytes are kept for the call).
    pub(crate) fn any_borrowed(&self) -> bool {
        self.borrowed.iter().any(|b| *b)
    }

    /// The owned arguments of a method with borrowed ones: `(index, ident, type)`.
    fn owned_args(&self) -> impl Iterator<Item = (usize, &Ident, &Type)> {
        self.args
            .iter()
            .zip(&self.borrowed)
            .enumerate()
            .filter(|(_, (_, b))| !**b)
            .map(|(i, ((id, ty), _))| (i, id, ty))
    }
}

/// Reads a handler signature, reporting what cannot be an RPC method at the user's token.
pub(crate) fn parse_method(sig: &Signature, errors: &mut Vec<syn::Error>) -> Option<Method> {
    let before = errors.len();
    if RESERVED.contains(&sig.ident.to_string().as_str()) {
        errors.push(syn::Error::new(
            sig.ident.span(),
            format!(
                "`{}` is a method of every generated client or service ({}); rename this handler",
                sig.ident,
                RESERVED.join(", ")
            ),
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "a handler must be an `async fn` (write `async fn`)",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new(
            sig.generics.span(),
            "a handler cannot be generic: its wire types must be fixed",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) => errors.push(syn::Error::new(
            r.span(),
            "a handler takes `&self` (calls run concurrently, so they cannot have `&mut self`; \
             use interior mutability)",
        )),
        other => errors.push(syn::Error::new(
            other.map_or(sig.ident.span(), |o| o.span()),
            "a handler takes `&self` as its first parameter",
        )),
    }
    let mut args = Vec::new();
    let mut borrowed = Vec::new();
    for (i, input) in inputs.enumerate() {
        if let FnArg::Typed(pt) = input {
            let mut ty = (*pt.ty).clone();
            let mut is_borrowed = false;
            if let Type::Reference(r) = &*pt.ty {
                match archived_inner(&r.elem) {
                    Some(inner) if r.mutability.is_none() => {
                        // `&Archived<T>`: the handler reads the validated archive in place.
                        is_borrowed = true;
                        ty = inner;
                    }
                    _ => errors.push(syn::Error::new(
                        r.span(),
                        "a handler argument must be owned (it is decoded from the request) or \
                         a borrowed archive `&Archived<T>` (read in place, zero-copy)",
                    )),
                }
            }
            let ident = match &*pt.pat {
                Pat::Ident(p) => p.ident.clone(),
                _ => format_ident!("arg{}", i),
            };
            args.push((ident, ty));
            borrowed.push(is_borrowed);
        }
    }
    if args.len() > MAX_ARGS {
        errors.push(syn::Error::new(
            sig.inputs.span(),
            format!(
                "a handler takes at most {MAX_ARGS} arguments; group them in a `#[protein]` struct"
            ),
        ));
    }
    let ret: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if let Type::Reference(r) = &ret {
        errors.push(syn::Error::new(
            r.span(),
            "a handler returns an owned value: it is encoded into the reply",
        ));
    }
    let result = result_parts(&ret);
    let stream = stream_parts(&ret);
    (errors.len() == before).then(|| Method {
        name: sig.ident.clone(),
        args,
        borrowed,
        ret,
        result,
        stream,
    })
}

/// `Archived<T>` (by its last path segment, e.g. `cell_sdk::Archived<User>`) → `T`.
fn archived_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Archived" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

/// `Streaming<T>` / `Streaming<T, E>` (by its last path segment) → `(T, E)`.
fn stream_parts(ty: &Type) -> Option<(Type, Option<Type>)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Streaming" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let item = types.next()?;
    let error = types.next();
    types.next().is_none().then_some((item, error))
}

/// `Result<T, E>` (by its last path segment) → `(T, E)`.
fn result_parts(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let (ok, err) = (types.next()?, types.next()?);
    types.next().is_none().then_some((ok, err))
}

/// The wire type of a method's arguments.
fn args_type(method: &Method) -> TokenStream {
    let types: Vec<_> = method.args.iter().map(|(_, t)| t).collect();
    match types.as_slice() {
        [] => quote!(()),
        [one] => quote!(#one),
        many => quote!((#(#many,)*)),
    }
}

/// For a method with borrowed arguments, the statements that validate the archived arguments
/// in `src` (strictly, when asked) and bind each owned argument, deserialized from its field.
fn borrowed_decode(
    m: &Method,
    sdk: &TokenStream,
    args: &TokenStream,
    strict: &TokenStream,
    src: TokenStream,
) -> TokenStream {
    let lone = m.args.len() == 1;
    let owned = m.owned_args().map(|(index, _, ty)| {
        let value = format_ident!("__owned{}", index);
        let index = syn::Index::from(index);
        quote! {
            let #value = #sdk::codec::deserialize::<#ty>(&__archived.#index).map_err(|e| {
                #sdk::codec::DecodeError {
                    type_name: <#ty as #sdk::Fingerprint>::type_name(),
                    len: #src.len(),
                    reason: e.to_string(),
                }
            })?;
        }
    });
    let owned: Vec<_> = if lone { Vec::new() } else { owned.collect() };
    quote! {
        let __archived = #sdk::codec::access_args::<#args>(#src, #strict)?;
        #(#owned)*
        let _ = __archived;
    }
}

/// The names `borrowed_decode` binds the owned arguments to (ours, not the user's: an argument
/// may be called `payload` or `frame`).
fn owned_values(m: &Method) -> Vec<Ident> {
    m.owned_args()
        .map(|(index, _, _)| format_ident!("__owned{}", index))
        .collect()
}

/// How the generated service reaches its handlers.
pub(crate) enum Target<'a> {
    /// `#[handler] impl Users`: the service type is `Users`, handlers are inherent methods.
    Inherent { ty: &'a Ident },
    /// `#[service] trait Ping`: the service type is `PingServer<T>`, handlers are `T: Ping`.
    Trait { trait_ident: &'a Ident },
}

/// Everything generated for a protocol: call/reply enums, `Protocol`, `Service`, the client.
pub(crate) fn generate(
    target: &Target<'_>,
    name: TokenStream,
    strict: TokenStream,
    base: &Ident,
    methods: &[Method],
    vis: &syn::Visibility,
) -> TokenStream {
    let sdk = crate::paths::cell_sdk().0;
    let rt = quote!(#sdk::__private::runtime);
    let fp = quote!(#sdk::fingerprint);
    let client = format_ident!("{}Client", base);
    let call_enum = format_ident!("__{}Call", base);
    let reply_enum = format_ident!("__{}Reply", base);
    let variants: Vec<Ident> = (0..methods.len())
        .map(|i| format_ident!("M{}", i))
        .collect();
    let method_names: Vec<String> = methods.iter().map(|m| m.name.to_string()).collect();
    let indices: Vec<u16> = (0..methods.len() as u16).collect();

    let fingerprint_steps = methods.iter().map(|m| {
        let name = m.name.to_string();
        let args = args_type(m);
        let ret = &m.ret;
        let arg_span = m
            .args
            .first()
            .map_or_else(|| m.name.span(), |(_, t)| t.span());
        let args_fp = quote_spanned!(arg_span=> <#args as #sdk::Fingerprint>::FINGERPRINT);
        let ret_fp = quote_spanned!(ret.span()=> <#ret as #sdk::Fingerprint>::FINGERPRINT);
        quote! {
            let state = #fp::mix_str(state, #name);
            let state = #fp::mix_u64(state, #args_fp);
            let state = #fp::mix_u64(state, #ret_fp);
        }
    });
    // Per-type checks spanned at the user's types, so "`X` is not a protein" points there.
    let protein_checks = methods.iter().flat_map(|m| {
        let arg_checks = m
            .args
            .iter()
            .map(|(_, t)| quote_spanned!(t.span()=> __assert_protein::<#t>();));
        let ret_check = match (&m.result, &m.stream) {
            (_, Some((item, error))) => {
                let error = error.iter();
                quote_spanned!(m.ret.span()=>
                    __assert_protein::<#item>(); #(__assert_protein::<#error>();)*)
            }
            (Some((ok, err)), None) => quote_spanned!(m.ret.span()=>
                __assert_protein::<#ok>(); __assert_protein::<#err>();),
            (None, None) => {
                let ret = &m.ret;
                quote_spanned!(ret.span()=> __assert_protein::<#ret>();)
            }
        };
        arg_checks
            .chain(std::iter::once(ret_check))
            .collect::<Vec<_>>()
    });

    let call_variants = methods.iter().zip(&variants).map(|(m, v)| {
        if m.any_borrowed() {
            // The owned arguments, deserialized, then the request bytes for the borrowed ones.
            let owned = m.owned_args().map(|(_, _, t)| t);
            return quote!(#v(#(#owned,)* #sdk::codec::Bytes, ::core::ops::Range<usize>));
        }
        let types = m.args.iter().map(|(_, t)| t);
        quote!(#v(#(#types),*))
    });
    let reply_variants = methods.iter().zip(&variants).map(|(m, v)| {
        let ret = &m.ret;
        quote!(#v(#ret))
    });
    let decode_arms = methods
        .iter()
        .zip(&variants)
        .zip(&indices)
        .map(|((m, v), i)| {
            let args = args_type(m);
            let idents: Vec<_> = m.args.iter().map(|(id, _)| id).collect();
            if m.any_borrowed() {
                // Validate now (a bad request closes the connection), deserialize the owned
                // arguments, keep the bytes for the borrowed ones, which the handler reads in
                // place. A small request shares the read buffer: it is copied once here.
                let owned = borrowed_decode(m, &sdk, &args, &strict, quote!(payload));
                let owned_values = owned_values(m);
                return quote!(#i => {
                    #owned
                    let mut __bytes = #sdk::codec::Bytes::with_capacity(payload.len());
                    __bytes.extend_from_slice(payload);
                    let __len = __bytes.len();
                    ::core::result::Result::Ok(
                        #call_enum::#v(#(#owned_values,)* __bytes, 0..__len)
                    )
                });
            }
            // Strict services also refuse payloads that validate but are not exactly the
            // arguments' archive (bytes before the root, or any payload for no arguments).
            match idents.as_slice() {
                [] => quote!(#i => {
                    if #strict {
                        #sdk::codec::check_exact(&(), payload)?;
                    }
                    ::core::result::Result::Ok(#call_enum::#v())
                }),
                // Bound to a name of ours: an argument may be called `payload` too.
                [_] => quote!(#i => {
                    let __value = #sdk::codec::decode_args::<#args>(payload, #strict)?;
                    ::core::result::Result::Ok(#call_enum::#v(__value))
                }),
                many => quote!(#i => {
                    let __args = #sdk::codec::decode_args::<#args>(payload, #strict)?;
                    let (#(#many,)*) = __args;
                    ::core::result::Result::Ok(#call_enum::#v(#(#many),*))
                }),
            }
        });
    // Borrowed archives keep the frame the server hands over: no copy of the request bytes.
    let decode_owned_arms = methods
        .iter()
        .zip(&variants)
        .zip(&indices)
        .filter(|((m, _), _)| m.any_borrowed())
        .map(|((m, v), i)| {
            let args = args_type(m);
            let owned = borrowed_decode(m, &sdk, &args, &strict, quote!(__bytes));
            let owned_values = owned_values(m);
            // A lone borrowed argument binds nothing (no `let () = …`, which clippy flags).
            let bind = if owned_values.is_empty() {
                quote!()
            } else {
                quote!(let (#(#owned_values,)*) =)
            };
            let values = if owned_values.is_empty() {
                quote!()
            } else {
                quote!((#(#owned_values,)*))
            };
            quote!(#i => {
                #bind match frame.get(payload.clone()) {
                    ::core::option::Option::Some(__bytes) => {
                        #owned
                        #values
                    }
                    ::core::option::Option::None => {
                        return <Self as #sdk::Service>::decode(method, &[]);
                    }
                };
                ::core::result::Result::Ok(#call_enum::#v(#(#owned_values,)* frame, payload))
            })
        })
        .collect::<Vec<_>>();
    let call_arms = methods.iter().zip(&variants).map(|(m, v)| {
        let name = &m.name;
        let idents: Vec<_> = m.args.iter().map(|(id, _)| id).collect();
        let invoke = match target {
            Target::Inherent { .. } => quote!(self.#name(#(#idents),*).await),
            Target::Trait { trait_ident } => {
                quote!(<__T as #trait_ident>::#name(&self.0, #(#idents),*).await)
            }
        };
        if m.any_borrowed() {
            let args = args_type(m);
            let owned_idents = m.owned_args().map(|(_, id, _)| id);
            // Each borrowed argument is its field of the archived arguments (the archive
            // itself for a lone argument).
            let lone = m.args.len() == 1;
            let borrows = m
                .args
                .iter()
                .zip(&m.borrowed)
                .enumerate()
                .filter(|(_, (_, b))| **b)
                .map(|(index, ((ident, _), _))| {
                    if lone {
                        quote!(let #ident = __archived;)
                    } else {
                        let index = syn::Index::from(index);
                        quote!(let #ident = &__archived.#index;)
                    }
                });
            return quote!(#call_enum::#v(#(#owned_idents,)* __bytes, __range) => {
                // Validated in `decode`; validating again is cheap and keeps every access
                // checked (there is no unchecked access anywhere).
                match #sdk::codec::access::<#args>(&__bytes[__range]) {
                    ::core::result::Result::Ok(__archived) => {
                        #(#borrows)*
                        #reply_enum::#v(#invoke)
                    }
                    ::core::result::Result::Err(e) => {
                        ::core::panic!("a validated request failed validation again: {e}")
                    }
                }
            });
        }
        quote!(#call_enum::#v(#(#idents),*) => #reply_enum::#v(#invoke))
    });
    let encode_arms = methods.iter().zip(&variants).map(|(m, v)| match &m.result {
        // Never reached: the runtime takes a stream through `into_stream` and sends it item by
        // item. Still an error rather than a panic.
        _ if m.stream.is_some() => {
            let name = m.name.to_string();
            quote! {
                #reply_enum::#v(_) => ::core::result::Result::Err(#sdk::codec::EncodeError {
                    type_name: ::std::string::String::from(#name),
                    reason: ::std::string::String::from(
                        "a stream is sent item by item, not encoded as one reply",
                    ),
                }),
            }
        }
        Some(_) => quote! {
            #reply_enum::#v(::core::result::Result::Ok(value)) =>
                #sdk::codec::append(value, out).map(|()| #rt::Status::Ok),
            #reply_enum::#v(::core::result::Result::Err(error)) =>
                #sdk::codec::append(error, out).map(|()| #rt::Status::AppError),
        },
        None => quote! {
            #reply_enum::#v(value) => #sdk::codec::append(value, out).map(|()| #rt::Status::Ok),
        },
    });
    // A service without methods (or whose methods all have errors) has an empty reply enum:
    // matching on it through a reference needs the explicit dereference.
    let encode_body = if methods.is_empty() {
        quote!(match *reply {})
    } else {
        quote!(match reply { #(#encode_arms)* })
    };
    let client_methods = methods.iter().zip(&indices).map(|(m, i)| {
        let name = &m.name;
        let params = m.args.iter().map(|(id, t)| quote!(#id: #t));
        let idents: Vec<_> = m.args.iter().map(|(id, _)| id).collect();
        let request = match idents.as_slice() {
            [] => quote!(&()),
            [one] => quote!(&#one),
            many => quote!(&(#(#many,)*)),
        };
        let args = args_type(m);
        let doc = format!("Calls `{name}` on the service.");
        if let Some((item, error)) = &m.stream {
            let doc = format!(
                "Calls the streaming `{name}` on the service: its items arrive through the \
                 returned stream (dropping it cancels the call)."
            );
            return match error {
                Some(error) => quote! {
                    #[doc = #doc]
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<
                        #sdk::CallStream<#item, #error>,
                        #sdk::CallError<#error>,
                    > {
                        self.synapse.call_stream::<#args, #item, #error>(#i, #request).await
                    }
                },
                None => quote! {
                    #[doc = #doc]
                    pub async fn #name(&self, #(#params),*) -> ::core::result::Result<
                        #sdk::CallStream<#item>,
                        #sdk::CallError,
                    > {
                        self.synapse.call_stream_infallible::<#args, #item>(#i, #request).await
                    }
                },
            };
        }
        match &m.result {
            Some((ok, err)) => quote! {
                #[doc = #doc]
                pub async fn #name(&self, #(#params),*)
                    -> ::core::result::Result<#ok, #sdk::CallError<#err>> {
                    self.synapse.call::<#args, #ok, #err>(#i, #request).await
                }
            },
            None => {
                let ret = &m.ret;
                quote! {
                    #[doc = #doc]
                    pub async fn #name(&self, #(#params),*)
                        -> ::core::result::Result<#ret, #sdk::CallError> {
                        self.synapse.call_infallible::<#args, #ret>(#i, #request).await
                    }
                }
            }
        }
    });

    // Streaming methods hand their stream to the runtime instead of one encoded reply.
    let stream_arms: Vec<_> = methods
        .iter()
        .zip(&variants)
        .filter(|(m, _)| m.stream.is_some())
        .map(|(_, v)| {
            quote!(#reply_enum::#v(stream) => ::core::result::Result::Ok(::std::boxed::Box::new(stream)))
        })
        .collect();
    let into_stream = if stream_arms.is_empty() {
        quote!()
    } else {
        quote! {
            fn into_stream(
                reply: #reply_enum,
            ) -> ::core::result::Result<#rt::stream::BoxedStream, #reply_enum> {
                #[allow(unreachable_patterns)]
                match reply {
                    #(#stream_arms,)*
                    other => ::core::result::Result::Err(other),
                }
            }
        }
    };
    let (service_ty, impl_generics) = match target {
        Target::Inherent { ty } => (quote!(#ty), quote!()),
        Target::Trait { trait_ident } => {
            let server = format_ident!("{}Server", base);
            (quote!(#server<__T>), quote!(<__T: #trait_ident>))
        }
    };
    let client_doc = format!(
        "Typed client of the `{base}` service, generated by `#[service]`/`#[handler]`. \
         Connect with [`{client}::connect`]; every method returns the handler's value, or a \
         `CallError` carrying the application error or a transport failure."
    );

    quote! {
        #[doc = #client_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #[allow(unreachable_pub)]
        #vis struct #client {
            synapse: #sdk::Synapse,
        }

        #[allow(unreachable_pub, dead_code)]
        impl #client {
            /// Connects to the service's default socket (`$CELL_SOCKET_DIR/<name>.sock`).
            ///
            /// # Errors
            /// No server, or a handshake refused (version or fingerprint mismatch).
            pub async fn connect() -> ::core::result::Result<Self, #sdk::ConnectError> {
                Self::connect_to(#sdk::Endpoint::for_cell(<Self as #sdk::Protocol>::NAME)).await
            }

            /// Connects to the service at `endpoint` (a Unix socket path or a TCP address).
            ///
            /// # Errors
            /// As [`Self::connect`].
            pub async fn connect_to(
                endpoint: #sdk::Endpoint,
            ) -> ::core::result::Result<Self, #sdk::ConnectError> {
                Self::connect_with(endpoint, #sdk::SynapseConfig::default()).await
            }

            /// Connects with explicit settings (deadline, secret, in-flight bound).
            ///
            /// # Errors
            /// As [`Self::connect`].
            pub async fn connect_with(
                endpoint: #sdk::Endpoint,
                config: #sdk::SynapseConfig,
            ) -> ::core::result::Result<Self, #sdk::ConnectError> {
                let synapse = #sdk::Synapse::connect::<Self>(endpoint, config).await?;
                ::core::result::Result::Ok(Self { synapse })
            }

            /// The same connection; calls made through the result have this deadline, which
            /// is also sent to the server.
            pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { synapse: self.synapse.with_timeout(::core::option::Option::Some(timeout)) }
            }

            /// The same connection; calls made through the result carry this metadata
            /// (bounded key/value pairs the handler reads from its `CallContext`).
            pub fn with_metadata(&self, metadata: #sdk::Metadata) -> Self {
                Self { synapse: self.synapse.with_metadata(metadata) }
            }

            #(#client_methods)*
        }

        impl #sdk::Protocol for #client {
            const NAME: &'static str = #name;
            const FINGERPRINT: u64 = {
                let state = #fp::mix_str(#fp::SEED, "service");
                #(#fingerprint_steps)*
                state
            };
            const METHODS: &'static [&'static str] = &[#(#method_names),*];
        }

        impl #sdk::TypedClient for #client {
            fn from_synapse(synapse: #sdk::Synapse) -> Self {
                Self { synapse }
            }
            fn synapse(&self) -> &#sdk::Synapse {
                &self.synapse
            }
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, unreachable_pub, dead_code, missing_docs)]
        #vis enum #call_enum { #(#call_variants,)* }

        #[doc(hidden)]
        #[allow(non_camel_case_types, unreachable_pub, dead_code, missing_docs)]
        #vis enum #reply_enum { #(#reply_variants,)* }

        const _: () = {
            fn __assert_protein<T: #sdk::Protein>() {}
            #[allow(dead_code)]
            fn __checks() { #(#protein_checks)* }
        };

        impl #impl_generics #sdk::Protocol for #service_ty {
            const NAME: &'static str = <#client as #sdk::Protocol>::NAME;
            const FINGERPRINT: u64 = <#client as #sdk::Protocol>::FINGERPRINT;
            const METHODS: &'static [&'static str] = <#client as #sdk::Protocol>::METHODS;
        }

        impl #impl_generics #sdk::Service for #service_ty {
            type Call = #call_enum;
            type Reply = #reply_enum;

            fn decode(
                method: u16,
                payload: &[u8],
            ) -> ::core::result::Result<#call_enum, #sdk::DispatchError> {
                match method {
                    #(#decode_arms,)*
                    other => ::core::result::Result::Err(#sdk::DispatchError::UnknownMethod(other)),
                }
            }

            fn decode_owned(
                method: u16,
                frame: #sdk::codec::Bytes,
                payload: ::core::ops::Range<usize>,
            ) -> ::core::result::Result<#call_enum, #sdk::DispatchError> {
                #[allow(unreachable_code)]
                match method {
                    #(#decode_owned_arms,)*
                    _ => match frame.get(payload) {
                        ::core::option::Option::Some(bytes) => {
                            <Self as #sdk::Service>::decode(method, bytes)
                        }
                        ::core::option::Option::None => <Self as #sdk::Service>::decode(method, &[]),
                    },
                }
            }

            fn call(
                &self,
                call: #call_enum,
            ) -> impl ::core::future::Future<Output = #reply_enum> + ::core::marker::Send + '_ {
                async move {
                    match call {
                        #(#call_arms,)*
                    }
                }
            }

            fn encode(
                reply: &#reply_enum,
                out: &mut #sdk::codec::Bytes,
            ) -> ::core::result::Result<#rt::Status, #sdk::codec::EncodeError> {
                #encode_body
            }

            #into_stream
        }

        impl #impl_generics #sdk::ServiceClient for #service_ty {
            type Client = #client;
        }
    }
}

/// `#[service] pub trait Ping { async fn ping(&self, n: u64) -> u64; }`: the api-crate form.
fn expand_trait(
    mut t: syn::ItemTrait,
    name: Option<String>,
    strict: bool,
    mut errors: Vec<syn::Error>,
) -> TokenStream {
    if !t.generics.params.is_empty() {
        errors.push(syn::Error::new(
            t.generics.span(),
            "a service trait cannot be generic: its protocol must be fixed",
        ));
    }
    let original = t.clone();
    let mut methods = Vec::new();
    // Reported whatever else happens, but it does not stop the best-effort expansion below (its
    // paths fall back to `::cell_sdk`).
    let (sdk, sdk_error) = crate::paths::cell_sdk();
    let sdk_error = sdk_error.map(|e| e.to_compile_error());
    for item in &mut t.items {
        match item {
            syn::TraitItem::Fn(f) => {
                if let Some(m) = parse_method(&f.sig, &mut errors) {
                    methods.push(m);
                }
                if f.default.is_some() {
                    errors.push(syn::Error::new(
                        f.sig.ident.span(),
                        "a service trait declares methods without bodies: the server \
                         implements them",
                    ));
                }
                // `async fn` → `fn … -> impl Future<Output = …> + Send`, so the server can
                // run calls on a multi-threaded runtime; implementors still write `async fn`.
                if f.sig.asyncness.take().is_some() {
                    let ret = match &f.sig.output {
                        ReturnType::Default => quote!(()),
                        ReturnType::Type(_, ty) => ty.to_token_stream(),
                    };
                    f.sig.output = syn::parse_quote!(
                        -> impl ::core::future::Future<Output = #ret> + ::core::marker::Send
                    );
                }
            }
            other => errors.push(syn::Error::new(
                other.span(),
                "a service trait contains only `async fn` methods",
            )),
        }
    }
    t.supertraits.push(syn::parse_quote!(::core::marker::Send));
    t.supertraits.push(syn::parse_quote!(::core::marker::Sync));
    t.supertraits.push(syn::parse_quote!('static));
    if !errors.is_empty() {
        // Best effort: the trait as written (not rewritten), so only our errors show.
        let original = with_errors(original.into_token_stream(), &errors);
        return quote!(#original #sdk_error);
    }
    let name = name.unwrap_or_else(|| kebab(&t.ident.to_string()));
    let base = t.ident.clone();
    let server = format_ident!("{}Server", base);
    let vis = t.vis.clone();
    let generated = generate(
        &Target::Trait {
            trait_ident: &t.ident,
        },
        quote!(#name),
        quote!(#strict),
        &base,
        &methods,
        &vis,
    );
    let server_doc = format!(
        "Serves an implementation of [`{base}`]: `{server}(my_impl).serve().await` or \
         `cell_sdk::serve({server}(my_impl))`."
    );
    quote! {
        #t

        #[doc = #server_doc]
        #[allow(unreachable_pub)]
        #vis struct #server<T>(pub T);

        #[allow(unreachable_pub, dead_code)]
        impl<__T: #base> #server<__T> {
            /// Serves on the default socket (`$CELL_SOCKET_DIR/<name>.sock`) until shut down.
            ///
            /// # Errors
            /// When the socket cannot be bound (another live server, permissions).
            pub async fn serve(self) -> ::core::result::Result<(), #sdk::ServeError> {
                #sdk::serve(self).await
            }
        }

        #generated
        #sdk_error
    }
}
