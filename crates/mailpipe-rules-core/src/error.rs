//! The crate's one error type: what is wrong with a rules file, and where (line and column).
//!
//! Loading never stops at the first problem: `load` gathers one [`RuleError`] per problem so
//! `mailpipe rules check` can print them all. Locations are 1-based lines and columns counted
//! in characters, computed from the byte spans toml gives.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// A place in the rules file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a rules file, with where it is and which rule it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{location}: {}{kind}", rule_prefix(.rule_id))]
pub struct RuleError {
    pub location: Location,
    /// The rule the problem is in, when its id could be read.
    pub rule_id: Option<String>,
    pub kind: RuleErrorKind,
}

fn rule_prefix(rule_id: &Option<String>) -> String {
    match rule_id {
        Some(id) => format!("rule `{id}`: "),
        None => String::new(),
    }
}

/// What is wrong. Messages are lower-case, without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RuleErrorKind {
    /// Not TOML, or TOML of the wrong shape (unknown field, wrong type, missing field).
    #[error("{0}")]
    Syntax(String),
    #[error("duplicate rule id `{0}` (first defined at {1})")]
    DuplicateId(String, Location),
    #[error("invalid rule id `{0}`: use 1 to 100 of a-z, 0-9, `-`, `_`, `.`")]
    InvalidId(String),
    #[error("invalid regex: {0}")]
    InvalidRegex(String),
    #[error("unknown time zone `{0}` (an IANA name such as `Europe/Paris`)")]
    UnknownTimeZone(String),
    #[error("invalid time of day `{0}` (HH:MM, 24-hour)")]
    InvalidTimeOfDay(String),
    #[error("invalid day `{0}` (mon, tue, wed, thu, fri, sat, sun)")]
    InvalidDay(String),
    #[error("invalid duration `{0}` (a number and a unit: 90s, 30m, 72h, 7d, 2w)")]
    InvalidDuration(String),
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    #[error("unknown template variable `{0}` (known: {known})", known = crate::vars::KNOWN_FIELDS.join(", "))]
    UnknownTemplateVariable(String),
    #[error("invalid expression: {0}")]
    InvalidExpression(String),
    #[error("unknown expression variable `{0}` (known: {known})", known = crate::vars::EVENT_FIELDS.join(", "))]
    UnknownExpressionVariable(String),
    /// A value that parses but cannot mean anything (`at_least = 0`, empty list, …).
    #[error("{0}")]
    Invalid(String),
}

/// Turns byte offsets into lines and columns for one source text.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// The location of a byte offset; offsets past the end point after the last character.
    pub(crate) fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Location {
            line: line.max(1),
            column: column + 1,
        }
    }

    pub(crate) fn locate_span(&self, span: Option<Range<usize>>) -> Location {
        self.locate(span.map_or(0, |s| s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns_in_characters() {
        let index = LineIndex::new("ab\ncdé f\n\nx");
        assert_eq!(index.locate(0), Location { line: 1, column: 1 });
        assert_eq!(index.locate(3), Location { line: 2, column: 1 });
        // `é` is two bytes but one column.
        assert_eq!(index.locate(7), Location { line: 2, column: 4 });
        assert_eq!(index.locate(10), Location { line: 3, column: 1 });
        assert_eq!(index.locate(11), Location { line: 4, column: 1 });
        assert_eq!(index.locate(999), Location { line: 4, column: 2 });
    }

    #[test]
    fn error_display_names_location_and_rule() {
        let error = RuleError {
            location: Location { line: 3, column: 7 },
            rule_id: Some("hard-bounce".into()),
            kind: RuleErrorKind::UnknownTimeZone("Mars/Olympus".into()),
        };
        assert_eq!(
            error.to_string(),
            "3:7: rule `hard-bounce`: unknown time zone `Mars/Olympus` (an IANA name such as `Europe/Paris`)"
        );
    }
}
