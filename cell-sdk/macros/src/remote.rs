//! `cell_remote!(Alias = "cell")`: the provider's declared surface under an alias of the
//! consumer's choosing.
//!
//! The cell name is resolved through `cell-resolver` against the consumer's own manifest
//! (renames, `"cell@0.4"` qualifiers, inherited workspace dependencies), never assumed, and the
//! expansion is a plain module of re-exports so rustc and rust-analyzer resolve `Alias::macro`
//! by ordinary name resolution.

use cell_export::{EXPORTS_MODULE, FORMAT_CONST, RemoteInput, SUPPORTED_FORMAT};
use cell_resolver::ProblemCode;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    // The parser is shared with the macro index (`cell_export::parse_remote`): same words.
    let input: RemoteInput = match cell_export::parse_remote(input.clone()) {
        Ok(input) => input,
        Err(e) => {
            // Best effort: when the alias itself is readable, define it (empty) so uses of it
            // do not pile further errors onto the one that matters.
            let error = e.to_compile_error();
            // Only a real identifier: a keyword or `_` (`type = "x"`) would make `pub mod type`
            // a parse error that swallows the CELL0003 message.
            let alias = match input.into_iter().next() {
                Some(proc_macro2::TokenTree::Ident(alias)) => {
                    syn::parse2::<Ident>(quote!(#alias)).ok()
                }
                _ => None,
            };
            return match alias {
                Some(alias) => quote! {
                    #[allow(non_snake_case, unreachable_pub)]
                    pub mod #alias {}
                    #error
                },
                None => error,
            };
        }
    };
    let alias = &input.alias;
    let spec = input.cell.value();
    let resolved = cell_resolver::resolve_from_env(&spec)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            Ok((
                crate::paths::crate_path(&r.extern_crate, input.cell.span())?,
                r,
            ))
        });
    let (krate, resolved) = match resolved {
        Ok(ok) => ok,
        Err(message) => {
            // Best effort: the alias still exists (empty), so the rest of the file resolves as
            // far as it can and the editor keeps its outline.
            let error = syn::Error::new(input.cell.span(), message).to_compile_error();
            return quote! {
                #[allow(non_snake_case, unreachable_pub)]
                pub mod #alias {}
                #error
            };
        }
    };
    let module = format_ident!("{}", EXPORTS_MODULE, span = input.cell.span());
    let format_const = format_ident!("{}", FORMAT_CONST);
    let doc = format!(
        "Provider cell `{}` ({}extern crate `{}`) under the alias `{alias}`: its exported \
         macros and API.",
        resolved.package,
        resolved
            .version_req
            .as_deref()
            .map(|v| format!("version `{v}`, "))
            .unwrap_or_default(),
        resolved.extern_crate
    );
    let not_provider = format!(
        "{}: `{spec}` is a dependency of this crate but not a provider cell: it has no \
         `cell_sdk::export!` declaration, so there is nothing to put under `{alias}` (see \
         docs/problems.md#cell0009)",
        ProblemCode::NotAProvider
    );
    let too_new = format!(
        "{}: `{spec}` declares its exports in a format newer than this cell-sdk reads \
         (format {SUPPORTED_FORMAT}); upgrade cell-sdk",
        ProblemCode::UnsupportedExportFormat
    );
    // The const block checks, with our problem code, that the dependency is a provider: the
    // inner block's glob import shadows the outer fallback module only when the provider has
    // an exports module. (rustc also reports E0432 at the same literal; docs/problems.md maps
    // it to CELL0009.)
    let check = quote_spanned! {input.cell.span()=>
        const _: () = {
            #[allow(non_snake_case, dead_code, unreachable_pub)]
            mod #module {
                pub const #format_const: u32 = 0;
            }
            {
                #[allow(unused_imports)]
                use #krate::*;
                ::core::assert!(#module::#format_const != 0, #not_provider);
                ::core::assert!(#module::#format_const <= #SUPPORTED_FORMAT, #too_new);
            }
        };
    };
    // Spanned at the alias so rustc's E0428 (alias defined twice) points at it.
    let alias_module = quote_spanned! {alias.span()=>
        #[doc = #doc]
        // `pub` so a library can re-export its aliases; in a binary nobody outside sees it.
        #[allow(non_snake_case, unreachable_pub)]
        pub mod #alias {
            pub use #krate::#module::*;
        }
    };
    quote! {
        #alias_module
        #check
    }
}
