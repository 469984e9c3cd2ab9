//! The parser: export-declaration tokens → [`ExportDecl`] plus every error found.
//!
//! Parsing never fails as a whole: the body is split into entries (at `;`, or after the `{ … }`
//! of a macro entry) and each entry is parsed on its own, so one typo costs one entry, not the
//! declaration. That is what an editor needs while the user types.

use std::collections::HashSet;
use std::str::FromStr;

use cell_resolver::ProblemCode;
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Ident, LitInt, LitStr, Token, braced, bracketed};

use crate::model::{
    ArgSpec, ExportDecl, HelperSpec, Literal, Location, MacroExport, MacroKind, SUPPORTED_FORMAT,
    Spanned, ValueKind,
};

/// A problem found while parsing a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError<S> {
    /// [`ProblemCode::MalformedExport`] or [`ProblemCode::UnsupportedExportFormat`].
    pub code: ProblemCode,
    /// One sentence, without the code.
    pub message: String,
    /// The offending tokens.
    pub span: S,
}

impl<S> ParseError<S> {
    /// Converts the span.
    pub fn map_span<S2>(self, f: &mut impl FnMut(S) -> S2) -> ParseError<S2> {
        ParseError {
            code: self.code,
            message: self.message,
            span: f(self.span),
        }
    }
}

impl<S> std::fmt::Display for ParseError<S> {
    /// `CELL0010: message` — the words `export!` shows at compile time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ParseError<Span> {
    /// The error as a `syn::Error` whose message starts with the code, ready for
    /// `to_compile_error()`.
    pub fn to_syn_error(&self) -> syn::Error {
        syn::Error::new(self.span, self.to_string())
    }
}

/// A declaration and the problems found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<S> {
    /// What could be understood.
    pub decl: ExportDecl<S>,
    /// Every problem, in source order. Empty means the declaration is valid.
    pub errors: Vec<ParseError<S>>,
}

/// Every export declaration found in one source file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileExports {
    /// One entry per `export! { … }` invocation, in source order.
    pub decls: Vec<Parsed<Location>>,
    /// Set when the file does not even tokenize (unbalanced delimiters while typing); then
    /// `decls` is empty and a tool should keep its previous result rather than report.
    pub lex_error: Option<ParseError<Location>>,
}

/// Parses the body of `export! { … }` as the macro receives it. Errors about missing entries
/// point at `Span::call_site()`.
///
/// ```
/// use quote::quote;
/// let parsed = cell_export::parse_tokens(quote! {
///     format = 1;
///     cell = "greet";
///     macros = greet_macros;
///     attribute hello { args { _: str } }
///     api = [Greeting];
/// });
/// assert!(parsed.errors.is_empty());
/// assert_eq!(parsed.decl.macros[0].name.value, "hello");
/// ```
pub fn parse_tokens(tokens: TokenStream) -> Parsed<Span> {
    parse_body(tokens, Span::call_site())
}

/// Finds and parses every `export! { … }` / `cell_sdk::export! { … }` in a source file, with
/// line/column locations. Never compiles or runs anything; works on half-typed files as long
/// as their delimiters balance.
///
/// Spans come from proc-macro2's thread-local source map, which grows with every parsed file:
/// a long-running tool should call `proc_macro2::extra::invalidate_current_thread_spans()`
/// once it has converted what it needs (the results here hold only [`Location`]s).
///
/// ```
/// let file = cell_export::parse_file(r#"
/// cell_sdk::export! {
///     format = 1;
///     cell = "greet";
///     macros = greet_macros;
///     attribute hello {}
/// }
/// "#);
/// let decl = &file.decls[0].decl;
/// assert_eq!(decl.macros[0].name.value, "hello");
/// assert_eq!(decl.macros[0].name.span.start.line, 6);
/// ```
pub fn parse_file(source: &str) -> FileExports {
    parse_file_as(source, "cell_sdk")
}

/// As [`parse_file`], for a provider that renamed its cell-sdk dependency: `sdk_crate` is the
/// extern crate name it uses (`sdk` for `sdk = { package = "cell-sdk" }`, which
/// `cell_resolver` answers), so `sdk::export! { … }` is found.
///
/// ```
/// let file = cell_export::parse_file_as("sdk::export! { format = 1; }", "sdk");
/// assert_eq!(file.decls.len(), 1);
/// assert!(cell_export::parse_file("sdk::export! { format = 1; }").decls.is_empty());
/// ```
pub fn parse_file_as(source: &str, sdk_crate: &str) -> FileExports {
    let tokens = match TokenStream::from_str(source) {
        Ok(tokens) => tokens,
        Err(e) => {
            return FileExports {
                decls: Vec::new(),
                lex_error: Some(ParseError {
                    code: ProblemCode::MalformedExport,
                    message: format!("the file does not tokenize: {e}"),
                    span: Location::from_span(e.span()),
                }),
            };
        }
    };
    let mut out = FileExports::default();
    scan(tokens, sdk_crate, &mut out);
    out
}

/// Looks for `export ! { … }` not preceded by a path other than `cell_sdk::`.
fn scan(tokens: TokenStream, sdk_crate: &str, out: &mut FileExports) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tts.len() {
        if let Some(group) = export_invocation(&tts, i, sdk_crate) {
            let parsed = parse_body(group.stream(), group.span());
            let mut to_location = Location::from_span;
            out.decls.push(Parsed {
                decl: parsed.decl.map_spans(&mut to_location),
                errors: parsed
                    .errors
                    .into_iter()
                    .map(|e| e.map_span(&mut to_location))
                    .collect(),
            });
            i += 3;
            continue;
        }
        if let TokenTree::Group(g) = &tts[i] {
            scan(g.stream(), sdk_crate, out);
        }
        i += 1;
    }
}

fn export_invocation<'a>(
    tts: &'a [TokenTree],
    i: usize,
    sdk_crate: &str,
) -> Option<&'a proc_macro2::Group> {
    let TokenTree::Ident(name) = &tts[i] else {
        return None;
    };
    if name != "export" {
        return None;
    }
    let bang = matches!(tts.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
    let Some(TokenTree::Group(group)) = tts.get(i + 2) else {
        return None;
    };
    if !bang {
        return None;
    }
    let is_colon = |j: usize| matches!(&tts[j], TokenTree::Punct(p) if p.as_char() == ':');
    let qualified = i >= 2 && is_colon(i - 1) && is_colon(i - 2);
    if qualified {
        let by_sdk = i >= 3 && matches!(&tts[i - 3], TokenTree::Ident(p) if p == sdk_crate);
        if !by_sdk {
            return None;
        }
    }
    Some(group)
}

struct State {
    decl: ExportDecl<Span>,
    errors: Vec<ParseError<Span>>,
    seen: HashSet<&'static str>,
}

impl State {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.errors.push(ParseError {
            code: ProblemCode::MalformedExport,
            message: message.into(),
            span,
        });
    }

    /// Records a once-only entry; reports the duplicate.
    fn once(&mut self, key: &'static str, span: Span) -> bool {
        if self.seen.insert(key) {
            true
        } else {
            self.error(span, format!("`{key}` is declared twice"));
            false
        }
    }
}

fn parse_body(tokens: TokenStream, whole: Span) -> Parsed<Span> {
    let mut state = State {
        decl: ExportDecl::default(),
        errors: Vec::new(),
        seen: HashSet::new(),
    };
    for entry in split_entries(tokens) {
        let tokens: TokenStream = entry.into_iter().collect();
        let result = (|input: ParseStream<'_>| parse_entry(input, &mut state)).parse2(tokens);
        if let Err(e) = result {
            for e in e {
                state.error(e.span(), e.to_string());
            }
        }
    }
    for (key, present, example) in [
        ("format", state.decl.format.is_some(), "format = 1;"),
        ("cell", state.decl.cell.is_some(), "cell = \"my-cell\";"),
        (
            "macros",
            state.decl.macros_crate.is_some(),
            "macros = my_cell_macros;",
        ),
    ] {
        // Only report a missing entry when it was not present-but-broken.
        if !present && !state.seen.contains(key) {
            state.error(whole, format!("missing `{key}`: add `{example}`"));
        }
    }
    Parsed {
        decl: state.decl,
        errors: state.errors,
    }
}

/// Splits at top-level `;`, and after the brace group of `attribute|function|derive name {…}`.
fn split_entries(tokens: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut entries = Vec::new();
    let mut current: Vec<TokenTree> = Vec::new();
    for tt in tokens {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ';' => {
                if !current.is_empty() {
                    entries.push(std::mem::take(&mut current));
                }
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace && is_macro_head(&current) => {
                current.push(tt);
                entries.push(std::mem::take(&mut current));
            }
            _ => current.push(tt),
        }
    }
    if !current.is_empty() {
        entries.push(current);
    }
    entries
}

/// `#[…]* keyword Name` exactly. Any identifier counts as the keyword, so a misspelt
/// `attributes b { … }` is still one (reported) entry instead of swallowing the next ones.
fn is_macro_head(tokens: &[TokenTree]) -> bool {
    let mut i = 0;
    while matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == '#')
        && matches!(tokens.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket)
    {
        i += 2;
    }
    tokens.len() == i + 2
        && matches!(&tokens[i], TokenTree::Ident(_))
        && matches!(&tokens[i + 1], TokenTree::Ident(_))
}

fn parse_entry(input: ParseStream<'_>, state: &mut State) -> syn::Result<()> {
    let attrs = input.call(syn::Attribute::parse_outer)?;
    let key = input.call(Ident::parse_any)?;
    let name = key.to_string();
    match name.as_str() {
        "format" => {
            input.parse::<Token![=]>()?;
            let lit: LitInt = input.parse()?;
            let value: u32 = lit.base10_parse()?;
            if state.once("format", key.span()) {
                if value != SUPPORTED_FORMAT {
                    state.errors.push(ParseError {
                        code: ProblemCode::UnsupportedExportFormat,
                        message: format!(
                            "export format {value} is not supported by this cell-sdk (it reads \
                             format {SUPPORTED_FORMAT}); upgrade cell-sdk or write `format = \
                             {SUPPORTED_FORMAT};`"
                        ),
                        span: lit.span(),
                    });
                }
                state.decl.format = Some(Spanned::new(value, lit.span()));
            }
        }
        "cell" => {
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            if state.once("cell", key.span()) {
                state.decl.cell = Some(Spanned::new(lit.value(), lit.span()));
            }
        }
        "macros" => {
            input.parse::<Token![=]>()?;
            let path: syn::Path = input.parse()?;
            if state.once("macros", key.span()) {
                state.decl.macros_crate = Some(Spanned::new(path_string(&path), path.span()));
            }
        }
        "api" => {
            input.parse::<Token![=]>()?;
            let content;
            bracketed!(content in input);
            let items = Punctuated::<syn::Path, Token![,]>::parse_terminated(&content)?;
            if state.once("api", key.span()) {
                for path in items {
                    let text = path_string(&path);
                    if let Some(problem) = api_path_problem(&path) {
                        state.error(path.span(), problem);
                    } else if state.decl.api.iter().any(|a| a.value == text) {
                        state.error(path.span(), format!("`{text}` is listed twice in `api`"));
                    } else {
                        state.decl.api.push(Spanned::new(text, path.span()));
                    }
                }
            }
        }
        "attribute" | "function" | "derive" => {
            let kind = match name.as_str() {
                "attribute" => MacroKind::Attribute,
                "function" => MacroKind::Function,
                _ => MacroKind::Derive,
            };
            let entry = parse_macro(input, kind, &attrs, state)?;
            if state.decl.macro_named(&entry.name.value).is_some() {
                let message = format!("macro `{}` is declared twice", entry.name.value);
                state.error(entry.name.span, message);
            } else {
                state.decl.macros.push(entry);
            }
        }
        _ => {
            let hint = if name == "attr" || name == "attributes" {
                " (did you mean `attribute`?)"
            } else if name == "fn" || name == "proc_macro" {
                " (did you mean `function`?)"
            } else {
                ""
            };
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown entry `{name}`{hint}: expected `format`, `cell`, `macros`, `api`, \
                     `attribute`, `function` or `derive`"
                ),
            ));
        }
    }
    if !attrs.is_empty() && !matches!(name.as_str(), "attribute" | "function" | "derive") {
        state.error(
            attrs[0].span(),
            "attributes and docs are only allowed on macro entries",
        );
    }
    Ok(())
}

fn parse_macro(
    input: ParseStream<'_>,
    kind: MacroKind,
    attrs: &[syn::Attribute],
    state: &mut State,
) -> syn::Result<MacroExport<Span>> {
    let name: Ident = input.parse()?;
    let body;
    let brace = braced!(body in input);
    let mut entry = MacroExport {
        kind,
        name: Spanned::new(name.to_string(), name.span()),
        docs: docs(attrs),
        helpers: Vec::new(),
        args: Vec::new(),
        span: name.span().join(brace.span.close()).unwrap_or(name.span()),
    };
    let mut seen_helpers = false;
    let mut seen_args = false;
    while !body.is_empty() {
        let key = body.call(Ident::parse_any)?;
        match key.to_string().as_str() {
            "helpers" => {
                body.parse::<Token![=]>()?;
                let list;
                bracketed!(list in body);
                let mut names = Vec::new();
                while !list.is_empty() {
                    let name = list.call(Ident::parse_any)?;
                    let mut args = Vec::new();
                    if list.peek(syn::token::Paren) {
                        let inner;
                        syn::parenthesized!(inner in list);
                        parse_args(&inner, &mut args, state)?;
                    }
                    names.push((name, args));
                    if list.is_empty() {
                        break;
                    }
                    list.parse::<Token![,]>()?;
                }
                if std::mem::replace(&mut seen_helpers, true) {
                    state.error(key.span(), "`helpers` is declared twice");
                }
                if kind == MacroKind::Function {
                    state.error(
                        key.span(),
                        "a function-like macro has no helper attributes; helpers belong to \
                         `attribute` and `derive` entries",
                    );
                }
                for (h, args) in names {
                    let text = h.to_string();
                    if entry.helper(&text).is_some() {
                        state.error(h.span(), format!("helper `{text}` is listed twice"));
                    } else {
                        entry.helpers.push(HelperSpec {
                            name: Spanned::new(text, h.span()),
                            args,
                        });
                    }
                }
            }
            "args" => {
                let list;
                braced!(list in body);
                if std::mem::replace(&mut seen_args, true) {
                    state.error(key.span(), "`args` is declared twice");
                }
                if kind == MacroKind::Derive {
                    state.error(key.span(), "a derive macro takes no arguments");
                }
                parse_args(&list, &mut entry.args, state)?;
            }
            other => {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown key `{other}` in a macro entry: expected `helpers` or `args`"),
                ));
            }
        }
        // Separators between `helpers = [...]` and `args {...}` are optional.
        if body.peek(Token![;]) {
            body.parse::<Token![;]>()?;
        } else if body.peek(Token![,]) {
            body.parse::<Token![,]>()?;
        }
    }
    Ok(entry)
}

/// A comma-separated argument schema (trailing comma allowed).
fn parse_args(
    list: ParseStream<'_>,
    args: &mut Vec<ArgSpec<Span>>,
    state: &mut State,
) -> syn::Result<()> {
    while !list.is_empty() {
        let arg = parse_arg(list, state)?;
        check_arg(&arg, args, state);
        args.push(arg);
        if list.is_empty() {
            break;
        }
        list.parse::<Token![,]>()?;
    }
    Ok(())
}

fn parse_arg(input: ParseStream<'_>, state: &mut State) -> syn::Result<ArgSpec<Span>> {
    let start = input.span();
    let name = if input.peek(Token![_]) {
        input.parse::<Token![_]>()?;
        None
    } else {
        let ident = input.call(Ident::parse_any)?;
        Some(Spanned::new(ident.to_string(), ident.span()))
    };
    input.parse::<Token![:]>()?;
    let kind = if input.peek(LitStr) {
        let mut values = Vec::new();
        loop {
            let lit: LitStr = input.parse()?;
            if values.contains(&lit.value()) {
                state.error(lit.span(), format!("{:?} is listed twice", lit.value()));
            } else {
                values.push(lit.value());
            }
            if !input.peek(Token![|]) {
                break;
            }
            input.parse::<Token![|]>()?;
        }
        ValueKind::OneOf(values)
    } else {
        let kind = input.call(Ident::parse_any)?;
        match kind.to_string().as_str() {
            "str" => ValueKind::Str,
            "bool" => ValueKind::Bool,
            "int" => ValueKind::Int,
            "expr" => ValueKind::Expr,
            other => {
                return Err(syn::Error::new(
                    kind.span(),
                    format!(
                        "unknown value kind `{other}`: expected `str`, `bool`, `int`, `expr` or \
                         literal alternatives like `\"a\" | \"b\"`"
                    ),
                ));
            }
        }
    };
    let optional = if input.peek(Token![?]) {
        input.parse::<Token![?]>()?;
        true
    } else {
        false
    };
    let default = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let lit: syn::Lit = input.parse()?;
        let value = match &lit {
            syn::Lit::Str(s) => Literal::Str(s.value()),
            syn::Lit::Bool(b) => Literal::Bool(b.value),
            syn::Lit::Int(i) => Literal::Int(i.base10_parse()?),
            _ => {
                return Err(syn::Error::new(
                    lit.span(),
                    "a default is a string, boolean or integer literal",
                ));
            }
        };
        Some(Spanned::new(value, lit.span()))
    } else {
        None
    };
    let end = input.span();
    Ok(ArgSpec {
        name,
        kind,
        optional,
        default,
        span: start.join(end).unwrap_or(start),
    })
}

fn check_arg(arg: &ArgSpec<Span>, previous: &[ArgSpec<Span>], state: &mut State) {
    match &arg.name {
        None => {
            if !previous.is_empty() {
                state.error(arg.span, "the positional argument `_` must come first");
            }
        }
        Some(name) => {
            if previous
                .iter()
                .any(|p| p.name.as_ref().is_some_and(|n| n.value == name.value))
            {
                state.error(
                    name.span,
                    format!("argument `{}` is declared twice", name.value),
                );
            }
        }
    }
    if let Some(default) = &arg.default {
        let fits = match (&arg.kind, &default.value) {
            (ValueKind::OneOf(values), Literal::Str(s)) => values.contains(s),
            (ValueKind::Str, Literal::Str(_))
            | (ValueKind::Bool, Literal::Bool(_))
            | (ValueKind::Int, Literal::Int(_))
            | (ValueKind::Expr, _) => true,
            _ => false,
        };
        if !fits {
            state.error(
                default.span,
                format!(
                    "default {} is not a value of kind `{}`",
                    default.value, arg.kind
                ),
            );
        }
    }
}

fn docs(attrs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Why an `api` item cannot be re-exported, if it cannot. Items are paths inside the provider
/// crate (the expansion writes `pub use crate::<item>;`): an absolute `::x`, `self::x` or
/// `super::x` would make that `crate:: ::x` or `crate::self::x`, which does not parse and takes
/// the whole exports module with it. `crate::x` is accepted (the expansion drops the `crate`).
fn api_path_problem(path: &syn::Path) -> Option<String> {
    let text = path_string(path);
    if path.leading_colon.is_some() {
        let inner = text.trim_start_matches("::");
        return Some(format!(
            "`api` lists items of this crate: write `{inner}` (a path inside this crate), not \
             the absolute `{text}`; to export another crate's item, `pub use` it in this crate \
             first"
        ));
    }
    let first = path.segments.first()?.ident.to_string();
    match first.as_str() {
        "self" | "super" => {
            let rest: Vec<String> = path
                .segments
                .iter()
                .skip(1)
                .map(|s| s.ident.to_string())
                .collect();
            let hint = if rest.is_empty() {
                String::new()
            } else {
                format!(": write `{}`", rest.join("::"))
            };
            Some(format!(
                "`api` paths start at this crate's root, so `{first}` has no meaning in `{text}`{hint}"
            ))
        }
        "crate" if path.segments.len() == 1 => {
            Some("`api` lists items of this crate, not the crate itself".to_owned())
        }
        _ => None,
    }
}

fn path_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}
