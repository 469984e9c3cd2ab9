//! The input of `cell_remote!(Alias = "cell")`, parsed by one parser for both users: the
//! `cell_remote!` macro (errors become `compile_error!` at the user's token) and the macro index
//! (errors become CELL0003 problems at the same token with the same words). One parser is what
//! makes the two agree, which `tests/integration/agree.rs` checks against real cargo.

use cell_resolver::ProblemCode;
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

/// `Alias = "cell"` or `Alias = "cell@version"`, with an optional trailing comma.
#[derive(Debug, Clone)]
pub struct RemoteInput {
    /// The alias (`DB`).
    pub alias: Ident,
    /// The string literal naming the cell (`"celldb"`, `"celldb@0.4"`); its value is checked by
    /// `cell_resolver::parse_spec`, not here.
    pub cell: LitStr,
}

/// The text every CELL0003 message ends with.
pub const REMOTE_SYNTAX: &str = "expected `Alias = \"cell\"` or `Alias = \"cell@0.4\"`";

impl Parse for RemoteInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let malformed = |span: Span, what: &str| {
            syn::Error::new(
                span,
                format!("{}: {what}; {REMOTE_SYNTAX}", ProblemCode::MalformedRemote),
            )
        };
        if input.is_empty() {
            return Err(malformed(
                Span::call_site(),
                "`cell_remote!` needs an alias and a cell",
            ));
        }
        let alias: Ident = input
            .parse()
            .map_err(|e| malformed(e.span(), "the alias must be an identifier"))?;
        if !input.peek(Token![=]) {
            return Err(malformed(input.span(), "expected `=` after the alias"));
        }
        input.parse::<Token![=]>()?;
        if input.is_empty() {
            return Err(malformed(input.span(), "expected the cell name after `=`"));
        }
        if !input.peek(LitStr) {
            let span = input.span();
            let hint = match input.fork().parse::<syn::Path>() {
                Ok(p) if p.segments.len() == 1 => {
                    format!(
                        "the cell name is a string: write `{alias} = \"{}\"`",
                        p.segments[0].ident
                    )
                }
                _ => "the cell name is a string literal".to_owned(),
            };
            return Err(malformed(span, &hint));
        }
        let cell: LitStr = input.parse()?;
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(malformed(
                input.span(),
                "one alias per `cell_remote!`; write another `cell_remote!` for another cell",
            ));
        }
        Ok(RemoteInput { alias, cell })
    }
}

/// Parses the tokens inside `cell_remote!( … )`.
///
/// # Errors
/// A CELL0003 error (its message starts with `CELL0003: `) at the offending token, or at
/// `Span::call_site()` for an empty call.
pub fn parse_remote(tokens: proc_macro2::TokenStream) -> syn::Result<RemoteInput> {
    syn::parse2(tokens)
}
