//! Conversion of `proc_macro2` spans (with `span-locations`) into the model's [`Span`].
//!
//! proc-macro2 keeps every parsed source in a thread-local map; the index converts spans into
//! owned [`Span`]s right after parsing a file and then calls
//! `proc_macro2::extra::invalidate_current_thread_spans` (see [`forget_sources`]) so a
//! long-running server does not accumulate every version of every file it ever parsed.

use std::path::Path;

use crate::model::Span;

/// The model span of `span` in `file`.
pub(crate) fn span_of(file: &Path, span: proc_macro2::Span) -> Span {
    let start = span.start();
    let end = span.end();
    let bytes = span.byte_range();
    Span {
        file: file.to_path_buf(),
        line: u32::try_from(start.line).unwrap_or(u32::MAX),
        col: u32::try_from(start.column + 1).unwrap_or(u32::MAX),
        end_line: u32::try_from(end.line).unwrap_or(u32::MAX),
        end_col: u32::try_from(end.column + 1).unwrap_or(u32::MAX),
        start: bytes.start,
        end: bytes.end,
    }
}

/// The span from the start of `a` to the end of `b`.
pub(crate) fn join(a: &Span, b: &Span) -> Span {
    Span {
        file: a.file.clone(),
        line: a.line,
        col: a.col,
        end_line: b.end_line,
        end_col: b.end_col,
        start: a.start,
        end: b.end.max(a.start),
    }
}

/// Drops proc-macro2's thread-local copy of every source parsed so far on this thread. Call only
/// once no `proc_macro2::Span` from those sources is used any more.
pub(crate) fn forget_sources() {
    proc_macro2::extra::invalidate_current_thread_spans();
}

/// The span at the very start of `file` (for problems about a whole file).
pub(crate) fn file_start(file: &Path) -> Span {
    Span {
        file: file.to_path_buf(),
        line: 1,
        col: 1,
        end_line: 1,
        end_col: 1,
        start: 0,
        end: 0,
    }
}
