//! Byte offsets ↔ LSP positions (line, UTF-16 column), and ↔ rustc's 1-based line/column.

/// Line starts of a text, for position conversions.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// (0-based line, UTF-16 column) of byte `offset` (clamped to the text).
    pub(crate) fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        let start = self.starts[line];
        let mut end = offset;
        while end > start && !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col: usize = self.text[start..end].chars().map(char::len_utf16).sum();
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    }

    /// The byte offset of (0-based line, UTF-16 column); past-the-end positions clamp.
    pub(crate) fn offset(&self, line: u32, col: u32) -> usize {
        let Some(&start) = self.starts.get(line as usize) else {
            return self.text.len();
        };
        let end = self
            .starts
            .get(line as usize + 1)
            .map_or(self.text.len(), |e| *e);
        let mut units = 0u32;
        let line = &self.text[start..end];
        for (i, c) in line.char_indices() {
            // A column past the line's end clamps to before its terminator, `\n` or `\r\n`
            // (an insertion there must not split the pair).
            if units >= col || c == '\n' || (c == '\r' && line[i + 1..].starts_with('\n')) {
                return start + i;
            }
            units += u32::try_from(c.len_utf16()).unwrap_or(2);
        }
        end
    }

    /// rustc-style (1-based line, 1-based column in chars).
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        let start = self.starts[line];
        let mut end = offset;
        while end > start && !self.text.is_char_boundary(end) {
            end -= 1;
        }
        (line + 1, self.text[start..end].chars().count() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_round_trip() {
        let text = "a\n\u{1F600}b\nc";
        let idx = LineIndex::new(text);
        let b = text.find('b').unwrap();
        assert_eq!(idx.position(b), (1, 2));
        assert_eq!(idx.offset(1, 2), b);
        assert_eq!(idx.offset(9, 0), text.len());
        assert_eq!(idx.line_col(b), (2, 2));
    }

    #[test]
    fn a_column_past_a_crlf_line_end_clamps_before_the_cr() {
        let text = "ab\r\ncd\r\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset(0, 2), 2);
        assert_eq!(idx.offset(0, 3), 2);
        assert_eq!(idx.offset(0, 99), 2);
        assert_eq!(idx.offset(1, 99), 6);
        assert_eq!(idx.offset(2, 0), text.len());
        // A lone `\r` is an ordinary character.
        assert_eq!(LineIndex::new("a\rb\n").offset(0, 99), 3);
    }
}
