//! Where a scenario came from, and how to point at a place in it.
//!
//! Every error a user can make in a scenario file is reported as `file:line:column: message`,
//! the form editors and terminals turn into a link. This module owns the byte-offset → line and
//! column mapping; it does not know the scenario schema.

use std::fmt;
use std::ops::Range;

/// The text of a scenario and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: String,
    pub text: String,
}

/// A 1-based line and column in a [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Source {
    pub fn new(origin: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            origin: origin.into(),
            text: text.into(),
        }
    }

    /// The line and column of a byte offset (clamped to the end of the text).
    pub fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }

    /// The location of the start of a span, or of the file's start when there is none.
    pub fn locate_span(&self, span: Option<Range<usize>>) -> Location {
        self.locate(span.map_or(0, |s| s.start))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: offsets map to the 1-based line and column an editor shows, including past the end.
    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let source = Source::new("x.toml", "a = 1\nbé = 2\n");
        assert_eq!(source.locate(0), Location { line: 1, column: 1 });
        assert_eq!(source.locate(6), Location { line: 2, column: 1 });
        assert_eq!(source.locate(9), Location { line: 2, column: 3 });
        assert_eq!(source.locate(1000), Location { line: 3, column: 1 });
    }
}
