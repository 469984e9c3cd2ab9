//! The only module that touches `ra_ap_syntax` (rust-analyzer's error-resilient parser, pinned
//! `=0.0.349`): it turns a buffer into the few syntactic facts the server needs, as plain data
//! with byte ranges. Half-typed code (`#[DB::`, `#[DB::persist(rep`) still parses into an `ATTR`
//! node; inside it, the text before the cursor is read lexically, which is what makes completion
//! on unfinished input work.

use cell_export::args::HelperPosition;
use ra_ap_syntax::{
    Edition, GreenNode, Parse, SourceFile, SyntaxKind, SyntaxNode, TextRange, TextSize,
};
/// A buffer's syntax tree kept between edits (`Send`, cheap to clone), reparsed by item: an
/// edit reparses only the top-level items around it (the parser is stateless between top-level
/// items, so a window that starts at an item and ends after a complete item parses alone as it
/// does in the file). A window too large for that to pay (an edit deep in a huge function) goes
/// to rust-analyzer's own `reparse` (one token or one block) while its `Parse` is at hand.
#[derive(Clone)]
pub(crate) struct Tree {
    green: GreenNode,
    /// rust-analyzer's parse, while `green` came from it (its incremental reparse needs one; it
    /// cannot be rebuilt from a green tree).
    parse: Option<Parse<SourceFile>>,
    /// How many bytes of text the parser read to make this tree from the previous one (the
    /// whole text for a full parse): what "the reparse stays local" means, measurably.
    relexed: usize,
}

/// How many times a window that does not parse alone is widened by one item.
const WIDENINGS: usize = 3;

/// Above this window size, prefer rust-analyzer's block reparse when possible.
const WINDOW_LIMIT: usize = 16 * 1024;

/// `CELL_LSP_REPARSE=rust-analyzer` turns reparsing by item off (rust-analyzer's incremental
/// reparse only, falling back to full parses): the benchmark compares both in one run.
fn by_item() -> bool {
    static BY_ITEM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BY_ITEM
        .get_or_init(|| std::env::var("CELL_LSP_REPARSE").map_or(true, |v| v != "rust-analyzer"))
}

impl Tree {
    /// A full parse of `text`.
    pub(crate) fn new(text: &str) -> Tree {
        Tree::from_parse(SourceFile::parse(text, Edition::CURRENT))
    }

    fn from_parse(parse: Parse<SourceFile>) -> Tree {
        let green = parse.syntax_node().green().to_owned();
        Tree {
            relexed: usize::from(green.text_len()),
            green,
            parse: Some(parse),
        }
    }

    /// Bytes the parser read to make this tree (see the field).
    pub(crate) fn relexed(&self) -> usize {
        self.relexed
    }

    /// The tree after replacing bytes `start..end` of the old text by `insert`; `new_text` is
    /// the text after the edit (for a full reparse, without rebuilding it from the tree).
    pub(crate) fn edit(&self, start: usize, end: usize, insert: &str, new_text: &str) -> Tree {
        let len = usize::from(self.green.text_len());
        let (start, end) = (start.min(len), end.min(len));
        if start > end {
            return self.clone();
        }
        if !by_item() {
            return match (
                &self.parse,
                TextSize::try_from(start),
                TextSize::try_from(end),
            ) {
                (Some(parse), Ok(s), Ok(e)) => {
                    Tree::from_parse(parse.reparse(TextRange::new(s, e), insert, Edition::CURRENT))
                }
                _ => Tree::new(new_text),
            };
        }
        // An edit that breaks its item (`use` → `xuse`) often parses cleanly together with the
        // next item or two: widen the window a few times before parsing everything. First from
        // the edit itself when only blank space lies between it and a complete item (a
        // keystroke in a run of blank lines: the run before it is kept, never re-read).
        for extra in 0..WIDENINGS {
            if let Some(tree) = self.edit_after_blank(start, end, insert, extra) {
                return tree;
            }
        }
        for extra in 0..WIDENINGS {
            let Some(window) = Window::around(&self.green, start, end, extra) else {
                break;
            };
            if window.range.1 - window.range.0 > WINDOW_LIMIT {
                if let Some(parse) = &self.parse
                    && let (Ok(s), Ok(e)) = (TextSize::try_from(start), TextSize::try_from(end))
                {
                    return Tree::from_parse(parse.reparse(
                        TextRange::new(s, e),
                        insert,
                        Edition::CURRENT,
                    ));
                }
                break;
            }
            if let Some(green) = window.reparse(&self.green, start, end, insert) {
                return Tree {
                    green,
                    parse: None,
                    relexed: window.range.1 - window.range.0 - (end - start) + insert.len(),
                };
            }
            if !window.bounded {
                break;
            }
        }
        Tree::new(new_text)
    }
}

impl Tree {
    /// The edit reparsed from a window that starts inside (or right after) a top-level run of
    /// whitespace which follows a complete item: the run's part before the window is kept as it
    /// is (one whitespace token again when the window's text starts with whitespace), so a
    /// keystroke in 20,000 blank lines reads only from the keystroke to the next item(s).
    /// `None` when the edit is not in such a place or the window does not parse alone.
    fn edit_after_blank(
        &self,
        start: usize,
        end: usize,
        insert: &str,
        extra: usize,
    ) -> Option<Tree> {
        use SyntaxKind::{COMMENT, WHITESPACE};
        let children = top_level(&self.green);
        // The whitespace run `w` and where the window starts: inside it (split at the edit),
        // or at the child right after it.
        let c = children
            .iter()
            .position(|(r, _, _)| r.0 <= start && start < r.1)?;
        let (w, window_start) = if children[c].2 == WHITESPACE && children[c].0.0 < start {
            (c, start)
        } else if c > 0 && children[c - 1].2 == WHITESPACE {
            (c - 1, children[c].0.0)
        } else {
            return None;
        };
        // Right before the run: a complete item (the parser starts afresh after it), or the
        // file's start. Not a comment: one that the window's first item would take as its own
        // (no blank line left between them) would be outside the window.
        if w > 0 && !(children[w - 1].1 && complete_item(&self.green, &children, w - 1)) {
            return None;
        }
        let last = (w + 1..children.len())
            .filter(|&i| children[i].1 && children[i].0.1 > end)
            .nth(extra)?;
        let clean_after = children[last + 1..]
            .iter()
            .find(|(_, _, kind)| !matches!(kind, WHITESPACE | COMMENT))
            .is_none_or(|(_, item, _)| *item);
        let window_end = children[last].0.1;
        if !clean_after || end > window_end || window_end - window_start > WINDOW_LIMIT {
            return None;
        }
        // The old text of the run and the window (not of the whole buffer).
        let mut old = String::with_capacity(window_end - children[w].0.0);
        for child in self.green.children().skip(w).take(last + 1 - w) {
            match child {
                ra_ap_syntax::NodeOrToken::Node(n) => old.push_str(&n.to_string()),
                ra_ap_syntax::NodeOrToken::Token(t) => old.push_str(t.text()),
            }
        }
        let base = children[w].0.0;
        let mut text = old.get(window_start - base..)?.to_owned();
        text.replace_range(start - window_start..end - window_start, insert);
        if text.starts_with("#!") {
            return None;
        }
        let parsed = SourceFile::parse(&text, Edition::CURRENT).syntax_node();
        if !parses_alone(&parsed, true) {
            return None;
        }
        // The run's kept part, merged with the window's leading whitespace (one token, as the
        // lexer makes it).
        let mut kept = old.get(..window_start - base)?.to_owned();
        let mut new_children: Vec<_> = parsed.green().children().map(|c| c.to_owned()).collect();
        if let Some(ra_ap_syntax::NodeOrToken::Token(t)) = new_children.first()
            && SyntaxKind::from(t.kind().0) == WHITESPACE
        {
            kept.push_str(t.text());
            new_children.remove(0);
        }
        let ws = rowan::GreenToken::new(rowan::SyntaxKind(WHITESPACE as u16), &kept);
        let green = self.green.splice_children(
            w..=last,
            std::iter::once(rowan::NodeOrToken::Token(ws)).chain(new_children),
        );
        (usize::from(green.text_len())
            == usize::from(self.green.text_len()) - (end - start) + insert.len())
        .then_some(Tree {
            green,
            parse: None,
            relexed: text.len(),
        })
    }
}

/// (byte range, is an item, kind) of each top-level child.
fn top_level(root: &GreenNode) -> Vec<((usize, usize), bool, SyntaxKind)> {
    let mut offset = 0;
    root.children()
        .map(|c| {
            let len = usize::from(c.text_len());
            let range = (offset, offset + len);
            offset += len;
            let kind = SyntaxKind::from(c.kind().0);
            (range, c.as_node().is_some() && is_item_kind(kind), kind)
        })
        .collect()
}

/// Whether top-level child `i` is an item closed by `}` or `;` (not a `const`/`static` whose
/// `}` may be followed by more of its expression).
fn complete_item(
    root: &GreenNode,
    children: &[((usize, usize), bool, SyntaxKind)],
    i: usize,
) -> bool {
    let mut node = root.children().nth(i).and_then(|c| c.into_node());
    let mut last = None;
    while let Some(n) = node {
        match n.children().last() {
            Some(ra_ap_syntax::NodeOrToken::Node(child)) => node = Some(child),
            Some(ra_ap_syntax::NodeOrToken::Token(t)) => {
                last = Some(SyntaxKind::from(t.kind().0));
                node = None;
            }
            None => node = None,
        }
    }
    match last {
        Some(SyntaxKind::SEMICOLON) => true,
        Some(SyntaxKind::R_CURLY) => {
            !matches!(children[i].2, SyntaxKind::CONST | SyntaxKind::STATIC)
        }
        _ => false,
    }
}

/// The checks a window's parse must pass to stand for the same text in the file (see
/// [`Window::reparse`]): not at the file's start, it holds no shebang or inner attribute;
/// `bounded`, it ends with a complete item and leaves nothing open.
fn parses_alone(parsed: &SyntaxNode, bounded: bool) -> bool {
    if parsed.children_with_tokens().any(|c| {
        matches!(c.kind(), SyntaxKind::SHEBANG | SyntaxKind::ATTR)
            || (c.kind() == SyntaxKind::ERROR
                && c.as_node()
                    .is_some_and(|n| n.children().any(|n| n.kind() == SyntaxKind::ATTR)))
    }) {
        return false;
    }
    if !bounded {
        return true;
    }
    let Some(last) = parsed.children_with_tokens().last() else {
        return false;
    };
    let Some(node) = last.as_node() else {
        return false;
    };
    let Some(closing) = node.last_token().map(|t| t.kind()) else {
        return false;
    };
    is_item_kind(node.kind())
        && matches!(closing, SyntaxKind::R_CURLY | SyntaxKind::SEMICOLON)
        && !(closing == SyntaxKind::R_CURLY
            && matches!(node.kind(), SyntaxKind::CONST | SyntaxKind::STATIC))
        && closed(parsed)
}

/// An item the top-level parser starts and ends by itself (not an error node, nor an attribute
/// left over by error recovery, whose shape depends on what follows it).
fn is_item_kind(kind: SyntaxKind) -> bool {
    use SyntaxKind::*;
    matches!(
        kind,
        FN | STRUCT
            | ENUM
            | UNION
            | IMPL
            | TRAIT
            | MODULE
            | CONST
            | STATIC
            | TYPE_ALIAS
            | USE
            | EXTERN_CRATE
            | EXTERN_BLOCK
            | MACRO_RULES
            | MACRO_DEF
            | MACRO_CALL
    )
}

/// The top-level children around an edit: from the last item starting before it to the first
/// item ending after it (or the file's ends). Computed on the green tree (lengths only, no
/// cursor allocation: a 3,000-line file has a thousand top-level children).
struct Window {
    /// Child indices, inclusive.
    first: usize,
    last: usize,
    /// Byte range of the window in the old text.
    range: (usize, usize),
    /// `true` when the window ends before the end of the file (so what it parses to must end
    /// with a complete item).
    bounded: bool,
    /// `true` when what follows the window is trivia or an item (not a stray token or an
    /// error, which an item missing its `;` would take in the file but cannot alone).
    clean_after: bool,
}

impl Window {
    /// `extra`: how many more items to take after the first one ending after the edit.
    fn around(root: &GreenNode, start: usize, end: usize, extra: usize) -> Option<Window> {
        // (byte range, is an item, kind) of each child.
        let mut offset = 0;
        let children: Vec<((usize, usize), bool, SyntaxKind)> = root
            .children()
            .map(|c| {
                let len = usize::from(c.text_len());
                let range = (offset, offset + len);
                offset += len;
                let kind = SyntaxKind::from(c.kind().0);
                (range, c.as_node().is_some() && is_item_kind(kind), kind)
            })
            .collect();
        if children.is_empty() {
            return None;
        }
        let first = (0..children.len())
            .rev()
            .find(|&i| children[i].1 && children[i].0.0 < start)
            .unwrap_or(0);
        let last = (first..children.len())
            .filter(|&i| children[i].1 && children[i].0.1 > end)
            .nth(extra);
        let (last, bounded) = match last {
            Some(i) => (i, true),
            None => (children.len() - 1, false),
        };
        // The element before the window that is not trivia must be a complete item (closed by
        // `}` or `;`): anything else — an error node such as a dangling `cell_sdk::` — may take
        // the window's first token once the edit changed it (`fn` → `f`).
        let complete = |i: usize| {
            let mut node = root.children().nth(i).and_then(|c| c.into_node());
            let mut last = None;
            while let Some(n) = node {
                match n.children().last() {
                    Some(ra_ap_syntax::NodeOrToken::Node(child)) => node = Some(child),
                    Some(ra_ap_syntax::NodeOrToken::Token(t)) => {
                        last = Some(SyntaxKind::from(t.kind().0));
                        node = None;
                    }
                    None => node = None,
                }
            }
            // A `}` ending a `const`/`static` initializer (its `;` missing) is an expression's
            // end: `{1}` followed by `/ c` or `as …` continues it in the file.
            match last {
                Some(SyntaxKind::SEMICOLON) => true,
                Some(SyntaxKind::R_CURLY) => {
                    !matches!(children[i].2, SyntaxKind::CONST | SyntaxKind::STATIC)
                }
                _ => false,
            }
        };
        let clean_before = first == 0
            || (0..first)
                .rev()
                .find(|&i| !matches!(children[i].2, SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
                .is_none_or(|i| children[i].1 && complete(i));
        if !clean_before {
            return None;
        }
        // The next element that is not trivia must be an item (or the end of the file).
        let clean_after = children[last + 1..]
            .iter()
            .find(|(_, _, kind)| !matches!(kind, SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
            .is_none_or(|(_, item, _)| *item);
        Some(Window {
            first,
            last,
            range: (
                if first == 0 { 0 } else { children[first].0.0 },
                if bounded { children[last].0.1 } else { offset },
            ),
            bounded,
            clean_after,
        })
    }

    /// The root's green tree with the window reparsed, or `None` when the window does not parse
    /// alone as it would in the file.
    fn reparse(
        &self,
        root: &GreenNode,
        start: usize,
        end: usize,
        insert: &str,
    ) -> Option<GreenNode> {
        let (ws, we) = self.range;
        if start < ws || end > we || (self.bounded && !self.clean_after) {
            return None;
        }
        let mut text = String::with_capacity(we - ws + insert.len());
        for child in root
            .children()
            .skip(self.first)
            .take(self.last + 1 - self.first)
        {
            match child {
                ra_ap_syntax::NodeOrToken::Node(n) => text.push_str(&n.to_string()),
                ra_ap_syntax::NodeOrToken::Token(t) => text.push_str(t.text()),
            }
        }
        if text.len() != we - ws {
            return None;
        }
        text.replace_range(start - ws..end - ws, insert);
        // Only the file's first bytes may be a shebang or take inner attributes (`#!x`, `#![x]`,
        // also after leading whitespace or comments): a window elsewhere that parses to one
        // would be an error in the file.
        if ws > 0 && text.starts_with("#!") {
            return None;
        }
        let parsed = SourceFile::parse(&text, Edition::CURRENT).syntax_node();
        if ws > 0
            && parsed.children_with_tokens().any(|c| {
                matches!(c.kind(), SyntaxKind::SHEBANG | SyntaxKind::ATTR)
                    || (c.kind() == SyntaxKind::ERROR
                        && c.as_node()
                            .is_some_and(|n| n.children().any(|n| n.kind() == SyntaxKind::ATTR)))
            })
        {
            return None;
        }
        if self.bounded {
            // The window must end with a complete item (closed by `}` or `;`), else the item
            // would run on into the rest of the file there (an unclosed brace or string).
            let last = parsed.children_with_tokens().last()?;
            let node = last.as_node()?;
            let closing = node.last_token()?.kind();
            // A `const`/`static` ending in `}` (its `;` missing) is an unfinished expression
            // that what follows the window could continue.
            if !is_item_kind(node.kind())
                || !matches!(closing, SyntaxKind::R_CURLY | SyntaxKind::SEMICOLON)
                || (closing == SyntaxKind::R_CURLY
                    && matches!(node.kind(), SyntaxKind::CONST | SyntaxKind::STATIC))
            {
                return None;
            }
            // Nothing may be left open at the window's end: an unclosed `{` or `(`, or any
            // token tree without its closing delimiter, would run on into the rest of the file.
            if !closed(&parsed) {
                return None;
            }
        }
        let green = root.splice_children(
            self.first..=self.last,
            parsed.green().children().map(|c| c.to_owned()),
        );
        (usize::from(green.text_len())
            == usize::from(root.text_len()) - (end - start) + insert.len())
        .then_some(green)
    }
}

/// `true` when nothing in `root` is left open: every node that opens with `{`, `(` or `[`
/// ends with the matching delimiter as its own last child (an opener whose closer the parser
/// took as an error token inside, as in `{ #[}`, counts as open), and the `{`/`(` tokens
/// balance overall.
fn closed(root: &SyntaxNode) -> bool {
    use SyntaxKind::*;
    let (mut curly, mut paren) = (0usize, 0usize);
    for token in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
    {
        match token.kind() {
            L_CURLY => curly += 1,
            R_CURLY => curly = curly.saturating_sub(1),
            L_PAREN => paren += 1,
            R_PAREN => paren = paren.saturating_sub(1),
            _ => {}
        }
    }
    let kind =
        |e: Option<ra_ap_syntax::SyntaxElement>| e.and_then(|e| e.into_token()).map(|t| t.kind());
    curly == 0
        && paren == 0
        && root.descendants().all(|n| {
            let closer = match kind(n.first_child_or_token()) {
                Some(L_CURLY) => R_CURLY,
                Some(L_PAREN) => R_PAREN,
                Some(L_BRACK) => R_BRACK,
                _ => return true,
            };
            n.children_with_tokens().count() > 1 && kind(n.last_child_or_token()) == Some(closer)
        })
}

/// A syntax error: rust-analyzer's message and the byte range it points at.
pub(crate) type SyntaxError = (String, (usize, usize));

/// A parsed buffer.
pub(crate) struct Parsed {
    root: SyntaxNode,
    text: String,
    /// The trees that answer for the text after an attribute left open, computed when first
    /// needed (see [`Parsed::segments`]).
    segments: std::cell::OnceCell<Vec<Segment>>,
}

/// A tree that answers for the text from `start` on (to the next segment's start).
struct Segment {
    start: usize,
    root: SyntaxNode,
}

/// At most this many trees per buffer: past that many open attributes, the last tree answers
/// for the rest of the buffer.
const MAX_SEGMENTS: usize = 16;

/// An attribute written `#[Alias::name …]` (or `#[Alias::` half-typed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrUse {
    /// `DB`.
    pub(crate) alias: String,
    /// `persist` (empty when not typed yet).
    pub(crate) name: String,
    /// Byte range of `name` (empty range right after `::` when not typed).
    pub(crate) name_range: (usize, usize),
    /// Byte range of the whole attribute.
    pub(crate) range: (usize, usize),
    /// Arguments `name = value` (or positional) inside `( … )`, if any.
    pub(crate) args: Option<Vec<AttrArg>>,
    /// Where a helper here would sit (a field, a parameter…), when that is certain, and the
    /// attributes `(alias, name)` of the item whose parent macro would consume it (empty
    /// directly on an item).
    pub(crate) parent_attrs: Option<Vec<(String, String)>>,
    /// The position `parent_attrs` belongs to.
    pub(crate) position: Option<HelperPosition>,
    /// Byte range of `alias`.
    pub(crate) alias_range: (usize, usize),
    /// `false` for an attribute left open (`#[DB::persist(` half-typed, or an unterminated
    /// string in it): its arguments are not all written yet, so they are not checked.
    pub(crate) closed: bool,
}

/// One argument inside an attribute's parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrArg {
    /// `replicate` in `replicate = "raft"`; `None` for a positional argument.
    pub(crate) name: Option<String>,
    /// The value as written (`"raft"`, `true`, `1..=100`), trimmed.
    pub(crate) value: String,
    /// Byte range of the name (or of the value for a positional argument).
    pub(crate) name_range: (usize, usize),
    /// Byte range of the value.
    pub(crate) value_range: (usize, usize),
}

/// A derive written `#[derive(…, Alias::Name, …)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeriveUse {
    /// `DB`.
    pub(crate) alias: String,
    /// `Table`.
    pub(crate) name: String,
    /// Byte range of `name`.
    pub(crate) name_range: (usize, usize),
}

/// A `cell_remote!(Alias = "cell")` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteCall {
    pub(crate) alias: String,
    pub(crate) cell: String,
    pub(crate) version: Option<String>,
    /// Byte range of the whole call.
    pub(crate) range: (usize, usize),
    /// Byte range of the string literal's contents.
    pub(crate) literal: (usize, usize),
    /// Not at the file's top level (in a module, a function body): its alias is not what the
    /// rest of the file sees.
    pub(crate) nested: bool,
}

/// What the cursor is in, for completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CursorContext {
    /// `#[Alias::na|`: macro names; `on_field` carries the struct's attributes.
    AttrName {
        alias: String,
        prefix: String,
        replace: (usize, usize),
        parent_attrs: Option<Vec<(String, String)>>,
    },
    /// `#[Alias::name(arg = "va|` or `#[Alias::name(ar|`.
    AttrArgs {
        alias: String,
        name: String,
        /// Argument names already written.
        written: Vec<String>,
        /// `Some(arg)` when the cursor is after `arg =`.
        value_of: Option<String>,
        prefix: String,
        replace: (usize, usize),
    },
    /// `#[` on a field: helper attributes of the struct's macros.
    FieldAttrStart {
        prefix: String,
        replace: (usize, usize),
        parent_attrs: Vec<(String, String)>,
    },
    /// `#[derive(Alias::Na|`: the provider's derive macros.
    DeriveName {
        alias: String,
        prefix: String,
        replace: (usize, usize),
    },
    /// `cell_remote!(X = "ce|`.
    RemoteCell {
        prefix: String,
        replace: (usize, usize),
    },
    /// `Alias::na|` in item or expression position: function-like macros and API items.
    AliasPath {
        alias: String,
        prefix: String,
        replace: (usize, usize),
    },
}

impl Parsed {
    /// Parses `text` (never fails: errors become error nodes).
    pub(crate) fn new(text: &str) -> Parsed {
        let parse = SourceFile::parse(text, Edition::CURRENT);
        Parsed::from_root(parse.syntax_node(), text)
    }

    fn from_root(root: SyntaxNode, text: &str) -> Parsed {
        Parsed {
            root,
            text: text.to_owned(),
            segments: std::cell::OnceCell::new(),
        }
    }

    /// [`Parsed::new`] plus the syntax errors rust-analyzer's parser and validator found, each
    /// with its message and byte range (for `--check`; the editor leaves them to
    /// rust-analyzer, which shows the same errors).
    pub(crate) fn with_errors(text: &str) -> (Parsed, Vec<SyntaxError>) {
        let parse = SourceFile::parse(text, Edition::CURRENT);
        let errors = parse
            .errors()
            .into_iter()
            .map(|e| {
                let r = e.range();
                (
                    e.to_string(),
                    (usize::from(r.start()), usize::from(r.end())),
                )
            })
            .collect();
        (Parsed::from_root(parse.syntax_node(), text), errors)
    }

    /// A kept tree and its text; parses afresh if they disagree (never trust a tree whose length
    /// is not the text's: every range below indexes the text).
    pub(crate) fn from_tree(tree: &Tree, text: &str) -> Parsed {
        let root = SyntaxNode::new_root(tree.green.clone());
        if usize::from(root.text_range().end()) != text.len() {
            return Parsed::new(text);
        }
        Parsed::from_root(root, text)
    }

    /// The parsed text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Every `cell_remote!(…)` call that reads as `Alias = "cell[@version]"`.
    pub(crate) fn remote_calls(&self) -> Vec<RemoteCall> {
        let mut out = Vec::new();
        // Find the few candidates by text, then confirm each in the tree: walking every node of
        // a large file on each request would cost more than the request itself.
        let mut calls: Vec<SyntaxNode> = Vec::new();
        for (at, _) in self.text.match_indices("cell_remote") {
            let Ok(offset) = TextSize::try_from(at) else {
                continue;
            };
            let Some(token) = self.root_at(at).token_at_offset(offset).right_biased() else {
                continue;
            };
            if let Some(call) = token
                .parent_ancestors()
                .find(|n| n.kind() == SyntaxKind::MACRO_CALL)
                && !calls.contains(&call)
            {
                calls.push(call);
            }
        }
        for node in calls {
            let Some(path) = node.children().find(|c| c.kind() == SyntaxKind::PATH) else {
                continue;
            };
            let path_text = path.text().to_string();
            if path_text.rsplit("::").next().map(str::trim) != Some("cell_remote") {
                continue;
            }
            let Some(tt) = node.children().find(|c| c.kind() == SyntaxKind::TOKEN_TREE) else {
                continue;
            };
            let range = node.text_range();
            let tt_range = tt.text_range();
            let inner = &self.text[usize::from(tt_range.start())..usize::from(tt_range.end())];
            if let Some(call) = parse_remote(inner, usize::from(tt_range.start())) {
                out.push(RemoteCall {
                    range: (usize::from(range.start()), usize::from(range.end())),
                    nested: node
                        .parent()
                        .is_none_or(|p| p.kind() != SyntaxKind::SOURCE_FILE),
                    ..call
                });
            }
        }
        out
    }

    /// `Alias::name` in code (not in an attribute) with the cursor on `name`: the alias, the
    /// name and its byte range. Only a path of exactly two segments there (`DB::insert`,
    /// `DB::Db::open`'s `Db`), as [`CursorContext::AliasPath`] completes.
    pub(crate) fn alias_path_at(&self, offset: usize) -> Option<(String, String, (usize, usize))> {
        let at = TextSize::try_from(offset.min(self.text.len())).ok()?;
        let token = self
            .root_at(offset)
            .token_at_offset(at)
            .find(|t| t.kind() == SyntaxKind::IDENT)?;
        if token
            .parent_ancestors()
            .any(|n| n.kind() == SyntaxKind::ATTR)
        {
            return None;
        }
        let segment = token
            .parent()
            .filter(|n| n.kind() == SyntaxKind::NAME_REF)?
            .parent()
            .filter(|n| n.kind() == SyntaxKind::PATH_SEGMENT)?;
        let path = segment.parent().filter(|n| n.kind() == SyntaxKind::PATH)?;
        let qualifier = path.children().find(|c| c.kind() == SyntaxKind::PATH)?;
        if qualifier.children().any(|c| c.kind() == SyntaxKind::PATH) {
            return None;
        }
        let alias = qualifier.text().to_string();
        if !is_ident(&alias) {
            return None;
        }
        let r = token.text_range();
        Some((
            alias,
            token.text().to_owned(),
            (usize::from(r.start()), usize::from(r.end())),
        ))
    }

    /// Every attribute whose path has at least two segments (`#[A::b …]`), also those a
    /// `cfg_attr` adds (see [`Parsed::metas`]).
    pub(crate) fn attr_uses(&self) -> Vec<AttrUse> {
        self.attrs()
            .flat_map(|attr| {
                self.metas(&attr)
                    .into_iter()
                    .filter_map(move |m| self.attr_use(&attr, m))
            })
            .collect()
    }

    /// The attribute under byte `offset`, if it reads as `#[A::b …]` (or as `A::b …` inside a
    /// `cfg_attr`).
    pub(crate) fn attr_use_at(&self, offset: usize) -> Option<AttrUse> {
        let attr = self.attr_at(offset)?;
        let meta = meta_at(&self.metas(&attr), offset)?;
        self.attr_use(&attr, meta)
    }

    /// Every `Alias::Name` inside `#[derive(…)]` attributes (also one a `cfg_attr` adds).
    pub(crate) fn derive_uses(&self) -> Vec<DeriveUse> {
        self.attrs()
            .flat_map(|attr| self.metas(&attr))
            .flat_map(|m| self.derives_in(m))
            .collect()
    }

    /// The `Alias::Name` derive whose name is under byte `offset`.
    pub(crate) fn derive_use_at(&self, offset: usize) -> Option<DeriveUse> {
        let attr = self.attr_at(offset)?;
        self.metas(&attr)
            .into_iter()
            .flat_map(|m| self.derives_in(m))
            .find(|d| d.name_range.0 <= offset && offset <= d.name_range.1)
    }

    /// The `ATTR` node around byte `offset`.
    fn attr_at(&self, offset: usize) -> Option<SyntaxNode> {
        let at = TextSize::try_from(offset.min(self.text.len())).ok()?;
        let token = self.root_at(offset).token_at_offset(at).right_biased()?;
        token
            .parent_ancestors()
            .find(|n| n.kind() == SyntaxKind::ATTR)
    }

    /// The attributes an `ATTR` node stands for: what is written inside `#[…]` (to the end of
    /// the node, closing `]` included, so half-typed input reads as typed), or, for
    /// `#[cfg_attr(pred, a, b)]`, each attribute after the predicate (nested `cfg_attr`s
    /// too, an unclosed list running to the node's end). The predicate is not evaluated: the
    /// features and targets a build enables are unknown here, so every attribute `cfg_attr`
    /// may add is treated as active — as rust-analyzer does for an enabled cfg — and gets the
    /// same completion, hover and checks as one written alone.
    fn metas(&self, attr: &SyntaxNode) -> Vec<Meta> {
        let (start, end, _) = self.extent(attr);
        if !self.text[start..end].starts_with("#[") {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.push_metas(start + 2, start + 2, end, &mut out);
        out
    }

    /// The attribute written at `start..end` (its slot beginning at `raw_start`), or, when it
    /// is a `cfg_attr`, the attributes it adds.
    fn push_metas(&self, raw_start: usize, start: usize, end: usize, out: &mut Vec<Meta>) {
        let text = &self.text[start..end];
        let (head, rest) = split_path(text);
        let Some(after) = rest
            .trim_start()
            .strip_prefix('(')
            .filter(|_| head.trim() == "cfg_attr")
        else {
            out.push(Meta {
                start,
                end,
                raw_start,
            });
            return;
        };
        let open = end - after.len();
        let body = match matching_paren(after) {
            Some(close) => &after[..close],
            None => after.strip_suffix(']').unwrap_or(after),
        };
        // The predicate first.
        for (s, e) in split_commas(body).into_iter().skip(1) {
            let seg = &body[s..e];
            let lead = seg.len() - seg.trim_start().len();
            self.push_metas(open + s, open + s + lead, open + e, out);
        }
    }

    fn derives_in(&self, meta: Meta) -> Vec<DeriveUse> {
        let start = meta.start;
        let inner = &self.text[meta.start..meta.end];
        let (head, rest) = split_path(inner);
        let Some(after) = rest.trim_start().strip_prefix('(') else {
            return Vec::new();
        };
        if head.trim() != "derive" {
            return Vec::new();
        }
        let open = start + inner.len() - after.len();
        let body = after.rfind(')').map_or(after, |i| &after[..i]);
        split_args(body, open)
            .into_iter()
            .filter(|a| a.name.is_none())
            .filter_map(|a| {
                let (alias, name) = a.value.split_once("::")?;
                let (alias, name) = (alias.trim(), name.trim());
                if !is_ident(alias) || !is_ident(name) {
                    return None;
                }
                let name_start = a.value_range.1 - name.len();
                Some(DeriveUse {
                    alias: alias.to_owned(),
                    name: name.to_owned(),
                    name_range: (name_start, a.value_range.1),
                })
            })
            .collect()
    }

    /// The use `A::b …` that `meta` (one of `attr`'s [`Parsed::metas`]) reads as.
    fn attr_use(&self, attr: &SyntaxNode, meta: Meta) -> Option<AttrUse> {
        let (start, end, closed) = self.extent(attr);
        let inner = &self.text[meta.start..meta.end];
        let (head, rest) = split_path(inner);
        let (alias, name) = head.split_once("::")?;
        let alias = alias.trim();
        if alias.is_empty() || !is_ident(alias) || name.contains("::") {
            return None;
        }
        let name_start = meta.start + head.find("::")? + 2;
        let name_trim = name.trim();
        let name_off = name.find(name_trim).unwrap_or(0);
        let args = rest.trim_start().strip_prefix('(').map(|after| {
            let open = meta.start + head.len() + (rest.len() - rest.trim_start().len()) + 1;
            let body = after.rfind(')').map_or(after, |i| &after[..i]);
            split_args(body, open)
        });
        let alias_start = meta.start + head.find(alias).unwrap_or(0);
        let parent = self.parent_item(attr);
        Some(AttrUse {
            alias: alias.to_owned(),
            alias_range: (alias_start, alias_start + alias.len()),
            position: parent.as_ref().map(|(p, _)| *p),
            name: name_trim.to_owned(),
            name_range: (
                name_start + name_off,
                name_start + name_off + name_trim.len(),
            ),
            range: (start, end),
            args,
            parent_attrs: parent.map(|(_, attrs)| attrs),
            closed,
        })
    }

    /// Every `ATTR` node, each from the tree that answers for where it starts.
    fn attrs(&self) -> impl Iterator<Item = SyntaxNode> + '_ {
        let segments = self.segments();
        segments.iter().enumerate().flat_map(move |(i, seg)| {
            let end = segments.get(i + 1).map_or(usize::MAX, |next| next.start);
            seg.root
                .descendants()
                .filter(|n| n.kind() == SyntaxKind::ATTR)
                .filter(move |n| {
                    let at = usize::from(n.text_range().start());
                    seg.start <= at && at < end
                })
        })
    }

    /// The tree that answers at byte `offset`: the buffer's own, unless `offset` lies past the
    /// end of an attribute left open (which rust-analyzer's parser runs on to the end of the
    /// file as one token tree), where it is the tree of the text after that attribute.
    fn root_at(&self, offset: usize) -> &SyntaxNode {
        let Ok(at) = TextSize::try_from(offset.min(self.text.len())) else {
            return &self.root;
        };
        let overrun = self.root.token_at_offset(at).any(|t| {
            t.parent_ancestors()
                .filter(|n| n.kind() == SyntaxKind::ATTR)
                .any(|a| self.extent(&a).1 < offset)
        });
        if !overrun {
            return &self.root;
        }
        self.segments()
            .iter()
            .rev()
            .find(|s| s.start < offset)
            .map_or(&self.root, |s| &s.root)
    }

    /// The buffer's tree, then, after each attribute left open whose node runs past its
    /// [extent](Parsed::extent), a tree of the text with that attribute's overrun rewritten as
    /// an attribute without arguments followed by blanks (`#[DB::persist]`, same length, so
    /// every offset stays the text's): what follows parses as it would once the attribute is
    /// finished, and the item under it still carries it (its helpers are helpers).
    fn segments(&self) -> &[Segment] {
        self.segments.get_or_init(|| {
            let mut segments = vec![Segment {
                start: 0,
                root: self.root.clone(),
            }];
            let mut text: Option<Vec<u8>> = None;
            while segments.len() < MAX_SEGMENTS {
                let Some(last) = segments.last() else { break };
                let open = last
                    .root
                    .descendants()
                    .filter(|n| n.kind() == SyntaxKind::ATTR)
                    .filter(|n| usize::from(n.text_range().start()) >= last.start)
                    .find_map(|a| {
                        let (start, end, _) = self.extent(&a);
                        (end < usize::from(a.text_range().end())).then_some((start, end))
                    });
                let Some((start, end)) = open else { break };
                let bytes = text.get_or_insert_with(|| self.text.as_bytes().to_vec());
                for b in &mut bytes[start..end] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                // `#[` and the attribute's path, then `]`, when there is room for them.
                let (head, _) = split_path(&self.text[start + 2..end]);
                if !head.is_empty() && !head.ends_with(':') && start + 2 + head.len() < end {
                    let path_end = start + 2 + head.len();
                    bytes[start..path_end].copy_from_slice(&self.text.as_bytes()[start..path_end]);
                    bytes[path_end] = b']';
                }
                // Only ASCII bytes were written over whole characters: still UTF-8.
                let Ok(rewritten) = std::str::from_utf8(bytes) else {
                    break;
                };
                let root = SourceFile::parse(rewritten, Edition::CURRENT).syntax_node();
                segments.push(Segment { start: end, root });
            }
            segments
        })
    }

    /// The bytes an `ATTR` node stands for, and whether it is closed. A closed attribute is
    /// its whole node. One left open (its `[` or `(` unclosed, or a string in it unterminated)
    /// ends, for everything here, before the first line that reads as code rather than as more
    /// arguments (an item, a field, a statement, another attribute, a brace): half-typed input
    /// gets local answers, never the rest of the file read as its arguments.
    fn extent(&self, attr: &SyntaxNode) -> (usize, usize, bool) {
        let range = attr.text_range();
        let (start, end) = (usize::from(range.start()), usize::from(range.end()));
        let Some(written) = self.text.get(start..end) else {
            return (start, start, false);
        };
        if closes_at_end(written) {
            return (start, end, true);
        }
        let mut at = start + written.find('\n').unwrap_or(written.len());
        while at < end {
            let line_start = at + 1;
            let line_end = self.text[line_start..]
                .find('\n')
                .map_or(self.text.len(), |i| line_start + i);
            if reads_as_code(&self.text[line_start..line_end]) {
                break;
            }
            at = line_end;
        }
        (start, at.min(end), false)
    }

    /// The `(alias, name)` attributes of the item a helper at `attr` belongs to; see
    /// [`Self::parent_item`].
    fn parent_struct_attrs(&self, attr: &SyntaxNode) -> Option<Vec<(String, String)>> {
        self.parent_item(attr).map(|(_, attrs)| attrs)
    }

    /// Where `attr` sits, when that is certain, and the attributes `(alias, name)` of the item
    /// whose parent macro would consume a helper there: a field's struct (enum, union), a
    /// parameter's function, a variant's enum, a method's `impl` or trait. Directly on an item:
    /// no parent at all.
    fn parent_item(&self, attr: &SyntaxNode) -> Option<(HelperPosition, Vec<(String, String)>)> {
        use SyntaxKind::*;
        let attrs_of = |owner: &SyntaxNode| -> Vec<(String, String)> {
            // Those a `cfg_attr` adds count: the parent may be active, and a helper under it
            // then works (never a false CELL0011).
            owner
                .children()
                .filter(|c| c.kind() == ATTR)
                .flat_map(|a| {
                    self.metas(&a)
                        .into_iter()
                        .filter_map(move |m| self.attr_use(&a, m))
                })
                .map(|u| (u.alias, u.name))
                .collect()
        };
        let is_owner = |k: SyntaxKind| matches!(k, STRUCT | ENUM | UNION);
        // On a field (named or tuple): directly, or (half-typed, after error recovery)
        // somewhere inside the item's field list.
        let on_field = attr
            .parent()
            .is_some_and(|p| matches!(p.kind(), RECORD_FIELD | TUPLE_FIELD))
            || attr
                .ancestors()
                .take_while(|a| !is_owner(a.kind()) && a.kind() != FN)
                .any(|a| matches!(a.kind(), RECORD_FIELD_LIST | TUPLE_FIELD_LIST));
        if on_field {
            let owner = attr.ancestors().find(|a| is_owner(a.kind()))?;
            return Some((HelperPosition::Field, attrs_of(&owner)));
        }
        let parent = attr.parent()?;
        match parent.kind() {
            // A function's parameter (or `self`).
            PARAM | SELF_PARAM => {
                let owner = parent.ancestors().find(|a| a.kind() == FN)?;
                Some((HelperPosition::Parameter, attrs_of(&owner)))
            }
            VARIANT => {
                let owner = parent.ancestors().find(|a| a.kind() == ENUM)?;
                Some((HelperPosition::Variant, attrs_of(&owner)))
            }
            // A method (or another associated item) of an `impl` or trait.
            FN | CONST | TYPE_ALIAS
                if parent.parent().is_some_and(|p| p.kind() == ASSOC_ITEM_LIST) =>
            {
                let owner = parent
                    .ancestors()
                    .find(|a| matches!(a.kind(), IMPL | TRAIT))?;
                Some((HelperPosition::Method, attrs_of(&owner)))
            }
            // Directly on an item: certainly not inside a parent macro's item.
            STRUCT | ENUM | UNION | FN | IMPL | MODULE | CONST | STATIC | TRAIT | TYPE_ALIAS => {
                Some((HelperPosition::Item, Vec::new()))
            }
            _ => None,
        }
    }

    /// The completion context at byte `offset`, if it is one the server completes.
    pub(crate) fn cursor_context(&self, offset: usize) -> Option<CursorContext> {
        let offset = offset.min(self.text.len());
        if !self.text.is_char_boundary(offset) {
            return None;
        }
        let token = self
            .root_at(offset)
            .token_at_offset(TextSize::try_from(offset).ok()?)
            .left_biased()?;
        // Inside an attribute (complete or not)?
        if let Some(attr) = token
            .parent_ancestors()
            .find(|n| n.kind() == SyntaxKind::ATTR)
        {
            // In the attribute the cursor is in (one of those a `cfg_attr` adds, not its
            // predicate); only what is typed before the cursor is read.
            let meta = meta_at(&self.metas(&attr), offset)?;
            return self.attr_context(&attr, meta, offset);
        }
        // `Alias::na|` in code (not in a string or comment).
        if !matches!(token.kind(), SyntaxKind::STRING | SyntaxKind::COMMENT)
            && token
                .parent_ancestors()
                .any(|n| n.kind() == SyntaxKind::PATH)
        {
            let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
            let before = &self.text[line_start..offset];
            let prefix_len = before.len()
                - before
                    .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
                    .len();
            let head = &before[..before.len() - prefix_len];
            if let Some(path) = head.strip_suffix("::") {
                let alias_len = path.len()
                    - path
                        .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
                        .len();
                let alias = &path[path.len() - alias_len..];
                let preceded_by_path = path[..path.len() - alias_len].ends_with("::");
                if is_ident(alias) && !preceded_by_path {
                    return Some(CursorContext::AliasPath {
                        alias: alias.to_owned(),
                        prefix: before[before.len() - prefix_len..].to_owned(),
                        replace: (
                            offset - prefix_len,
                            offset + ident_len(&self.text[offset..]),
                        ),
                    });
                }
            }
        }
        // Inside `cell_remote!( … "` ?
        if let Some(call) = token
            .parent_ancestors()
            .find(|n| n.kind() == SyntaxKind::MACRO_CALL)
        {
            let path = call.children().find(|c| c.kind() == SyntaxKind::PATH)?;
            if path.text().to_string().rsplit("::").next().map(str::trim) == Some("cell_remote") {
                let start = usize::from(call.text_range().start());
                let before = &self.text[start..offset];
                let quote = before.rfind('"')?;
                // An odd number of quotes: the cursor is inside the literal.
                if before.matches('"').count() % 2 == 1 && before[..quote].contains('=') {
                    let prefix = &before[quote + 1..];
                    let after = &self.text[offset..];
                    let end = offset + after.find(['"', ')', '\n']).unwrap_or(0);
                    return Some(CursorContext::RemoteCell {
                        prefix: prefix.to_owned(),
                        replace: (start + quote + 1, end),
                    });
                }
            }
        }
        None
    }

    fn attr_context(&self, attr: &SyntaxNode, meta: Meta, offset: usize) -> Option<CursorContext> {
        let inner = self.text.get(meta.start..offset)?;
        let parent_attrs = self.parent_struct_attrs(attr);
        let (head, rest) = split_path(inner);
        if rest.is_empty() {
            // Still in the path: `#[`, `#[DB`, `#[DB::pe`.
            let Some((alias, prefix)) = head.split_once("::") else {
                let prefix = head.trim();
                return parent_attrs.map(|parent_attrs| CursorContext::FieldAttrStart {
                    prefix: prefix.to_owned(),
                    replace: (offset - prefix.len(), offset),
                    parent_attrs,
                });
            };
            if !is_ident(alias.trim()) || prefix.contains("::") {
                return None;
            }
            let prefix = prefix.trim_start();
            return Some(CursorContext::AttrName {
                alias: alias.trim().to_owned(),
                prefix: prefix.to_owned(),
                replace: (
                    offset - prefix.len(),
                    offset + ident_len(&self.text[offset..]),
                ),
                parent_attrs,
            });
        }
        if head.trim() == "derive" {
            // `#[derive(Debug, DB::Ta|`: the segment being typed, if it is `Alias::prefix`.
            let after_paren = rest.trim_start().strip_prefix('(')?;
            let current = after_paren.rsplit(',').next().unwrap_or("").trim_start();
            let (alias, prefix) = current.split_once("::")?;
            if !is_ident(alias.trim()) || !prefix.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return None;
            }
            return Some(CursorContext::DeriveName {
                alias: alias.trim().to_owned(),
                prefix: prefix.to_owned(),
                replace: (
                    offset - prefix.len(),
                    offset + ident_len(&self.text[offset..]),
                ),
            });
        }
        let (alias, name) = head.split_once("::")?;
        let after_paren = rest.trim_start().strip_prefix('(')?;
        // Inside the argument list: which argument, and are we after `=`?
        // Arguments written anywhere in the attribute (also after the cursor), except the one
        // being typed.
        let written: Vec<String> = self
            .attr_use(attr, meta)
            .and_then(|u| u.args)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !(a.name_range.0 < offset && offset <= a.name_range.1))
            .filter_map(|a| a.name)
            .collect();
        let current = after_paren.rsplit(',').next().unwrap_or("");
        let (value_of, prefix) = match current.split_once('=') {
            Some((n, v)) => (
                Some(n.trim().to_owned()),
                v.trim_start().trim_start_matches('"'),
            ),
            None => (None, current.trim_start()),
        };
        Some(CursorContext::AttrArgs {
            alias: alias.trim().to_owned(),
            name: name.trim().to_owned(),
            written,
            value_of,
            prefix: prefix.to_owned(),
            replace: (offset - prefix.len(), offset),
        })
    }
}

/// The docs (outer doc comments, one line each, the space after `///` dropped) and the
/// declaration line (`pub fn insert()`, without its body) of the top-level item called `name`
/// in a crate root's `source`: what hover shows for an API item. `None` when the root does not
/// define it itself (a `pub use` re-export, a glob).
pub(crate) fn item_docs(source: &str, name: &str) -> Option<(String, String)> {
    use SyntaxKind::*;
    let root = SourceFile::parse(source, Edition::CURRENT).syntax_node();
    let item = root.children().find(|n| {
        is_item_kind(n.kind())
            && n.children()
                .find(|c| c.kind() == NAME)
                .is_some_and(|c| c.text() == name)
    })?;
    let docs: Vec<String> = ra_ap_syntax::ast::DocCommentIter::from_syntax_node(&item)
        .filter(|c| c.is_outer())
        .filter_map(|c| {
            c.doc_comment()
                .map(|(t, _)| t.strip_prefix(' ').unwrap_or(t).trim_end().to_owned())
        })
        .collect();
    let start = item
        .children_with_tokens()
        .find(|c| !matches!(c.kind(), COMMENT | WHITESPACE | ATTR))
        .map_or(item.text_range().start(), |c| c.text_range().start());
    let end = item
        .children()
        .find(|c| {
            matches!(
                c.kind(),
                BLOCK_EXPR | RECORD_FIELD_LIST | VARIANT_LIST | ASSOC_ITEM_LIST | ITEM_LIST
            )
        })
        .map_or(item.text_range().end(), |c| c.text_range().start());
    let declaration = source
        .get(usize::from(start)..usize::from(end.max(start)))?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some((docs.join("\n"), declaration))
}

/// Whether `written` (an `ATTR` node's text) is `#[…]` with its `[` closed by its last byte:
/// delimiters balanced, skipping string, raw string and char literals and comments.
fn closes_at_end(written: &str) -> bool {
    let b = written.as_bytes();
    if !written.starts_with("#[") {
        return false;
    }
    let mut stack: Vec<u8> = vec![b']'];
    let mut i = 2;
    while i < b.len() {
        match b[i] {
            b'"' => match skip_string(b, i + 1) {
                Some(next) => i = next,
                None => return false,
            },
            // `r"…"`, `r#"…"#`, also `br"…"`: no escapes inside.
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0
                    || !is_ident_byte(b[i - 1])
                    || (b[i - 1] == b'b' && (i < 2 || !is_ident_byte(b[i - 2])))) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = i + 2 + hashes;
                match b[body..].windows(close.len()).position(|w| w == close) {
                    Some(p) => i = body + p + close.len(),
                    None => return false,
                }
            }
            b'\'' => {
                // A char literal (`'x'`, `'\''`), else a lifetime or label: one byte.
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .skip(1)
                        .position(|&c| c == b'\'')
                        .map(|p| i + 3 + p)
                } else {
                    let len = written[i + 1..].chars().next().map_or(0, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
                };
                i = close.map_or(i + 1, |c| c + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                match b[i + 2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => i = i + 2 + p + 2,
                    None => return false,
                }
            }
            open @ (b'(' | b'[' | b'{') => {
                stack.push(match open {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                });
                i += 1;
            }
            close @ (b')' | b']' | b'}') => {
                if stack.pop() != Some(close) {
                    return false;
                }
                if stack.is_empty() {
                    return i + 1 == b.len();
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

/// The index just past the `"` closing a string whose body starts at `from`, or `None` when
/// it is unterminated.
fn skip_string(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Whether a line after an open attribute reads as code rather than as more of its arguments:
/// it starts another attribute, a comment or a brace, with a keyword that starts an item or a
/// statement, or as a field (`id: u64`) or a macro call (`m!`). Argument lines (`name = value,`,
/// a literal, an expression) read as neither.
fn reads_as_code(line: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "pub", "fn", "struct", "enum", "union", "impl", "trait", "mod", "use", "const", "static",
        "type", "let", "async", "unsafe", "extern", "return", "if", "match", "for", "while",
        "loop", "where",
    ];
    let line = line.trim_start();
    if line.starts_with(['#', '}', '{', ';']) || line.starts_with("//") || line.starts_with("/*") {
        return true;
    }
    let word = &line[..ident_len(line)];
    if word.is_empty() {
        return false;
    }
    let rest = line[word.len()..].trim_start();
    KEYWORDS.contains(&word)
        || rest.starts_with('!')
        || (rest.starts_with(':') && !rest.starts_with("::"))
}

/// One attribute inside an `ATTR` node (see [`Parsed::metas`]): `start..end` is its text
/// (leading whitespace skipped); `raw_start` is where its slot begins (after `#[` or after the
/// comma before it), so a cursor in the whitespace before it still finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    start: usize,
    end: usize,
    raw_start: usize,
}

/// The attribute among `metas` whose slot holds byte `offset`.
fn meta_at(metas: &[Meta], offset: usize) -> Option<Meta> {
    metas
        .iter()
        .copied()
        .find(|m| m.raw_start <= offset && offset <= m.end && m.start <= offset)
}

/// The bytes of `s` that are code, with their index: string literals (with their quotes and
/// escapes) are skipped, so a delimiter or comma inside one does not count.
fn code_bytes(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut in_str = false;
    let mut escaped = false;
    s.bytes().enumerate().filter(move |&(_, b)| {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            return false;
        }
        in_str = b == b'"';
        !in_str
    })
}

/// The index in `s` of the `)` closing a list whose `(` came just before `s`, skipping nested
/// delimiters and string literals; `None` when it is not closed (half-typed).
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, b) in code_bytes(s) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                if depth == 0 {
                    return (b == b')').then_some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// The byte ranges of the top-level comma-separated parts of `body` (outside nested
/// delimiters and string literals).
fn split_commas(body: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut seg_start = 0;
    for (i, b) in code_bytes(body) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push((seg_start, i));
                seg_start = i + 1;
            }
            _ => {}
        }
    }
    out.push((seg_start, body.len()));
    out
}

/// Splits `DB::persist(…)…` into the path `DB::persist` and the rest.
fn split_path(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == ':' || c.is_whitespace()))
        .map_or(s.len(), |(i, _)| i);
    // Trailing whitespace belongs to the rest (so `#[DB::persist (` still splits right).
    let head = s[..end].trim_end();
    (head, &s[head.len()..])
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// Top-level comma-separated `name = value` pairs of `body`, which starts at byte `base`.
fn split_args(body: &str, base: usize) -> Vec<AttrArg> {
    let mut out = Vec::new();
    let mut push = |seg_start: usize, seg_end: usize| {
        let seg = &body[seg_start..seg_end];
        if seg.trim().is_empty() {
            return;
        }
        let lead = seg.len() - seg.trim_start().len();
        match seg
            .find('=')
            .filter(|i| !seg[..*i].contains('"') && seg.as_bytes().get(i + 1) != Some(&b'='))
        {
            Some(eq) if is_ident(seg[..eq].trim()) => {
                let name = seg[..eq].trim();
                let value = seg[eq + 1..].trim();
                let v_off = eq + 1 + (seg[eq + 1..].len() - seg[eq + 1..].trim_start().len());
                out.push(AttrArg {
                    name: Some(name.to_owned()),
                    value: value.to_owned(),
                    name_range: (
                        base + seg_start + lead,
                        base + seg_start + lead + name.len(),
                    ),
                    value_range: (
                        base + seg_start + v_off,
                        base + seg_start + v_off + value.len(),
                    ),
                });
            }
            _ => {
                let value = seg.trim();
                let r = (
                    base + seg_start + lead,
                    base + seg_start + lead + value.len(),
                );
                out.push(AttrArg {
                    name: None,
                    value: value.to_owned(),
                    name_range: r,
                    value_range: r,
                });
            }
        }
    };
    for (s, e) in split_commas(body) {
        push(s, e);
    }
    out
}

/// `(DB = "celldb@0.4")` → alias, cell, version, literal contents range; parsed by
/// `cell_export::parse_remote`, the parser of `cell_remote!` itself, so a call the macro rejects
/// defines no alias here either.
fn parse_remote(tt: &str, base: usize) -> Option<RemoteCall> {
    let tokens: proc_macro2::TokenStream = tt.parse().ok()?;
    let Some(proc_macro2::TokenTree::Group(group)) = tokens.into_iter().next() else {
        return None;
    };
    let input = cell_export::parse_remote(group.stream()).ok()?;
    let value = input.cell.value();
    // The literal as written (`"kv"`, `r#"kv"#`): its contents lie between its first and last
    // quote. Its position: (1-based line, column in chars) within `tt`.
    let written = input.cell.token().to_string();
    let start = input.cell.span().start();
    let line_start = if start.line <= 1 {
        0
    } else {
        tt.match_indices('\n').nth(start.line - 2)?.0 + 1
    };
    let lit_start = line_start
        + tt[line_start..]
            .char_indices()
            .nth(start.column)
            .map_or(tt.len() - line_start, |(i, _)| i);
    let open = written.find('"')?;
    let close = written.rfind('"')?;
    if close <= open || tt.get(lit_start..lit_start + written.len())? != written {
        return None;
    }
    let (cell, version) = match value.split_once('@') {
        Some((c, v)) => (c.to_owned(), Some(v.to_owned())),
        None => (value.clone(), None),
    };
    Some(RemoteCall {
        alias: input.alias.to_string(),
        cell,
        version,
        range: (0, 0),
        literal: (base + lit_start + open + 1, base + lit_start + close),
        nested: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(src: &str) -> Option<CursorContext> {
        let offset = src.find('|').unwrap();
        let text = src.replace('|', "");
        Parsed::new(&text).cursor_context(offset)
    }

    #[test]
    fn half_typed_attribute_names() {
        let c = ctx("#[DB::|\npub struct User { id: u64 }").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { ref alias, ref prefix, .. } if alias == "DB" && prefix.is_empty()),
            "{c:?}"
        );
        let c = ctx("#[DB::pe|]\npub struct User;").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { ref prefix, replace, .. } if prefix == "pe" && replace == (6, 8)),
            "{c:?}"
        );
    }

    #[test]
    fn half_typed_arguments() {
        let c = ctx("#[DB::persist(rep|\npub struct User;").unwrap();
        assert!(
            matches!(c, CursorContext::AttrArgs { ref name, ref prefix, value_of: None, .. } if name == "persist" && prefix == "rep"),
            "{c:?}"
        );
        let c = ctx("#[DB::persist(table = \"u\", replicate = \"|\")]\nstruct U;").unwrap();
        assert!(
            matches!(c, CursorContext::AttrArgs { ref written, value_of: Some(ref v), .. } if v == "replicate" && written.contains(&"table".to_owned())),
            "{c:?}"
        );
    }

    #[test]
    fn field_helpers_and_remote_cells() {
        let c = ctx("#[DB::persist]\nstruct U {\n    #[DB::|\n    id: u64,\n}").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { parent_attrs: Some(ref p), .. } if p == &[("DB".to_owned(), "persist".to_owned())]),
            "{c:?}"
        );
        let c = ctx("fn f() { DB::ins|(); }").unwrap();
        assert!(
            matches!(c, CursorContext::AliasPath { ref alias, ref prefix, .. } if alias == "DB" && prefix == "ins"),
            "{c:?}"
        );
        assert!(ctx("fn f() { a::DB::ins|(); }").is_none());
        let c = ctx("cell_remote!(DB = \"kv|\");").unwrap();
        assert!(
            matches!(c, CursorContext::RemoteCell { ref prefix, .. } if prefix == "kv"),
            "{c:?}"
        );
    }

    #[test]
    fn derives_complete_and_resolve() {
        let c = ctx("#[derive(Debug, DB::Ta|)]\nstruct U;").unwrap();
        assert!(
            matches!(c, CursorContext::DeriveName { ref alias, ref prefix, replace } if alias == "DB" && prefix == "Ta" && replace == (20, 22)),
            "{c:?}"
        );
        let c = ctx("#[derive(DB::|\nstruct U;").unwrap();
        assert!(
            matches!(c, CursorContext::DeriveName { ref prefix, .. } if prefix.is_empty()),
            "{c:?}"
        );
        assert!(ctx("#[derive(Debug, Clo|)]\nstruct U;").is_none());
        let text = "#[derive(Clone, DB::Table, a::b::C)]\nstruct U;";
        let p = Parsed::new(text);
        let uses = p.derive_uses();
        assert_eq!(uses.len(), 1, "{uses:?}");
        assert_eq!(&text[uses[0].name_range.0..uses[0].name_range.1], "Table");
        let at = text.find("Table").unwrap() + 2;
        assert_eq!(
            p.derive_use_at(at).map(|d| d.name),
            Some("Table".to_owned())
        );
        assert_eq!(p.derive_use_at(3), None);
    }

    #[test]
    fn attr_uses_and_remote_calls() {
        let text = "cell_sdk::cell_remote!(DB = \"kvstore@0.3\");\n#[DB::persist(replicate = \"raft\", table = \"u\")]\nstruct U { #[DB::key] id: u64 }";
        let p = Parsed::new(text);
        let calls = p.remote_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].cell.as_str(), calls[0].version.as_deref()),
            ("kvstore", Some("0.3"))
        );
        assert_eq!(&text[calls[0].literal.0..calls[0].literal.1], "kvstore@0.3");
        let uses = p.attr_uses();
        assert_eq!(uses.len(), 2);
        let args = uses[0].args.as_ref().unwrap();
        assert_eq!(args[0].name.as_deref(), Some("replicate"));
        assert_eq!(
            &text[args[0].value_range.0..args[0].value_range.1],
            "\"raft\""
        );
        assert_eq!(&text[uses[0].name_range.0..uses[0].name_range.1], "persist");
        assert_eq!(
            uses[1].parent_attrs.as_deref(),
            Some(&[("DB".to_owned(), "persist".to_owned())][..])
        );
    }

    #[test]
    fn attributes_inside_cfg_attr_are_uses() {
        let text = "#[cfg_attr(feature = \"a,b\", DB::persist(replicate = \"raft\"), derive(Debug, DB::Table))]\nstruct U {\n    #[cfg_attr(test, DB::key)] id: u64,\n    #[DB::index] e: String,\n}\n#[cfg_attr(all(unix, not(test)), cfg_attr(feature = \"x\", Val::schema,))]\n#[cfg_attr(feature = \"x\")]\nstruct V;";
        let p = Parsed::new(text);
        let uses = p.attr_uses();
        let found: Vec<(&str, &str, &str)> = uses
            .iter()
            .map(|u| {
                (
                    u.alias.as_str(),
                    u.name.as_str(),
                    &text[u.name_range.0..u.name_range.1],
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("DB", "persist", "persist"),
                ("DB", "key", "key"),
                ("DB", "index", "index"),
                ("Val", "schema", "schema"),
            ]
        );
        let args = uses[0].args.as_ref().unwrap();
        assert_eq!(args[0].name.as_deref(), Some("replicate"));
        assert_eq!(
            &text[args[0].value_range.0..args[0].value_range.1],
            "\"raft\""
        );
        // A parent behind `cfg_attr` is the fields' parent (it may be active).
        let parent = Some(vec![("DB".to_owned(), "persist".to_owned())]);
        assert_eq!(uses[1].parent_attrs, parent);
        assert_eq!(uses[2].parent_attrs, parent);
        let derives = p.derive_uses();
        assert_eq!(derives.len(), 1, "{derives:?}");
        assert_eq!(
            &text[derives[0].name_range.0..derives[0].name_range.1],
            "Table"
        );
        let at = text.find("DB::key").unwrap() + 5;
        assert_eq!(p.attr_use_at(at).map(|u| u.name), Some("key".to_owned()));
        // In the predicate: no attribute there.
        assert_eq!(p.attr_use_at(text.find("test").unwrap() + 1), None);
        let at = text.find("Table").unwrap() + 1;
        assert_eq!(
            p.derive_use_at(at).map(|d| d.name),
            Some("Table".to_owned())
        );
    }

    #[test]
    fn completion_inside_cfg_attr() {
        let c = ctx("#[cfg_attr(feature = \"x\", DB::|)]\nstruct U;").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { ref alias, ref prefix, replace, .. } if alias == "DB" && prefix.is_empty() && replace == (30, 30)),
            "{c:?}"
        );
        // Half-typed, at the end of the buffer and before an item.
        let c = ctx("#[cfg_attr(feature = \"x\", DB::pe|").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { ref prefix, .. } if prefix == "pe"),
            "{c:?}"
        );
        let c = ctx("#[cfg_attr(feature = \"x\", DB::|\npub struct U { id: u64 }").unwrap();
        assert!(
            matches!(c, CursorContext::AttrName { ref alias, ref prefix, .. } if alias == "DB" && prefix.is_empty()),
            "{c:?}"
        );
        let c = ctx("#[cfg_attr(a, cfg_attr(b, DB::persist(table = \"u\", rep|)))]\nstruct U;")
            .unwrap();
        assert!(
            matches!(c, CursorContext::AttrArgs { ref name, ref prefix, ref written, value_of: None, .. } if name == "persist" && prefix == "rep" && written == &["table".to_owned()]),
            "{c:?}"
        );
        let c = ctx("#[cfg_attr(a, derive(Debug, DB::Ta|))]\nstruct U;").unwrap();
        assert!(
            matches!(c, CursorContext::DeriveName { ref alias, ref prefix, .. } if alias == "DB" && prefix == "Ta"),
            "{c:?}"
        );
        let c = ctx(
            "#[cfg_attr(a, DB::persist)]\nstruct U {\n    #[cfg_attr(test, |)]\n    id: u64,\n}",
        )
        .unwrap();
        assert!(
            matches!(c, CursorContext::FieldAttrStart { ref parent_attrs, ref prefix, .. } if prefix.is_empty() && parent_attrs == &[("DB".to_owned(), "persist".to_owned())]),
            "{c:?}"
        );
        // In the predicate: nothing to complete.
        assert!(ctx("#[cfg_attr(DB::|, DB::persist)]\nstruct U;").is_none());
        assert!(ctx("#[cfg_attr(|)]\nstruct U;").is_none());
    }

    #[test]
    fn helpers_on_tuple_and_variant_fields_see_their_parent() {
        let p = Parsed::new(
            "#[V::schema]\nstruct P(#[V::range(0..10)] u8);\n#[V::schema]\nenum E { A(#[V::email] String) }\n#[V::email]\nfn f() {}",
        );
        let uses = p.attr_uses();
        let parents: Vec<Option<usize>> = uses
            .iter()
            .map(|u| u.parent_attrs.as_ref().map(Vec::len))
            .collect();
        // schema (on item: empty), range (field: 1), schema, email (variant field: 1), email on fn (empty).
        assert_eq!(parents, [Some(0), Some(1), Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn incremental_edits_give_the_same_tree_as_a_full_parse() {
        let mut text = String::from(
            "#[DB::persist]\nstruct U {\n    #[DB::k]\n    id: u64,\n}\nfn f() { let x = 1; }\n",
        );
        let mut tree = Tree::new(&text);
        let edits = [
            ("#[DB::k]", 7, 0, "ey"),
            ("let x = 1;", 8, 1, "2"),
            ("struct U", 7, 1, "V"),
            ("fn f", 0, 0, "#[DB::"),
        ];
        for (anchor, delta, del, insert) in edits {
            let at = text.find(anchor).unwrap() + delta;
            text.replace_range(at..at + del, insert);
            tree = tree.edit(at, at + del, insert, &text);
            super::edit_tests::assert_same(&tree, &text, &format!("after {insert:?}"));
        }
    }

    #[test]
    fn reparsing_by_item_matches_a_full_parse_under_random_edits() {
        // Random edits (deterministic LCG) of snippets that open and close braces, strings,
        // comments and attributes anywhere: after each, the kept tree must equal a full parse.
        let snippets = [
            "#[DB::",
            "}",
            "{",
            "\"",
            "/*",
            "*/",
            ";",
            "struct X {",
            "fn g() {}\n",
            "\n",
            "x",
            "// c\n",
            "'",
            "r#\"",
            "#[",
            "]",
            "(",
            ")",
            "const C: u8 = {1}",
            "use a::b",
            "!",
            "#!",
            "/",
            "as ",
            "\r\n",
            "é",
            "😀",
            "",
            "",
        ];
        let initial = String::from(
            "use cell_sdk::cell_remote;\ncell_remote!(DB = \"kv\");\n\n/// Doc.\n#[DB::persist]\nstruct U {\n    #[DB::key]\n    id: u64,\n}\n\nfn f() { let x = 1; }\nconst K: u8 = 2;\nimpl U { fn g(&self) {} }\n",
        );
        // Independent sequences (seeds that found mismatches while this was written).
        for seed in [0x2545_f491_4f6c_dd1du64, 0x42, 0x99, 0x7] {
            random_edits(&initial, &snippets, seed, 1000);
        }
    }

    fn random_edits(initial: &str, snippets: &[&str], mut seed: u64, steps: usize) {
        let mut text = initial.to_owned();
        let mut tree = Tree::new(&text);
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as usize) % n.max(1)
        };
        for step in 0..steps {
            // Half the edits land on a top-level child's start (+0..3 bytes), where a window
            // begins and ends.
            let mut at = if next(2) == 0 {
                let starts: Vec<usize> = SyntaxNode::new_root(tree.green.clone())
                    .children_with_tokens()
                    .map(|c| usize::from(c.text_range().start()))
                    .collect();
                let s = starts.get(next(starts.len())).copied().unwrap_or(0);
                (s + next(4)).min(text.len())
            } else {
                next(text.len() + 1)
            };
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut del = if next(3) == 0 { next(8) } else { 0 };
            while !text.is_char_boundary((at + del).min(text.len())) {
                del += 1;
            }
            let del = del.min(text.len() - at);
            let insert = snippets[next(snippets.len())];
            text.replace_range(at..at + del, insert);
            tree = tree.edit(at, at + del, insert, &text);
            // Green trees directly: `Parsed::from_tree` would reparse a tree of the wrong length.
            super::edit_tests::assert_same(
                &tree,
                &text,
                &format!("step {step}: {insert:?} at {at} (-{del})"),
            );
            if text.len() > 2000 {
                text = initial.to_owned();
                tree = Tree::new(&text);
            }
        }
    }

    #[test]
    fn remote_calls_are_read_by_the_macros_own_parser() {
        let text = "cell_remote!(\n  DB =\n r#\"kvstore@0.3\"#,\n);\ncell_remote!(É = \"x\");\ncell_remote!(A = \"é\" B);\ncell_remote!(C = d);\ncell_remote!(😀 = \"x\");\n";
        let calls = Parsed::new(text).remote_calls();
        let found: Vec<(&str, &str, Option<&str>, &str)> = calls
            .iter()
            .map(|c| {
                (
                    c.alias.as_str(),
                    c.cell.as_str(),
                    c.version.as_deref(),
                    &text[c.literal.0..c.literal.1],
                )
            })
            .collect();
        // `É` is an identifier; the rest is what `cell_remote!` rejects (CELL0003): no alias.
        assert_eq!(
            found,
            [
                ("DB", "kvstore", Some("0.3"), "kvstore@0.3"),
                ("É", "x", None, "x")
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "#[",
            "#[::",
            "#[DB::persist((((",
            "cell_remote!(= \"",
            "\u{1F600}#[DB::é",
            "",
        ] {
            let p = Parsed::new(text);
            for i in 0..=text.len() {
                let _ = p.cursor_context(i);
            }
            let _ = p.attr_uses();
            let _ = p.remote_calls();
        }
    }
}

#[cfg(test)]
mod edit_tests {
    //! Edits at item boundaries where a window parsed alone differs from the file.
    use super::*;

    /// Edits `text` at `anchor + delta` (deleting `del` bytes, inserting `insert`) and compares
    /// the kept green tree with a full parse's.
    fn same(text: &str, anchor: &str, delta: usize, del: usize, insert: &str) {
        let at = text.find(anchor).unwrap() + delta;
        let tree = Tree::new(text);
        let mut new = text.to_owned();
        new.replace_range(at..at + del, insert);
        let kept = tree.edit(at, at + del, insert, &new);
        assert_same(&kept, &new, &format!("{insert:?} at {at} (-{del})"));
    }

    /// The kept tree is exactly (green tree equality) a full parse of `text`.
    pub(super) fn assert_same(kept: &Tree, text: &str, what: &str) {
        let full = Tree::new(text);
        if kept.green != full.green {
            panic!(
                "{what} in\n{text}\n--- kept\n{:#?}\n--- full\n{:#?}",
                SyntaxNode::new_root(kept.green.clone()),
                SyntaxNode::new_root(full.green.clone())
            );
        }
    }

    #[test]
    fn an_attribute_turned_inner_is_not_reparsed_alone() {
        same("fn a() {}\n#[x]\nfn b() {}\nfn c() {}\n", "#[x]", 1, 0, "!");
        same(
            "fn a() {}\r\n#[x]\r\nfn b() {}\r\nfn c() {}\r\n",
            "#[x]",
            1,
            0,
            "!",
        );
        same("fn a() {}\n#[x] fn b() {}", "#[x]", 1, 1, "!");
    }

    #[test]
    fn an_inner_attribute_after_a_leading_comment_is_not_reparsed_alone() {
        // The window starts at the item's leading comment, which it keeps.
        same(
            "fn a() {}\n/* k */ impl X {}\nfn c() {}\n",
            "impl",
            0,
            0,
            "#![x] ",
        );
        same(
            "fn a() {}\n// k\nimpl X {}\nfn c() {}\n",
            "impl",
            0,
            0,
            "#![x]\n",
        );
    }

    /// A keystroke in a run of 20,000 blank lines (and deleting it again, and a newline) is
    /// reparsed from the keystroke to the next item: the 3,000 lines before the run and the run
    /// before the keystroke are not read again. Structural, not timed (the benchmark times it).
    #[test]
    fn a_keystroke_in_blank_lines_reparses_from_the_keystroke_to_the_next_item() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("/// Doc.\nfn f{i}() {{\n    let x = {i};\n}}\n"));
        }
        let run_start = text.len();
        text.push_str(&"\n".repeat(20_000));
        text.push_str("fn last() {}\n");
        let at = run_start + 10_000;
        let mut tree = Tree::new(&text);
        for (insert, del) in [("x", 0), ("", 1), ("\n", 0), ("", 1), ("fn g() {}", 0)] {
            text.replace_range(at..at + del, insert);
            tree = tree.edit(at, at + del, insert, &text);
            assert_same(&tree, &text, &format!("{insert:?} (-{del})"));
            assert!(
                tree.relexed() <= 10_000 + 64,
                "{insert:?} (-{del}): {} bytes re-read of {}",
                tree.relexed(),
                text.len()
            );
        }
    }

    #[test]
    fn edits_in_blank_runs_after_items_and_comments_match_a_full_parse() {
        let inits = [
            "fn a() {}\n\n\n\nfn b() {}\n\n\nfn c() {}\n",
            "// c\n\n\nfn a() {}\n",
            "fn a() {}\n// c\n\n   \n/// d\nfn b() {}\n\nfn c() {}\n",
            "const C: u8 = {1}\n\n\n\nfn b() {}\nfn c() {}\n",
            "\n\n\n#[x]\n\n\nfn b() {}\nfn c() {}\n",
        ];
        let snippets = [
            "x",
            "\n",
            " ",
            "",
            "#!",
            "#![a]",
            "//",
            "/* ",
            "}",
            "{",
            "fn g() {}",
            "\"",
            "/",
            "*",
            "as u8;",
            ".f()",
            "#[y]",
        ];
        for init in inits {
            let tree = Tree::new(init);
            for at in 0..=init.len() {
                for del in 0..3 {
                    let e = (at + del).min(init.len());
                    for sn in snippets {
                        let mut new = init.to_owned();
                        new.replace_range(at..e, sn);
                        let kept = tree.edit(at, e, sn, &new);
                        assert_same(&kept, &new, &format!("{sn:?} at {at}..{e} in {init:?}"));
                    }
                }
            }
        }
    }

    #[test]
    fn a_shebang_is_not_reparsed_alone() {
        same("fn a() {}\n#[x]\nfn b() {}\nfn c() {}\n", "#[x]", 1, 1, "!");
    }

    #[test]
    fn a_const_ending_in_a_brace_may_continue_into_the_window() {
        same(
            "const C: u8 = {1}\n// c\nfn g() {}\nfn h() {}\n",
            "// c",
            1,
            1,
            "",
        );
        same(
            "const C: u8 = {1}\n/// c\nfn g() {}\nfn h() {}\n",
            "/// c",
            1,
            2,
            "",
        );
        same(
            "static S: u8 = {1}\n// c\nfn g() {}\nfn h() {}\n",
            "// c",
            1,
            1,
            "",
        );
        same(
            "const C: u8 = {1}\nasync fn b() {}\nfn c() {}\n",
            "async",
            2,
            3,
            "",
        );
        same(
            "fn a() {}\nconst C: u8 = 1;\nfn c() {}\nfn d() {}\n",
            "1;",
            1,
            1,
            "",
        );
    }

    #[test]
    fn comments_and_keywords_broken_at_item_starts() {
        same(
            "fn a() {}\n/// d\nfn b() {}\nfn c() {}\n",
            "/// d",
            2,
            1,
            "!",
        );
        same(
            "fn a() {}\n/* d */\nfn b() {}\nfn c() {}\n",
            "/* d",
            2,
            0,
            "!",
        );
        same("fn a() {}\nasync fn b() {}\nfn c() {}\n", "async", 2, 3, "");
    }

    /// Every snippet at every top-level child start (+0..3 bytes, deleting 0..2 bytes).
    #[test]
    fn every_snippet_at_every_item_start_matches_a_full_parse() {
        let snippets = [
            "!", "#!", "/", "*", "\"", "'", "r#\"", "{", "}", "(", ")", ";", "=", ".", "as ", "-",
            "<", "|", "&", "?", "::", "\n", "\r", "\r\n", "é", "😀", "//", "/*", "*/", "![", " ",
            "", "x",
        ];
        let inits = [
            "const C: u8 = {1}\n/// d\n#[a]\nfn b() {}\nstatic S: u8 = {2}\nasync fn c() {}\nm!{}\n/* k */ impl X {}\nmacro_rules! q { () => {} }\nuse a::b;\nstruct T;\n",
            "#[x]\nfn a() {}\r\n#[y] struct B { f: u8 }\r\nconst K: () = ();\r\nenum E { A = {3} }\r\ntype T = u8;\r\n",
        ];
        for init in inits {
            let tree = Tree::new(init);
            let starts: Vec<usize> = SyntaxNode::new_root(tree.green.clone())
                .children_with_tokens()
                .map(|c| usize::from(c.text_range().start()))
                .collect();
            for s in starts {
                for d in 0..4 {
                    for del in 0..3 {
                        for sn in snippets {
                            let at = s + d;
                            let e = (at + del).min(init.len());
                            if at > init.len()
                                || !init.is_char_boundary(at)
                                || !init.is_char_boundary(e)
                            {
                                continue;
                            }
                            let mut new = init.to_owned();
                            new.replace_range(at..e, sn);
                            let kept = tree.edit(at, e, sn, &new);
                            assert_same(&kept, &new, &format!("{sn:?} at {at}..{e}"));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod extent_tests {
    //! Which attributes are closed, and where an open one ends.
    use super::*;

    #[test]
    fn closed_attributes_with_literals_and_comments_are_closed() {
        for text in [
            "#[DB::persist]",
            "#[DB::persist(table = \"a)]\")]",
            "#[DB::persist(table = r#\"a\")]\"#)]",
            "#[DB::persist(table = br\"a\\\")]",
            "#[DB::p(c = ']', d = '\\'', e = 'a)]",
            "#[DB::p(/* ) */ x = 1, // )\n y = 2)]",
            "#[DB::p(\n    a = \"x\",\n    b = [1, 2],\n)]",
        ] {
            assert!(closes_at_end(text), "{text}");
        }
        for text in [
            "#[DB::persist(",
            "#[DB::persist(table = \"u)]",
            "#[DB::persist(table = r#\"u\")]",
            "#[DB::p(x = (1]",
            "#[DB::p] extra",
        ] {
            assert!(!closes_at_end(text), "{text}");
        }
    }

    #[test]
    fn an_open_attribute_ends_before_the_first_line_that_reads_as_code() {
        let text =
            "#[DB::persist(\n    table = \"u\",\n    replicate = \"raft\"\n    id: u64,\n}\n";
        let p = Parsed::new(text);
        let u = p.attr_uses();
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(!u[0].closed);
        assert_eq!(
            &text[u[0].range.0..u[0].range.1],
            "#[DB::persist(\n    table = \"u\",\n    replicate = \"raft\""
        );
        for line in [
            "pub struct U;",
            "#[x]",
            "// c",
            "}",
            "fn f() {}",
            "m!(x);",
            "let x = 1;",
            "id: u64,",
        ] {
            assert!(reads_as_code(line), "{line}");
        }
        for line in ["table = \"u\",", "\"x\"", "1..=2,", "a::b", ")]", ""] {
            assert!(!reads_as_code(line), "{line}");
        }
    }
}

#[cfg(test)]
mod no_panic_tests {
    //! Multi-byte and half-typed attribute, derive and remote inputs never panic.
    use super::*;

    #[test]
    fn multi_byte_attribute_derive_and_remote_inputs_never_panic() {
        let texts = [
            "#[derive(DB::Tåble, é::😀)]\nstruct S { #[DB::key(é = \"ü\", 😀, x = 1..=2)] f: u8 }",
            "#[DB::persist(rep = \"r😀\", ",
            "#[derive(DB::",
            "#[derive(DB::é",
            "cell_remote!(é = \"😀@1\");",
            "cell_remote!(X = \"a\u{301}",
            "#[DB::p(a = r#\"}\"#, b = '😀', c = b\"x\")]\nfn f() {}",
            "#[DB::p(= , = ,)]",
            "#[DB::p(a = )]",
            "#[DB::p(\"é\")]",
            "struct S(#[DB::k(😀)] u8);",
            "#[derive(::DB::X, DB::, ::, DB)]",
            "#[DB::p(a = \"x\\\"é\")]",
            "#[cfg_attr(",
            "#[cfg_attr(é, ",
            "#[cfg_attr(a, cfg_attr(",
            "#[cfg_attr(\"é,\", DB::😀(é = \"ü",
            "#[cfg_attr(a, \"\\\", DB::x)]",
            "#[cfg_attr(a, derive(DB::é, 😀), DB::k(x = )))]\nstruct S { #[cfg_attr(é, DB::😀)] f: u8 }",
            "#[cfg_attr)]",
            "#[ cfg_attr ( a , DB::p ) ]",
        ];
        for text in texts {
            let p = Parsed::new(text);
            for i in 0..=text.len() + 2 {
                let _ = p.cursor_context(i);
                let _ = p.derive_use_at(i);
                let _ = p.attr_use_at(i);
            }
            let _ = p.attr_uses();
            let _ = p.derive_uses();
            let _ = p.remote_calls();
        }
    }
}
