//! `#[handler]`: turns an inherent `impl` of async methods on a `#[service]` struct into the
//! service's protocol, server dispatch and typed client (see `service.rs` for the generator).

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{ImplItem, ItemImpl, Type, spanned::Spanned};

use crate::service::{Method, Target, generate, parse_method, with_errors};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new(
            args.span(),
            "`#[handler]` takes no arguments; name the service with `#[service(name = \"...\")]`",
        ));
    }
    let imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(imp) => imp,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "`#[handler]` applies to an `impl` block of a `#[service]` struct",
            );
            return with_errors(item, &[e]);
        }
    };
    if let Some((_, path, _)) = &imp.trait_ {
        errors.push(syn::Error::new(
            path.span(),
            "`#[handler]` applies to an inherent `impl Users { .. }`; to implement a \
             `#[service]` trait, write a plain `impl Trait for Type` and serve `TraitServer(value)`",
        ));
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "a service cannot be generic: its protocol must be one fixed type",
        ));
    }
    let ident = match &*imp.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            Some(p.path.segments[0].ident.clone())
        }
        other => {
            errors.push(syn::Error::new(
                other.span(),
                "`#[handler]` needs the service struct's plain name here (`impl Users`)",
            ));
            None
        }
    };
    let mut methods: Vec<Method> = Vec::new();
    for item in &imp.items {
        match item {
            ImplItem::Fn(f) => {
                if let Some(m) = parse_method(&f.sig, &mut errors) {
                    methods.push(m);
                }
            }
            other => errors.push(syn::Error::new(
                other.span(),
                "a `#[handler]` block contains only the service's `async fn` handlers; put \
                 other items in a separate `impl`",
            )),
        }
    }
    let structural = imp.trait_.is_some() || !imp.generics.params.is_empty();
    let Some(ident) = ident.filter(|_| !structural) else {
        // Nothing sensible to generate: the impl as written plus the errors.
        return with_errors(imp.into_token_stream(), &errors);
    };
    // Best effort from here on: a method with an error is left out of the protocol, but the
    // client, `connect` and `serve` are still generated, so code using them keeps resolving in
    // the editor and the only errors are the ones at the user's tokens.
    let (sdk, sdk_error) = crate::paths::cell_sdk();
    errors.extend(sdk_error);
    let name = quote!(<#ident as #sdk::__private::ServiceName>::NAME);
    let strict = quote!(<#ident as #sdk::__private::ServiceName>::STRICT);
    let generated = generate(
        &Target::Inherent { ty: &ident },
        name,
        strict,
        &ident,
        &methods,
        &syn::parse_quote!(pub),
    );
    let client = quote::format_ident!("{}Client", ident);
    let expansion = quote! {
        #imp

        #[allow(unreachable_pub, dead_code)]
        impl #ident {
            /// Connects a typed client to this service's default socket.
            ///
            /// # Errors
            /// No server, or a handshake refused (version or fingerprint mismatch).
            pub async fn connect() -> ::core::result::Result<#client, #sdk::ConnectError> {
                #client::connect().await
            }

            /// Serves this service on its default socket (`$CELL_SOCKET_DIR/<name>.sock`) until
            /// shut down.
            ///
            /// # Errors
            /// When the socket cannot be bound (another live server, permissions).
            pub async fn serve(self) -> ::core::result::Result<(), #sdk::ServeError> {
                #sdk::serve(self).await
            }
        }

        #generated
    };
    with_errors(expansion, &errors)
}
