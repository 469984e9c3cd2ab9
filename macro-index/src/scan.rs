//! Token-level scanning of a source file: macro calls (`cell_sdk::export! {…}`,
//! `cell_remote!(…)`), glob `use`s, and the inline module each sits in.
//!
//! Why tokens and not `syn::parse_file`: a file with one broken item still lexes, so the calls in
//! the rest of the file are still found ("parsing never fails"). Only unbalanced delimiters or an
//! unterminated literal make a file unreadable, and then the caller reports it.

use std::path::Path;

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};

use crate::model::Span;
use crate::span::{join, span_of};

/// A macro call found in a file.
#[derive(Debug)]
pub(crate) struct MacroCall {
    /// The full path as written (`cell_sdk::export`).
    pub(crate) path: String,
    /// Inline modules around the call.
    pub(crate) module: Vec<String>,
    /// The delimited input.
    pub(crate) group: Group,
    /// From the first path segment to the closing delimiter.
    pub(crate) span: Span,
    /// Under a `#[cfg(…)]` (on the call, its item or a module around it): it may never be
    /// compiled, so what it would report may never be reported.
    pub(crate) gated: bool,
}

/// A glob import (`use a::b::*;`).
#[derive(Debug)]
pub(crate) struct GlobUse {
    /// The path before `*`, without leading `crate`/`self`/`super`/`::`.
    pub(crate) path: Vec<String>,
    /// Inline modules around the `use`.
    pub(crate) module: Vec<String>,
    /// The whole `use` item.
    pub(crate) span: Span,
}

/// A bare (single-segment) name in a file: a use such as `#[hello]`, `#[derive(Hello)]`,
/// `hello!(…)`, `hello(…)` or `Hello::new`, or a definition or explicit import of that name
/// (`fn hello`, `use a::hello;`), which shadows any glob import.
#[derive(Debug, Clone)]
pub(crate) struct BareName {
    /// The identifier.
    pub(crate) name: String,
    /// Inline modules around it.
    pub(crate) module: Vec<String>,
    /// The identifier's span.
    pub(crate) span: Span,
    /// `true` for a definition or explicit import, `false` for a use.
    pub(crate) defines: bool,
}

/// What scanning found in a file.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) calls: Vec<MacroCall>,
    pub(crate) globs: Vec<GlobUse>,
    /// Bare names, collected only in files that have glob imports (for the glob-ambiguity
    /// check); empty otherwise.
    pub(crate) names: Vec<BareName>,
}

/// Keywords after which an identifier is being defined, not used.
const DEFINING: &[&str] = &[
    "fn", "struct", "enum", "union", "trait", "type", "const", "static", "mod",
];

/// Keywords after which an identifier is a local binding or a rename: it shadows the globs like a
/// definition does (`let hello`, `for hello in`, `use a as hello`).
const BINDING: &[&str] = &["let", "mut", "ref", "as", "for"];

/// Keywords after which an identifier is neither a use nor a definition.
const NEITHER: &[&str] = &["impl", "crate", "self", "super"];

/// `true` when the identifier at `tts[i]` sits where a binding or a parameter is written: a
/// parameter or field (`hello: T`, also generics `<hello: Trait>`), a closure parameter
/// (`|hello|`), a pattern element (`Some(hello)`, `(a, hello)`, `S { hello }`, `hello @ ..`,
/// `hello =>`) or a generic parameter (`<hello>`, `<hello, T>`). Over-approximates (an argument
/// `f(a, hello)` counts too): a false definition only silences CELL0005, a missed one reports
/// a name rustc resolves to the local.
fn binds(tts: &[TokenTree], i: usize) -> bool {
    (is_punct(tts.get(i + 1), ':') && !is_path_sep(tts, i + 1))
        || is_punct(tts.get(i + 1), '|')
        || is_punct(tts.get(i + 1), ',')
        || is_punct(tts.get(i + 1), '@')
        || is_punct(tts.get(i + 1), '>')
        || (is_punct(tts.get(i + 1), '=') && is_punct(tts.get(i + 2), '>'))
        || (i + 1 == tts.len())
}

fn is_punct(tt: Option<&TokenTree>, c: char) -> bool {
    matches!(tt, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

/// `true` when `tts[i]` and `tts[i + 1]` are `::`.
fn is_path_sep(tts: &[TokenTree], i: usize) -> bool {
    is_punct(tts.get(i), ':') && is_punct(tts.get(i + 1), ':')
}

/// Records the bare name at `tts[i]` (an identifier), if it is a use or a definition.
fn bare_name(file: &Path, tts: &[TokenTree], i: usize, module: &[String], out: &mut Scan) {
    let TokenTree::Ident(id) = &tts[i] else {
        return;
    };
    let after_sep = i >= 2 && is_path_sep(tts, i - 2);
    if after_sep || (i >= 1 && is_punct(tts.get(i - 1), '.')) {
        return; // A later path segment or a field/method: not a bare name.
    }
    let prev = if i >= 1 {
        match &tts[i - 1] {
            TokenTree::Ident(p) => Some(p.to_string()),
            _ => None,
        }
    } else {
        None
    };
    let defines = match prev.as_deref() {
        Some(p) if DEFINING.contains(&p) || BINDING.contains(&p) => true,
        Some(p) if NEITHER.contains(&p) => return,
        _ if binds(tts, i) => true,
        _ => {
            let next = tts.get(i + 1);
            let used = (is_punct(next, '!') && !is_punct(tts.get(i + 2), '='))
                || is_path_sep(tts, i + 1)
                || matches!(next, Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
            if !used {
                return;
            }
            false
        }
    };
    out.names.push(BareName {
        name: id.to_string(),
        module: module.to_vec(),
        span: span_of(file, id.span()),
        defines,
    });
}

/// `text` with what makes proc-macro2's lexer give up blanked out, every byte kept in place (so
/// spans, lines and offsets stay those of `text`): delimiters that close nothing or are never
/// closed, unterminated literals and comments, and characters that are no Rust token. It is
/// found with rustc's own lexer (`ra-ap-rustc_lexer`), which never fails: an unclosed `[` of a
/// half-typed `#[DB::` no longer swallows the rest of the file.
///
/// Delimiters are matched as rustc's token-tree builder reads them: a closer that matches an
/// opener further down the stack closes it, and the openers above it were never closed; a
/// closer that matches no open delimiter is stray.
pub(crate) fn lexable(text: &str) -> String {
    use ra_ap_rustc_lexer::{FrontmatterAllowed, LiteralKind, TokenKind};
    let mut bytes = text.as_bytes().to_vec();
    // Spaces for every byte but line breaks: the result is still UTF-8 (whole characters are
    // replaced) and every later token keeps its line and offset.
    let mut blank = |range: std::ops::Range<usize>| {
        for b in &mut bytes[range] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    };
    let mut open: Vec<(TokenKind, usize)> = Vec::new();
    let mut pos = 0usize;
    for token in ra_ap_rustc_lexer::tokenize(text, FrontmatterAllowed::No) {
        let len = token.len as usize;
        let range = pos..pos + len;
        pos += len;
        let closes = match token.kind {
            TokenKind::CloseParen => Some(TokenKind::OpenParen),
            TokenKind::CloseBrace => Some(TokenKind::OpenBrace),
            TokenKind::CloseBracket => Some(TokenKind::OpenBracket),
            _ => None,
        };
        let broken = match token.kind {
            TokenKind::OpenParen | TokenKind::OpenBrace | TokenKind::OpenBracket => {
                open.push((token.kind, range.start));
                false
            }
            TokenKind::BlockComment { terminated, .. } => !terminated,
            TokenKind::Literal { kind, .. } => match kind {
                LiteralKind::Char { terminated }
                | LiteralKind::Byte { terminated }
                | LiteralKind::Str { terminated }
                | LiteralKind::ByteStr { terminated }
                | LiteralKind::CStr { terminated } => !terminated,
                LiteralKind::RawStr { n_hashes }
                | LiteralKind::RawByteStr { n_hashes }
                | LiteralKind::RawCStr { n_hashes } => n_hashes.is_none(),
                _ => false,
            },
            TokenKind::Unknown
            | TokenKind::InvalidIdent
            | TokenKind::UnknownPrefix
            | TokenKind::UnknownPrefixLifetime
            | TokenKind::GuardedStrPrefix
            | TokenKind::Frontmatter { .. } => true,
            _ => false,
        };
        if broken {
            blank(range.clone());
        }
        if let Some(opener) = closes {
            match open.iter().rposition(|(kind, _)| *kind == opener) {
                Some(at) => {
                    for (_, start) in open.drain(at..).skip(1) {
                        blank(start..start + 1);
                    }
                }
                None => blank(range),
            }
        }
    }
    for (_, start) in open {
        blank(start..start + 1);
    }
    // Only ASCII bytes were written, each over a whole character or a run of them.
    String::from_utf8(bytes).unwrap_or_default()
}

/// `#[name …]` and `#[derive(A, B)]`: the attribute's bare names are uses. Inside
/// `#[cfg_attr(pred, a, b)]` the attributes `a` and `b` are read the same way (nested
/// `cfg_attr`s too): the predicate is not evaluated (features and targets are unknown here), so
/// every attribute `cfg_attr` may add counts, as rust-analyzer does with an active cfg — a use
/// rustc would resolve once the cfg holds.
fn attribute_names(file: &Path, tts: &[TokenTree], module: &[String], out: &mut Scan) {
    let Some(TokenTree::Ident(first)) = tts.first() else {
        return;
    };
    if is_path_sep(tts, 1) {
        return; // `#[G::hello]`: through an alias, never ambiguous.
    }
    if let Some(inner) = cfg_attr_metas(tts) {
        for meta in inner {
            attribute_names(file, &meta, module, out);
        }
        return;
    }
    let mut push = |id: &proc_macro2::Ident| {
        out.names.push(BareName {
            name: id.to_string(),
            module: module.to_vec(),
            span: span_of(file, id.span()),
            defines: false,
        });
    };
    if first == "derive" {
        if let Some(TokenTree::Group(list)) = tts.get(1) {
            let items: Vec<TokenTree> = list.stream().into_iter().collect();
            for (j, tt) in items.iter().enumerate() {
                if let TokenTree::Ident(id) = tt
                    && !(j >= 2 && is_path_sep(&items, j - 2))
                    && !is_path_sep(&items, j + 1)
                {
                    push(id);
                }
            }
        }
        return;
    }
    push(first);
}

/// For an attribute's tokens `cfg_attr(pred, a, b…)`: the attributes after the predicate, each
/// as its tokens. `None` for any other attribute.
pub(crate) fn cfg_attr_metas(tts: &[TokenTree]) -> Option<Vec<Vec<TokenTree>>> {
    match tts {
        [TokenTree::Ident(id), TokenTree::Group(g), ..]
            if id == "cfg_attr" && g.delimiter() == Delimiter::Parenthesis =>
        {
            let mut metas: Vec<Vec<TokenTree>> = vec![Vec::new()];
            for tt in g.stream() {
                match &tt {
                    TokenTree::Punct(p) if p.as_char() == ',' => metas.push(Vec::new()),
                    _ => {
                        if let Some(last) = metas.last_mut() {
                            last.push(tt);
                        }
                    }
                }
            }
            // The predicate first; a trailing comma leaves an empty last entry.
            Some(
                metas
                    .into_iter()
                    .skip(1)
                    .filter(|m| !m.is_empty())
                    .collect(),
            )
        }
        _ => None,
    }
}

/// `true` for `cfg(…)`, and for a `cfg_attr(…)` that may add one: the item may never be
/// compiled.
fn gates(tts: &[TokenTree]) -> bool {
    match tts.first() {
        Some(TokenTree::Ident(c)) if c == "cfg" => true,
        _ => cfg_attr_metas(tts).is_some_and(|metas| metas.iter().any(|m| gates(m))),
    }
}

/// The names `text` defines itself at its root (`pub struct Error;`, `pub fn get() {}`), not
/// through `use` (a re-export names an item defined elsewhere, which two providers may share).
/// Empty when `text` does not lex (callers then say nothing).
pub(crate) fn root_definitions(text: &str) -> std::collections::BTreeSet<String> {
    let Ok(tokens) = text.parse::<TokenStream>() else {
        return Default::default();
    };
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    tts.windows(2)
        .filter_map(|w| match (&w[0], &w[1]) {
            (TokenTree::Ident(kw), TokenTree::Ident(name)) if DEFINING.iter().any(|d| kw == d) => {
                Some(name.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Every name `text` has at its root, as far as reading it can tell: items it defines
/// ([`root_definitions`]), names its root `use`s bring in (the last segment, or the `as`
/// rename) and `macro_rules!`s. `None` when that cannot be known without expanding or
/// resolving: a root glob `use`, a root macro call other than `export!` (it may define
/// anything), or text that does not lex. Callers then report nothing (never a false problem).
pub(crate) fn root_names(text: &str) -> Option<std::collections::BTreeSet<String>> {
    let tokens: TokenStream = text.parse().ok()?;
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut names = root_definitions(text);
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Ident(kw) if kw == "use" => {
                let end = tts[i..]
                    .iter()
                    .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';'))
                    .map_or(tts.len(), |e| i + e);
                use_tree_names(&tts[i + 1..end], &mut names)?;
                i = end;
            }
            TokenTree::Ident(kw) if kw == "macro_rules" => {
                if let Some(TokenTree::Ident(name)) = tts.get(i + 2) {
                    names.insert(name.to_string());
                }
                i += 3;
            }
            // `path! { … }` / `path!( … );` at the root: only `export!` is known not to
            // define names.
            TokenTree::Punct(p) if p.as_char() == '!' => {
                // `#![attr]` is no call.
                let called = match tts.get(i.wrapping_sub(1)) {
                    Some(TokenTree::Ident(name)) => Some(name.to_string()),
                    _ => None,
                };
                if called.is_some_and(|c| c != "export")
                    && matches!(tts.get(i + 1), Some(TokenTree::Group(_)))
                {
                    return None;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Some(names)
}

/// The names a `use` tree (the tokens between `use` and `;`) brings in; `None` for a glob.
fn use_tree_names(tts: &[TokenTree], out: &mut std::collections::BTreeSet<String>) -> Option<()> {
    for piece in tts.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
        if let Some(at) = piece
            .iter()
            .position(|t| matches!(t, TokenTree::Ident(i) if i == "as"))
        {
            if let Some(TokenTree::Ident(name)) = piece.get(at + 1)
                && name != "_"
            {
                out.insert(name.to_string());
            }
            continue;
        }
        match piece.last() {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                // `a::b::{self, c}`: `self` is `b`.
                let before = piece[..piece.len() - 1].iter().rev().find_map(|t| match t {
                    TokenTree::Ident(i) => Some(i.to_string()),
                    _ => None,
                });
                let mut nested = std::collections::BTreeSet::new();
                use_tree_names(&inner, &mut nested)?;
                for n in nested {
                    match (n.as_str(), &before) {
                        ("self", Some(b)) => {
                            out.insert(b.clone());
                        }
                        _ => {
                            out.insert(n);
                        }
                    }
                }
            }
            Some(TokenTree::Punct(p)) if p.as_char() == '*' => return None,
            Some(TokenTree::Ident(name)) => {
                out.insert(name.to_string().trim_start_matches("r#").to_owned());
            }
            _ => {}
        }
    }
    Some(())
}

/// Lexes `text` and collects calls to macros named in `names` (last segment) plus glob `use`s.
/// A file that does not lex as it is (an unfinished `#[DB::`, an unterminated string) is read
/// through [`lexable`], so one broken spot loses nothing else; the error is only for a file
/// that does not lex even then.
pub(crate) fn scan(file: &Path, text: &str, names: &[&str]) -> Result<Scan, (String, Span)> {
    let tokens: TokenStream = match text.parse() {
        Ok(tokens) => tokens,
        Err(first) => lexable(text).parse().map_err(|_| {
            (
                format!("cannot lex this file: {first}"),
                span_of(file, first.span()),
            )
        })?,
    };
    let mut out = Scan::default();
    walk(file, tokens, names, &mut Vec::new(), false, &mut out);
    if out.globs.is_empty() {
        out.names.clear();
    }
    Ok(out)
}

fn walk(
    file: &Path,
    tokens: TokenStream,
    names: &[&str],
    module: &mut Vec<String>,
    mut gated: bool,
    out: &mut Scan,
) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    // An outer `#[cfg(…)]` seen: the next item (up to its `;` or body) is gated.
    let mut cfg_item = false;
    while i < tts.len() {
        let in_cfg = gated || cfg_item;
        match &tts[i] {
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(g))) =
                    (tts.get(i + 1), tts.get(i + 2))
                    && g.delimiter() == Delimiter::Brace
                {
                    module.push(name.to_string());
                    walk(file, g.stream(), names, module, in_cfg, out);
                    module.pop();
                    cfg_item = false;
                    i += 3;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "macro_rules" => {
                // A macro's body is not code until it is expanded (with `$x` substituted):
                // calls in it are not collected; its names are walked as before.
                if is_punct(tts.get(i + 1), '!')
                    && let (Some(TokenTree::Ident(_)), Some(TokenTree::Group(g))) =
                        (tts.get(i + 2), tts.get(i + 3))
                {
                    walk(file, g.stream(), &[], module, true, out);
                    cfg_item = false;
                    i += 4;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "use" => {
                let start = i;
                let mut end = i + 1;
                while end < tts.len()
                    && !matches!(&tts[end], TokenTree::Punct(p) if p.as_char() == ';')
                {
                    end += 1;
                }
                if end < tts.len() {
                    let item: TokenStream = tts[start..=end].iter().cloned().collect();
                    if let Ok(parsed) = syn::parse2::<syn::ItemUse>(item) {
                        let span = join(
                            &span_of(file, tts[start].span()),
                            &span_of(file, tts[end].span()),
                        );
                        collect_globs(file, &parsed.tree, &mut Vec::new(), module, &span, out);
                    }
                    cfg_item = false; // A gated `use` ends at its `;`.
                    i = end + 1;
                    continue;
                }
            }
            TokenTree::Ident(id) if names.iter().any(|n| id == n) => {
                if let (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g))) =
                    (tts.get(i + 1), tts.get(i + 2))
                    && bang.as_char() == '!'
                    && g.delimiter() != Delimiter::None
                {
                    // Walk back over `a::b::` to the start of the path.
                    let mut first = i;
                    let mut path = vec![id.to_string()];
                    while first >= 3
                        && matches!(&tts[first - 1], TokenTree::Punct(p) if p.as_char() == ':')
                        && matches!(&tts[first - 2], TokenTree::Punct(p) if p.as_char() == ':')
                    {
                        match &tts[first - 3] {
                            TokenTree::Ident(seg) => {
                                path.insert(0, seg.to_string());
                                first -= 3;
                            }
                            _ => break,
                        }
                    }
                    if first >= 2
                        && matches!(&tts[first - 1], TokenTree::Punct(p) if p.as_char() == ':')
                        && matches!(&tts[first - 2], TokenTree::Punct(p) if p.as_char() == ':')
                    {
                        first -= 2; // leading `::`
                    }
                    let span = join(
                        &span_of(file, tts[first].span()),
                        &span_of(file, g.span_close()),
                    );
                    out.calls.push(MacroCall {
                        path: path.join("::"),
                        module: module.clone(),
                        group: g.clone(),
                        span,
                        gated: in_cfg,
                    });
                    cfg_item = false;
                    i += 3;
                    continue;
                }
            }
            TokenTree::Punct(p) if p.as_char() == '#' => {
                // `#[attr]` or `#![attr]`.
                let at = if is_punct(tts.get(i + 1), '!') {
                    i + 2
                } else {
                    i + 1
                };
                if let Some(TokenTree::Group(g)) = tts.get(at)
                    && g.delimiter() == Delimiter::Bracket
                {
                    let attr: Vec<TokenTree> = g.stream().into_iter().collect();
                    if gates(&attr) {
                        // `#![cfg(…)]` gates the rest of its module; `#[cfg(…)]` the next item.
                        if at == i + 2 {
                            gated = true;
                        } else {
                            cfg_item = true;
                        }
                    }
                    // Not walked further: an attribute holds no `cell_remote!` call.
                    attribute_names(file, &attr, module, out);
                    i = at + 1;
                    continue;
                }
            }
            TokenTree::Group(g) => {
                // Function bodies, impl blocks, macro inputs: calls may sit anywhere.
                walk(file, g.stream(), names, module, in_cfg, out);
                if g.delimiter() == Delimiter::Brace {
                    cfg_item = false; // The gated item's body.
                }
            }
            TokenTree::Punct(p) if p.as_char() == ';' => cfg_item = false,
            TokenTree::Ident(_) => bare_name(file, &tts, i, module, out),
            _ => {}
        }
        i += 1;
    }
}

fn collect_globs(
    file: &Path,
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    module: &[String],
    span: &Span,
    out: &mut Scan,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_globs(file, &p.tree, prefix, module, span, out);
            prefix.pop();
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                collect_globs(file, t, prefix, module, span, out);
            }
        }
        syn::UseTree::Glob(_) => {
            let path: Vec<String> = prefix
                .iter()
                .skip_while(|s| matches!(s.as_str(), "crate" | "self" | "super"))
                .cloned()
                .collect();
            out.globs.push(GlobUse {
                path,
                module: module.to_vec(),
                span: span.clone(),
            });
        }
        // An explicit import shadows glob imports of the same name.
        syn::UseTree::Name(n) => out.names.push(BareName {
            name: n.ident.to_string(),
            module: module.to_vec(),
            span: span_of(file, n.ident.span()),
            defines: true,
        }),
        syn::UseTree::Rename(r) => out.names.push(BareName {
            name: r.rename.to_string(),
            module: module.to_vec(),
            span: span_of(file, r.rename.span()),
            defines: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_names_are_definitions_imports_renames_and_macros_unless_a_glob_or_call_hides_them() {
        let text = "#![doc = \"x\"]\ncell_sdk::export! { api = [a]; }\npub use std::collections::BTreeMap as Registry;\n\
                    pub use a::b::{self, c as D, e::{f, _g as _}};\npub fn snapshot() {}\npub mod units {}\n\
                    macro_rules! m { () => {} }\nfn inner() { use x::*; }\n";
        let names: Vec<String> = super::root_names(text).unwrap().into_iter().collect();
        assert_eq!(
            names,
            ["D", "Registry", "b", "f", "inner", "m", "snapshot", "units"]
        );
        assert_eq!(super::root_names("pub use a::*;\npub fn f() {}"), None);
        assert_eq!(
            super::root_names("define_items! { x }\npub fn f() {}"),
            None
        );
        assert_eq!(super::root_names("pub fn f( {"), None);
    }

    use super::*;

    #[test]
    fn finds_calls_in_modules_and_bodies_and_globs() {
        let src = r#"
            use cell_sdk::cell_remote;
            cell_remote!(DB = "celldb");
            mod inner {
                use crate::DB::*;
                fn f() { ::cell_sdk::cell_remote!(X = "x"); }
            }
            broken item here (
            ) ;
            cell_sdk::export! { format = 1; }
        "#;
        let s = scan(Path::new("/a.rs"), src, &["cell_remote", "export"]).unwrap();
        assert_eq!(s.calls.len(), 3);
        assert_eq!(s.calls[0].path, "cell_remote");
        assert_eq!(s.calls[0].span.line, 3);
        assert_eq!(s.calls[1].module, ["inner"]);
        assert_eq!(s.calls[1].path, "cell_sdk::cell_remote");
        assert_eq!(s.calls[2].path, "cell_sdk::export");
        assert_eq!(s.globs.len(), 1);
        assert_eq!(s.globs[0].path, ["DB"]);
        assert_eq!(s.globs[0].module, ["inner"]);
    }

    #[test]
    fn locals_parameters_patterns_and_generics_define_their_names() {
        let src = r#"
            use G::*;
            fn a(hello: u8) {}
            fn b() { let c = |hello| hello(); }
            fn d() { match x { Some(hello) => 1, hello => 2 } }
            fn e<hello: T, hello>() {}
            fn f() { for hello in x {} if let (ref hello, mut hello) = y {} }
            fn g() { hello(); hello!(); hello::x(); }
        "#;
        let s = scan(Path::new("/a.rs"), src, &[]).unwrap();
        let hello: Vec<bool> = s
            .names
            .iter()
            .filter(|n| n.name == "hello")
            .map(|n| n.defines)
            .collect();
        // a; c's parameter then its call; both match arms; both generics; for, ref, mut; the
        // three uses.
        let expect = [
            true, true, false, true, true, true, true, true, true, true, false, false, false,
        ];
        assert_eq!(hello, expect);
    }

    #[test]
    fn calls_under_cfg_are_gated_and_macro_bodies_hold_none() {
        let src = r#"
            macro_rules! m { () => { export! { a } }; }
            #[cfg(test)] mod t { export! { b } }
            #[cfg(feature = "x")] #[allow(dead_code)] pub fn f() { export! { c } }
            #[cfg(test)] export! { d }
            #[cfg(test)] use a::b;
            export! { e }
            mod inner { #![cfg(test)] fn g() {} export! { f } }
        "#;
        let s = scan(Path::new("/a.rs"), src, &["export"]).unwrap();
        let found: Vec<(String, bool)> = s
            .calls
            .iter()
            .map(|c| (c.group.stream().to_string(), c.gated))
            .collect();
        let expect = [
            ("b", true),
            ("c", true),
            ("d", true),
            ("e", false),
            ("f", true),
        ];
        let expect: Vec<(String, bool)> =
            expect.iter().map(|(n, g)| ((*n).to_owned(), *g)).collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn bare_names_are_uses_or_definitions() {
        let src = r#"
            use G::*;
            use a::hello as hi;
            #[hello]
            #[derive(Debug, G::Table, Table)]
            struct X;
            fn insert() { let get = 1; x.query(); query!(); Error::new(); G::persist(); }
            mod inner { #[persist] struct Y; }
        "#;
        let s = scan(Path::new("/a.rs"), src, &[]).unwrap();
        let found: Vec<(String, bool, usize)> = s
            .names
            .iter()
            .map(|n| (n.name.clone(), n.defines, n.module.len()))
            .collect();
        let expect = [
            ("hi", true, 0),
            ("hello", false, 0),
            ("Debug", false, 0),
            ("Table", false, 0),
            ("X", true, 0),
            ("insert", true, 0),
            ("get", true, 0),
            ("query", false, 0),
            ("Error", false, 0),
            ("G", false, 0),
            ("persist", false, 1),
            ("Y", true, 1),
        ];
        let expect: Vec<(String, bool, usize)> = expect
            .iter()
            .map(|(n, d, m)| ((*n).to_owned(), *d, *m))
            .collect();
        assert_eq!(found, expect);
        // Without a glob import nothing is kept.
        assert!(
            scan(Path::new("/a.rs"), "#[hello] struct X;", &[])
                .unwrap()
                .names
                .is_empty()
        );
    }

    #[test]
    fn attributes_inside_cfg_attr_are_uses() {
        let src = r#"
            use G::*;
            #[cfg_attr(feature = "x", hello, derive(Debug, G::Table, Table))]
            #[cfg_attr(all(unix, not(test)), cfg_attr(feature = "y", persist))]
            #[cfg_attr(feature = "x", G::hello)]
            #[cfg_attr(feature = "x")]
            #[cfg_attr(feature = "x", hello,)]
            struct X;
        "#;
        let s = scan(Path::new("/a.rs"), src, &[]).unwrap();
        let found: Vec<(String, bool, u32)> = s
            .names
            .iter()
            .map(|n| (n.name.clone(), n.defines, n.span.col))
            .collect();
        let expect = [
            ("hello", false, 39),
            ("Debug", false, 53),
            ("Table", false, 70),
            ("persist", false, 70),
            ("hello", false, 39),
            ("X", true, 20),
        ];
        let expect: Vec<(String, bool, u32)> = expect
            .iter()
            .map(|(n, d, c)| ((*n).to_owned(), *d, *c))
            .collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn a_cfg_attr_that_may_add_cfg_gates_its_item() {
        let src = r#"
            #[cfg_attr(feature = "x", cfg(test))] export! { a }
            #[cfg_attr(feature = "x", allow(dead_code), cfg_attr(unix, cfg(test)))] export! { b }
            #[cfg_attr(feature = "x", allow(dead_code))] export! { c }
        "#;
        let s = scan(Path::new("/a.rs"), src, &["export"]).unwrap();
        let gated: Vec<bool> = s.calls.iter().map(|c| c.gated).collect();
        assert_eq!(gated, [true, true, false]);
    }

    #[test]
    fn unbalanced_delimiters_are_read_around_not_an_error() {
        let s = scan(
            Path::new("/a.rs"),
            "fn f() { cell_remote!(A = \"b\") ",
            &["cell_remote"],
        )
        .unwrap();
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.calls[0].span.col, 10);
    }

    #[test]
    fn an_unfinished_attribute_does_not_hide_the_rest_of_the_file() {
        let src = "cell_remote!(DB = \"kvstore\");\n#[DB::\nstruct A { id: u64 }\n\
                   #[DB::persit]\nstruct B;\n";
        assert!(src.parse::<TokenStream>().is_err());
        let fixed = lexable(src);
        assert_eq!(fixed.len(), src.len());
        assert_eq!(fixed.lines().count(), src.lines().count());
        assert!(fixed.contains("#[DB::persit]"), "{fixed}");
        let s = scan(Path::new("/a.rs"), src, &["cell_remote"]).unwrap();
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.calls[0].span.line, 1);
    }

    #[test]
    fn stray_and_unclosed_delimiters_and_literals_are_blanked_in_place() {
        for (src, kept) in [
            (
                "fn f() { g(1; }\nmod m { cell_remote!(A = \"a\"); }",
                "mod m {",
            ),
            ("fn f() { ] }\ncell_remote!(A = \"a\");", "cell_remote!(A"),
            (
                "cell_remote!(A = \"a\");\nconst S: &str = \"open",
                "cell_remote!(A",
            ),
            (
                "cell_remote!(A = \"a\");\n/* never closed",
                "cell_remote!(A",
            ),
            (
                "cell_remote!(A = \"é\");\nfn f() { x[é }",
                "cell_remote!(A = \"é\")",
            ),
        ] {
            let fixed = lexable(src);
            assert_eq!(fixed.len(), src.len(), "{src}");
            assert!(fixed.parse::<TokenStream>().is_ok(), "{src} -> {fixed}");
            assert!(fixed.contains(kept), "{src} -> {fixed}");
        }
    }
}
