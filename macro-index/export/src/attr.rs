//! The provider side: reading an attribute macro's input against its declared schema.
//!
//! A provider's proc-macro crate gets its schema from [`Schema::parse`] (over the copy of its
//! `export!` declaration that lives in the macro crate, see [`Schema`]) and asks it to read what
//! the consumer wrote: [`Schema::attribute_args`] for `#[DB::persist(…)]`,
//! [`Schema::helper_args`] for `#[DB::index]` on a field. Both return the typed [`Args`] *and*
//! the [`Problem`]s, found by the same [`check_args`] cell-lsp runs in the editor, so rustc and
//! the editor report one mistake with one code, one span and one wording. The macro keeps its
//! best-effort expansion: it emits the item plus [`compile_errors`].
//!
//! ```
//! use cell_export::attr::{Schema, compile_errors};
//!
//! let schema = Schema::parse(r#"cell_sdk::export! {
//!     format = 1;
//!     cell = "metrics";
//!     macros = metrics_macros;
//!     attribute track {
//!         helpers = [label];
//!         args { name: str, buckets: int = 8, unit: "s" | "bytes" = "s" }
//!     }
//! }"#).unwrap();
//!
//! // In `#[proc_macro_attribute] fn track(args, item)`:
//! let written = quote::quote!(name = "requests", unit = "bytez");
//! let invocation = Some("#[Metrics::track(name = \"requests\", unit = \"bytez\")]");
//! let (args, problems) = schema.attribute_args("track", invocation, written);
//! assert_eq!(args.str("name").unwrap().value(), "requests");
//! assert_eq!(args.int::<u32>("buckets"), Some(8)); // the declared default
//! assert_eq!(
//!     problems[0].to_string(),
//!     "CELL0014: invalid value \"bytez\" for `unit`: expected \"s\" | \"bytes\"\n  \
//!      help: did you mean \"bytes\"?"
//! );
//! let errors = compile_errors(&problems); // `compile_error!`s at the user's tokens
//! assert!(!errors.is_empty());
//! ```

use std::str::FromStr;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{ToTokens, TokenStreamExt};

use crate::args::{ArgRule, Problem, Written, WrittenArg, check_args};
use crate::model::{ArgSpec, ExportDecl, Literal, Location, MacroExport, Spanned, ValueKind};

/// A provider's export declaration, parsed once, as its macros read it.
///
/// **Where the text comes from.** A proc macro must not read files outside its own package
/// (`cargo package` would break, and rust-analyzer caches expansions), and the declaration lives
/// in the *runtime* crate's `lib.rs`. So the macro crate keeps a generated copy of it
/// (`src/export_decl.rs`, a `const` holding the `export!` text) and a test that fails when the
/// copy differs from `lib.rs` ([`check_copy`]). `lib.rs` stays the one place a provider author
/// edits.
#[derive(Debug, Clone)]
pub struct Schema {
    decl: ExportDecl<Location>,
}

impl Schema {
    /// Parses a file or snippet holding one `export!` declaration.
    ///
    /// # Errors
    /// The declaration's own parse errors (a provider bug, which its tests catch), or no
    /// declaration at all.
    pub fn parse(source: &str) -> Result<Schema, String> {
        let mut file = crate::parse_file(source);
        if file.decls.len() != 1 {
            return Err(format!(
                "expected one `export!` declaration, found {}",
                file.decls.len()
            ));
        }
        let parsed = file.decls.remove(0);
        if let Some(e) = parsed.errors.first() {
            return Err(format!("the `export!` declaration does not parse: {e}"));
        }
        Ok(Schema { decl: parsed.decl })
    }

    /// The declaration.
    pub fn decl(&self) -> &ExportDecl<Location> {
        &self.decl
    }

    /// The provider's cell name (`celldb`).
    pub fn cell(&self) -> &str {
        self.decl.cell.as_ref().map_or("", |c| c.value.as_str())
    }

    /// Reads the arguments written inside `#[Alias::name( … )]`.
    ///
    /// `invocation` is the attribute as written, from `proc_macro::Span::call_site()
    /// .source_text()` (it gives the alias for messages; `None` — rust-analyzer may not provide
    /// it — falls back to the bare name).
    pub fn attribute_args(
        &self,
        name: &str,
        invocation: Option<&str>,
        tokens: TokenStream,
    ) -> (Args, Vec<Problem<SpanRange>>) {
        let spec = self.decl.macro_named(name);
        let rules: &[ArgSpec<Location>] = spec.map_or(&[], |m| m.args.as_slice());
        let alias = invocation.and_then(alias_of).unwrap_or_default();
        // "Missing argument" problems point at the whole input, or the call site.
        let anchor = SpanRange::of(&tokens).unwrap_or(SpanRange::single(Span::call_site()));
        read(&alias, name, anchor, tokens, rules)
    }

    /// Reads a helper attribute of `parent` as written on a field (or parameter, variant,
    /// method): `#[DB::index]`, `#[Val::length(min = 1)]`.
    pub fn helper_args(
        &self,
        parent: &str,
        attr: &syn::Attribute,
    ) -> (Args, Vec<Problem<SpanRange>>) {
        let path = attr.path();
        let (alias, name) = split_path(path);
        let name_span = path
            .segments
            .last()
            .map_or_else(
                || SpanRange::of(path),
                |s| Some(SpanRange::single(s.ident.span())),
            )
            .unwrap_or(SpanRange::single(Span::call_site()));
        let rules: &[ArgSpec<Location>] = self
            .decl
            .macro_named(parent)
            .and_then(|m: &MacroExport<Location>| m.helper(&name))
            .map_or(&[], |h| h.args.as_slice());
        match &attr.meta {
            syn::Meta::Path(_) => read(&alias, &name, name_span, TokenStream::new(), rules),
            syn::Meta::List(list) => read(&alias, &name, name_span, list.tokens.clone(), rules),
            syn::Meta::NameValue(nv) => {
                let (args, mut problems) =
                    read(&alias, &name, name_span, TokenStream::new(), rules);
                let at = Written {
                    alias: &alias,
                    name: &name,
                    name_span: &name_span,
                };
                problems.push(Problem::new(
                    Some(cell_resolver::ProblemCode::InvalidMacroArgument),
                    format!(
                        "`{}` takes its arguments in parentheses, not after `=`",
                        at.display()
                    ),
                    SpanRange::of(&nv.value).unwrap_or(name_span),
                ));
                (args, problems)
            }
        }
    }
}

/// The `compile_error!`s for `problems`, each at its user's tokens.
pub fn compile_errors(problems: &[Problem<SpanRange>]) -> TokenStream {
    problems
        .iter()
        .map(|p| syn::Error::new_spanned(p.span, p.to_string()).to_compile_error())
        .collect()
}

/// A `syn::Error` for one problem (to combine with a macro's own errors).
pub fn to_syn_error(p: &Problem<SpanRange>) -> syn::Error {
    syn::Error::new_spanned(p.span, p.to_string())
}

/// Checks that `copy` (the text of the macro crate's generated copy: its `EXPORT_DECL`) declares the same
/// as the `export!` in `lib_rs` (the runtime crate's source): the same model, whatever the
/// layout. Meant for a test in the macro crate; `Err` says how to refresh the copy.
///
/// # Errors
/// When the two differ, or either has no valid declaration.
pub fn check_copy(lib_rs: &str, copy: &str) -> Result<(), String> {
    let wanted = Schema::parse(lib_rs).map_err(|e| format!("lib.rs: {e}"))?;
    let have = Schema::parse(copy).map_err(|e| format!("the copy: {e}"))?;
    let strip = |s: Schema| s.decl.map_spans(&mut |_| ());
    if strip(wanted) == strip(have) {
        Ok(())
    } else {
        Err(format!(
            "the macro crate's copy of the `export!` declaration is stale; replace \
             src/export_decl.rs with:\n{}",
            render_copy(lib_rs).unwrap_or_default()
        ))
    }
}

/// The contents of a macro crate's `src/export_decl.rs` for the declaration in `lib_rs`.
pub fn render_copy(lib_rs: &str) -> Option<String> {
    let decl = declaration_text(lib_rs)?;
    let fence = "#".repeat(count_hashes(&decl) + 1);
    Some(format!(
        "//! Generated copy of the `export!` declaration in this provider's `lib.rs`: the macros\n\
         //! read their schema from it (a proc macro must not read files outside its package).\n\
         //! Do not edit: a test fails when it is stale and prints its new contents.\n\n\
         /// The declaration's text.\n\
         pub(crate) const EXPORT_DECL: &str = r{fence}\"{decl}\"{fence};\n"
    ))
}

/// The longest run of `#` right after a `"` in `s`, so a raw string fence can be longer.
fn count_hashes(s: &str) -> usize {
    s.split('"')
        .skip(1)
        .map(|rest| rest.len() - rest.trim_start_matches('#').len())
        .max()
        .unwrap_or(0)
}

/// `cell_sdk::export! { … }` with the braces' contents as written in `source` (comments and
/// layout kept), or `None` when there is no `export! { … }`.
fn declaration_text(source: &str) -> Option<String> {
    let tokens: Vec<TokenTree> = TokenStream::from_str(source).ok()?.into_iter().collect();
    tokens.windows(3).find_map(|w| match w {
        [
            TokenTree::Ident(i),
            TokenTree::Punct(bang),
            TokenTree::Group(g),
        ] if i == "export" && bang.as_char() == '!' && g.delimiter() == Delimiter::Brace => {
            let body = source.get(g.span().byte_range())?;
            Some(format!("cell_sdk::export! {body}"))
        }
        _ => None,
    })
}

/// What an attribute's arguments were read into: the values written, typed on request, with
/// the declared defaults behind them.
#[derive(Debug, Clone, Default)]
pub struct Args {
    written: Vec<(Option<String>, Value)>,
    defaults: Vec<(String, Literal)>,
}

/// One written value: its tokens and where they are.
#[derive(Debug, Clone)]
pub struct Value {
    /// The value's tokens, as written.
    pub tokens: TokenStream,
    /// Where they are.
    pub span: SpanRange,
}

impl Args {
    /// The written value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.written
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name))
            .map(|(_, v)| v)
    }

    /// The `i`-th positional value (0-based), if written.
    pub fn positional(&self, i: usize) -> Option<&Value> {
        self.written
            .iter()
            .filter(|(n, _)| n.is_none())
            .nth(i)
            .map(|(_, v)| v)
    }

    /// Whether `name` was written.
    pub fn is_written(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A `str` (or `"a" | "b"`) argument as written, with its span.
    pub fn str(&self, name: &str) -> Option<syn::LitStr> {
        syn::parse2(self.get(name)?.tokens.clone()).ok()
    }

    /// A `"a" | "b"` or `str` argument's value: as written, else the declared default.
    pub fn choice(&self, name: &str) -> Option<String> {
        match self.str(name) {
            Some(lit) => Some(lit.value()),
            None => self.default(name).and_then(|d| match d {
                Literal::Str(s) => Some(s.clone()),
                _ => None,
            }),
        }
    }

    /// An `expr` argument, parsed.
    pub fn expr(&self, name: &str) -> Option<syn::Expr> {
        syn::parse2(self.get(name)?.tokens.clone()).ok()
    }

    /// An `int` argument: as written, else the declared default; `None` when it does not fit
    /// `N`.
    pub fn int<N: FromStr>(&self, name: &str) -> Option<N> {
        let value = match self.get(name) {
            Some(v) => parse_int(&compact_text(&v.tokens))?,
            None => match self.default(name)? {
                Literal::Int(i) => *i,
                _ => return None,
            },
        };
        value.to_string().parse().ok()
    }

    /// A `bool` argument: as written, else the declared default.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(v) => syn::parse2::<syn::LitBool>(v.tokens.clone())
                .ok()
                .map(|b| b.value),
            None => match self.default(name)? {
                Literal::Bool(b) => Some(*b),
                _ => None,
            },
        }
    }

    fn default(&self, name: &str) -> Option<&Literal> {
        self.defaults
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }
}

/// An integer literal's value (sign, `_`, `0x`/`0o`/`0b`, a type suffix), if it fits `i128`.
fn parse_int(text: &str) -> Option<i128> {
    if !crate::args::is_int_literal(text) {
        return None;
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let rest = rest.replace('_', "");
    let (digits, radix) = match rest.get(..2) {
        Some("0x") => (&rest[2..], 16),
        Some("0o") => (&rest[2..], 8),
        Some("0b") => (&rest[2..], 2),
        _ => (rest.as_str(), 10),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let magnitude = i128::from_str_radix(&digits[..end], radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A span from one token to another, so an error covers a whole value (`1..=100`), as
/// `syn::Error::new_spanned` renders it.
#[derive(Debug, Clone, Copy)]
pub struct SpanRange {
    /// The first token's span.
    pub start: Span,
    /// The last token's span.
    pub end: Span,
}

impl SpanRange {
    /// One token's span.
    pub fn single(span: Span) -> SpanRange {
        SpanRange {
            start: span,
            end: span,
        }
    }

    /// From the first to the last token of `tokens`; `None` when there are none.
    pub fn of(tokens: impl ToTokens) -> Option<SpanRange> {
        let mut iter = tokens.into_token_stream().into_iter();
        let first = iter.next()?.span();
        let last = iter.last().map_or(first, |t| t.span());
        Some(SpanRange {
            start: first,
            end: last,
        })
    }
}

impl ToTokens for SpanRange {
    /// Two empty-looking tokens carrying the start and end spans: what `new_spanned` reads.
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let mut a = proc_macro2::Punct::new('#', proc_macro2::Spacing::Alone);
        a.set_span(self.start);
        let mut b = proc_macro2::Punct::new('#', proc_macro2::Spacing::Alone);
        b.set_span(self.end);
        tokens.append(a);
        tokens.append(b);
    }
}

/// `#[Val::schema(..)]` → `Val`; `#[validate::schema]` → `validate`; `#[schema]` → none.
pub fn alias_of(invocation: &str) -> Option<String> {
    let inner = invocation.trim().strip_prefix("#[")?;
    let path = inner.split(['(', ']', '=']).next()?.trim();
    let compact: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    let (prefix, _) = compact.rsplit_once("::")?;
    Some(prefix.trim_start_matches("::").to_owned())
}

/// `DB::index` → (`DB`, `index`); `index` → (``, `index`).
fn split_path(path: &syn::Path) -> (String, String) {
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match names.split_last() {
        Some((last, prefix)) => (prefix.join("::"), last.clone()),
        None => (String::new(), String::new()),
    }
}

/// Splits `tokens` at top-level commas into written arguments and checks them.
fn read(
    alias: &str,
    name: &str,
    name_span: SpanRange,
    tokens: TokenStream,
    rules: &[ArgSpec<Location>],
) -> (Args, Vec<Problem<SpanRange>>) {
    let mut written: Vec<WrittenArg<SpanRange>> = Vec::new();
    let mut values: Vec<(Option<String>, Value)> = Vec::new();
    for piece in split_commas(tokens) {
        let (arg_name, value) = split_name(piece);
        let span = SpanRange::of(&value)
            .or_else(|| arg_name.as_ref().map(|(_, s)| SpanRange::single(*s)))
            .unwrap_or(name_span);
        written.push(WrittenArg {
            name: arg_name
                .as_ref()
                .map(|(n, s)| Spanned::new(n.clone(), SpanRange::single(*s))),
            value: Spanned::new(compact_text(&value), span),
        });
        values.push((
            arg_name.map(|(n, _)| n),
            Value {
                tokens: value,
                span,
            },
        ));
    }
    let checked: Vec<ArgRule<'_>> = rules.iter().map(ArgRule::from).collect();
    let at = Written {
        alias,
        name,
        name_span: &name_span,
    };
    let mut problems = check_args(&at, &written, &checked);
    // A value that passed as text but that the macro cannot read as its kind (`concat!("a")`
    // for a `str`): the macro needs a literal, so it says so.
    for (w, (_, v)) in written.iter().zip(&values) {
        let rule = match &w.name {
            Some(n) => checked.iter().find(|r| r.name == Some(n.value.as_str())),
            None => None,
        };
        let Some(rule) = rule else { continue };
        let literal_ok = match rule.kind {
            ValueKind::Str | ValueKind::OneOf(_) => {
                syn::parse2::<syn::LitStr>(v.tokens.clone()).is_ok()
            }
            _ => true,
        };
        let reported = problems.iter().any(|p| same_span(&p.span, &v.span));
        if !literal_ok && !v.tokens.is_empty() && !reported {
            problems.push(Problem::new(
                Some(cell_resolver::ProblemCode::InvalidMacroArgument),
                format!(
                    "invalid value {} for `{}`: expected a string literal",
                    w.value.value,
                    rule.name.unwrap_or("_")
                ),
                v.span,
            ));
        }
    }
    let defaults = rules
        .iter()
        .filter_map(|r| {
            Some((
                r.name.as_ref()?.value.clone(),
                r.default.as_ref()?.value.clone(),
            ))
        })
        .collect();
    (
        Args {
            written: values,
            defaults,
        },
        problems,
    )
}

fn same_span(a: &SpanRange, b: &SpanRange) -> bool {
    format!("{:?}", a.start) == format!("{:?}", b.start)
}

/// Top-level comma-separated pieces (commas inside groups belong to their group); empty
/// pieces (a trailing comma) are dropped.
fn split_commas(tokens: TokenStream) -> Vec<TokenStream> {
    let mut out = Vec::new();
    let mut current = TokenStream::new();
    for tt in tokens {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.append(tt),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `name = value` → (name, value); anything else is a positional value. `a == b` is a value.
fn split_name(piece: TokenStream) -> (Option<(String, Span)>, TokenStream) {
    let tokens: Vec<TokenTree> = piece.clone().into_iter().collect();
    if let [TokenTree::Ident(ident), TokenTree::Punct(eq), rest @ ..] = tokens.as_slice()
        && eq.as_char() == '='
        && eq.spacing() == proc_macro2::Spacing::Alone
    {
        let name = ident.to_string();
        return (
            Some((name.trim_start_matches("r#").to_owned(), ident.span())),
            rest.iter().cloned().collect(),
        );
    }
    (None, piece)
}

/// A value's text as a person writes it: tokens joined without the spaces `to_string` puts
/// between punctuation (`-5`, `1..=100`), with one space between two words.
fn compact_text(tokens: &TokenStream) -> String {
    let mut out = String::new();
    let mut prev_word = false;
    for tt in tokens.clone() {
        let word = matches!(tt, TokenTree::Ident(_) | TokenTree::Literal(_));
        if word && prev_word {
            out.push(' ');
        }
        match &tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push_str(&compact_text(&g.stream()));
                out.push_str(close);
            }
            TokenTree::Punct(p) if p.as_char() == ',' => out.push_str(", "),
            other => out.push_str(&other.to_string()),
        }
        prev_word = word;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &str = r#"cell_sdk::export! {
        format = 1;
        cell = "metrics";
        macros = metrics_macros;
        attribute track {
            helpers = [label, bucket(_: int), tag(key: str, value: str?)];
            args { name: str, buckets: int = 8, unit: "s" | "bytes" = "s", exact: bool?, prev: expr? }
        }
    }"#;

    fn schema() -> Schema {
        Schema::parse(DECL).unwrap()
    }

    fn messages(p: &[Problem<SpanRange>]) -> Vec<String> {
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn typed_values_and_defaults() {
        let (args, problems) = schema().attribute_args(
            "track",
            Some("#[M::track(name = \"x\", exact = true, prev = Old::V1)]"),
            quote::quote!(name = "x", exact = true, prev = Old::V1),
        );
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert_eq!(args.str("name").unwrap().value(), "x");
        assert_eq!(args.choice("unit").as_deref(), Some("s"));
        assert_eq!(args.int::<u8>("buckets"), Some(8));
        assert_eq!(args.bool("exact"), Some(true));
        assert!(args.expr("prev").is_some());
        assert!(!args.is_written("unit"));
    }

    #[test]
    fn each_mistake_has_the_shared_words() {
        let (_, problems) = schema().attribute_args(
            "track",
            Some("#[M::track(nme = \"x\", buckets = many, unit = \"ms\", 3, name = 1)]"),
            quote::quote!(nme = "x", buckets = many, unit = "ms", 3, name = 1),
        );
        assert_eq!(
            messages(&problems),
            [
                "CELL0014: `#[M::track]` has no argument `nme`\n  help: did you mean `name`?",
                "CELL0014: invalid value many for `buckets`: expected int",
                "CELL0014: invalid value \"ms\" for `unit`: expected \"s\" | \"bytes\"\n  \
                 help: did you mean \"s\"?",
                "CELL0014: `#[M::track]` takes no positional arguments\n  \
                 help: write `name = value`; arguments: name, buckets, unit, exact, prev",
                "CELL0014: invalid value 1 for `name`: expected str",
            ]
        );
    }

    #[test]
    fn missing_required_and_twice() {
        let (_, problems) =
            schema().attribute_args("track", None, quote::quote!(unit = "s", unit = "bytes"));
        assert_eq!(
            messages(&problems),
            [
                "CELL0014: `unit` is given twice",
                "CELL0014: `#[track]` needs the argument `name`",
            ]
        );
    }

    #[test]
    fn negative_and_suffixed_integers() {
        let (args, problems) =
            schema().attribute_args("track", None, quote::quote!(name = "n", buckets = -3));
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert_eq!(args.int::<i32>("buckets"), Some(-3));
        let (args, problems) =
            schema().attribute_args("track", None, quote::quote!(name = "n", buckets = 1_000u32));
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert_eq!(args.int::<u32>("buckets"), Some(1000));
    }

    #[test]
    fn a_string_the_macro_cannot_read_is_reported() {
        let (_, problems) =
            schema().attribute_args("track", None, quote::quote!(name = concat!("a", "b")));
        assert_eq!(
            messages(&problems),
            ["CELL0014: invalid value concat!(\"a\", \"b\") for `name`: expected a string literal"]
        );
    }

    #[test]
    fn helpers_are_read_against_their_own_schema() {
        let s = schema();
        let attr: syn::Attribute = syn::parse_quote!(#[M::bucket(5)]);
        let (args, problems) = s.helper_args("track", &attr);
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert_eq!(compact_text(&args.positional(0).unwrap().tokens), "5");

        let attr: syn::Attribute = syn::parse_quote!(#[M::label(x)]);
        let (_, problems) = s.helper_args("track", &attr);
        assert_eq!(
            messages(&problems),
            ["CELL0014: `#[M::label]` takes no positional arguments"]
        );

        let attr: syn::Attribute = syn::parse_quote!(#[M::bucket]);
        let (_, problems) = s.helper_args("track", &attr);
        assert_eq!(
            messages(&problems),
            ["CELL0014: `#[M::bucket]` needs a positional argument (int)"]
        );

        let attr: syn::Attribute = syn::parse_quote!(#[M::tag(key = "k", vale = "v")]);
        let (args, problems) = s.helper_args("track", &attr);
        assert_eq!(
            messages(&problems),
            ["CELL0014: `#[M::tag]` has no argument `vale`\n  help: did you mean `value`?"]
        );
        assert_eq!(args.str("key").unwrap().value(), "k");

        let attr: syn::Attribute = syn::parse_quote!(#[M::label = 1]);
        let (_, problems) = s.helper_args("track", &attr);
        assert_eq!(
            messages(&problems),
            ["CELL0014: `#[M::label]` takes its arguments in parentheses, not after `=`"]
        );
    }

    #[test]
    fn the_copy_check_sees_a_stale_copy_and_renders_a_fresh_one() {
        let lib = format!("//! A provider.\n{DECL}\npub fn f() {{}}\n");
        // The rendered file is Rust whose one `const` holds the declaration.
        let file: syn::File = syn::parse_str(&render_copy(&lib).unwrap()).unwrap();
        let Some(syn::Item::Const(c)) = file.items.first() else {
            panic!("no const in the copy");
        };
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(copy),
            ..
        }) = &*c.expr
        else {
            panic!("the const is not a string");
        };
        let copy = copy.value();
        assert!(check_copy(&lib, &copy).is_ok());
        assert!(Schema::parse(&copy).is_ok());
        let changed = lib.replace("buckets: int = 8", "buckets: int = 9");
        let err = check_copy(&changed, &copy).unwrap_err();
        assert!(err.contains("buckets: int = 9"), "{err}");
    }

    #[test]
    fn aliases_come_from_the_invocation() {
        assert_eq!(alias_of("#[Val::schema]").as_deref(), Some("Val"));
        assert_eq!(alias_of("#[ v :: schema ( x ) ]").as_deref(), Some("v"));
        assert_eq!(
            alias_of("#[::validate::schema]").as_deref(),
            Some("validate")
        );
        assert_eq!(alias_of("#[schema]"), None);
    }
}
