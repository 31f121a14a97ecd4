//! Regex conditions on the recipient address or its domain: "matches one of these".
//!
//! Patterns are compiled once, at load, with a size limit, so a pathological pattern is a
//! load error with its line rather than memory blown at the first event. The regex crate
//! matches in linear time, so no event can make a match slow.

use regex::{Regex, RegexBuilder};
use toml::Spanned;

use super::EvalContext;
use crate::compile::Sink;
use crate::error::RuleErrorKind;

/// Cap on one compiled pattern (and on its lazy DFA), far above any sensible address rule.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Which address part a [`Pattern`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Recipient,
    RecipientDomain,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Recipient => "recipient_matches",
            Target::RecipientDomain => "recipient_domain_matches",
        }
    }
}

/// The recipient (or its domain) matches at least one of the patterns.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub target: Target,
    pub regexes: Vec<Regex>,
}

impl Pattern {
    /// Compiles every pattern, reporting each bad one at its own span.
    pub(crate) fn compile(
        target: Target,
        raw: &Spanned<Vec<Spanned<String>>>,
        sink: &mut Sink<'_>,
    ) -> Option<Pattern> {
        if raw.get_ref().is_empty() {
            sink.at(
                raw.span(),
                RuleErrorKind::Invalid(format!("{} is empty", target.name())),
            );
            return None;
        }
        let mut regexes = Vec::new();
        for pattern in raw.get_ref() {
            let built = RegexBuilder::new(pattern.get_ref())
                .size_limit(PATTERN_SIZE_LIMIT)
                .dfa_size_limit(PATTERN_SIZE_LIMIT)
                .build();
            match built {
                Ok(regex) => regexes.push(regex),
                Err(e) => sink.at(pattern.span(), RuleErrorKind::InvalidRegex(one_line(&e))),
            }
        }
        (regexes.len() == raw.get_ref().len()).then_some(Pattern { target, regexes })
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let value = match self.target {
            Target::Recipient => ctx.event.recipient.as_deref(),
            Target::RecipientDomain => ctx.event.recipient_domain.as_deref(),
        };
        let Some(value) = value else {
            return (false, ctx.detail(|| "event has no recipient".to_string()));
        };
        let found = self.regexes.iter().find(|r| r.is_match(value));
        let detail = ctx.detail(|| match found {
            Some(regex) => format!("{value} matches {}", regex.as_str()),
            None => format!("{value} matches none of the patterns"),
        });
        (found.is_some(), detail)
    }
}

/// The regex crate's errors span several lines (the pattern and a caret); one line reads
/// better after a location.
fn one_line(error: &regex::Error) -> String {
    error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_for, event};
    use crate::error::LineIndex;
    use mailpipe_model::EventType;

    fn spanned(patterns: &[&str]) -> Spanned<Vec<Spanned<String>>> {
        Spanned::new(
            0..1,
            patterns
                .iter()
                .map(|p| Spanned::new(0..1, p.to_string()))
                .collect(),
        )
    }

    #[test]
    fn matches_recipient_or_domain() {
        let index = LineIndex::new("x");
        let mut sink = Sink::new(&index, 0);
        let recipient = Pattern::compile(Target::Recipient, &spanned(&["^ann@"]), &mut sink);
        let domain = Pattern::compile(
            Target::RecipientDomain,
            &spanned(&["^nope$", "example\\.org$"]),
            &mut sink,
        );
        let e = event(EventType::Delivered);
        let ctx = context_for(&e);
        assert!(recipient.unwrap().evaluate(&ctx).0);
        assert!(domain.unwrap().evaluate(&ctx).0);
        let mut no_recipient = event(EventType::Delivered);
        no_recipient.recipient = None;
        let recipient = Pattern::compile(Target::Recipient, &spanned(&[".*"]), &mut sink).unwrap();
        assert!(!recipient.evaluate(&context_for(&no_recipient)).0);
        assert!(sink.errors.is_empty());
    }

    #[test]
    fn bad_and_oversized_patterns_are_load_errors() {
        let index = LineIndex::new("x");
        let mut sink = Sink::new(&index, 0);
        let huge = "\\w{500}".repeat(20);
        let pattern = Pattern::compile(Target::Recipient, &spanned(&["(", &huge, "ok"]), &mut sink);
        assert!(pattern.is_none());
        assert_eq!(sink.errors.len(), 2);
        assert!(sink
            .errors
            .iter()
            .all(|e| matches!(e.kind, RuleErrorKind::InvalidRegex(_))));
        assert!(!sink.errors[0].to_string().contains('\n'));
    }
}
