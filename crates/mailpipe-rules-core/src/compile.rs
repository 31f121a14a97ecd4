//! From a parsed rule to a checked one: every semantic problem reported at its span.
//!
//! [`Sink`] gathers errors for one rule, so one bad pattern does not hide a bad template
//! three lines below. A rule's version is the operator's label, or else a hash of its
//! content (so an edit that changes meaning changes the version; comments and layout don't).

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::action::Action;
use crate::condition::when::{self, When};
use crate::duration::parse_duration_ms;
use crate::error::{LineIndex, Location, RuleError, RuleErrorKind};
use crate::file::{RawRule, RawVersion};
use crate::state::KeyKind;
use crate::template::Templates;

/// Collects the errors of one rule.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    index: &'a LineIndex<'a>,
    /// Where errors without a span of their own point: the rule's header.
    fallback: usize,
    pub rule_id: Option<String>,
    pub errors: Vec<RuleError>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(index: &'a LineIndex<'a>, fallback: usize) -> Self {
        Sink {
            index,
            fallback,
            rule_id: None,
            errors: Vec::new(),
        }
    }

    pub(crate) fn at(&mut self, span: Range<usize>, kind: RuleErrorKind) {
        let location = self.index.locate(span.start);
        self.push(location, kind);
    }

    pub(crate) fn here(&mut self, kind: RuleErrorKind) {
        let location = self.index.locate(self.fallback);
        self.push(location, kind);
    }

    pub(crate) fn locate(&self, offset: usize) -> Location {
        self.index.locate(offset)
    }

    fn push(&mut self, location: Location, kind: RuleErrorKind) {
        let rule_id = self.rule_id.clone();
        self.errors.push(RuleError {
            location,
            rule_id,
            kind,
        });
    }
}

/// Don't act again for the same key within `duration_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cooldown {
    pub duration_ms: u64,
    pub per: KeyKind,
}

/// At most `count` executions of the rule per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub count: u64,
    pub window_ms: u64,
}

/// One checked rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    pub description: String,
    pub priority: i64,
    pub enabled: bool,
    pub dry_run: bool,
    pub stop: bool,
    pub respect_suppression: bool,
    pub version: String,
    pub when: When,
    pub actions: Vec<Action>,
    pub cooldown: Option<Cooldown>,
    pub limit: Option<Limit>,
    pub location: Location,
}

/// Checks one rule; its errors go to `sink` (whose `rule_id` this sets).
pub(crate) fn compile_rule(
    raw: &RawRule,
    templates: &mut Templates,
    env: &cel::Env,
    sink: &mut Sink<'_>,
) -> Option<Rule> {
    let id = raw.id.get_ref().clone();
    sink.rule_id = Some(id.clone());
    if !valid_id(&id) {
        sink.at(raw.id.span(), RuleErrorKind::InvalidId(id.clone()));
    }
    let when = when::compile(&raw.when, "when", env, sink);
    if raw.then.is_empty() {
        sink.here(RuleErrorKind::Invalid(
            "a rule needs at least one action (`[[rule.then]]`)".into(),
        ));
    }
    let mut actions = Vec::new();
    for (index, action) in raw.then.iter().enumerate() {
        if let Some(action) =
            Action::compile(action, &format!("{id}/{index}"), templates, env, sink)
        {
            actions.push(action);
        }
    }
    let duration =
        |text: &toml::Spanned<String>, sink: &mut Sink<'_>| match parse_duration_ms(text.get_ref())
        {
            Some(ms) if ms > 0 => ms,
            _ => {
                sink.at(
                    text.span(),
                    RuleErrorKind::InvalidDuration(text.get_ref().clone()),
                );
                0
            }
        };
    let cooldown = raw.cooldown.as_ref().map(|c| Cooldown {
        duration_ms: duration(&c.duration, sink),
        per: c.per,
    });
    let limit = raw.limit.as_ref().map(|l| {
        if *l.count.get_ref() == 0 {
            sink.at(
                l.count.span(),
                RuleErrorKind::Invalid("limit count must be at least 1".into()),
            );
        }
        Limit {
            count: *l.count.get_ref(),
            window_ms: duration(&l.window, sink),
        }
    });
    let version = match &raw.version {
        Some(RawVersion::Number(n)) => n.to_string(),
        Some(RawVersion::Text(text)) => text.clone(),
        None => content_hash(raw),
    };
    if !sink.errors.is_empty() {
        return None;
    }
    Some(Rule {
        id,
        description: raw.description.clone(),
        priority: raw.priority,
        enabled: raw.enabled,
        dry_run: raw.dry_run,
        stop: raw.stop,
        respect_suppression: raw.respect_suppression,
        version,
        when: when?,
        actions,
        cooldown,
        limit,
        location: sink.locate(raw.id.span().start),
    })
}

/// Rule ids go into storage keys, idempotency keys and metric labels: keep them plain.
fn valid_id(id: &str) -> bool {
    (1..=100).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The first 12 hex digits of the SHA-256 of the rule's content as canonical JSON.
fn content_hash(raw: &RawRule) -> String {
    let json = serde_json::to_vec(raw).unwrap_or_default();
    let digest = Sha256::digest(&json);
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use crate::load;

    const RULE: &str = "[[rule]]\nid = \"a\"\n[rule.when]\ntags = [\"x\"]\n[[rule.then]]\naction = \"score\"\nadd = 1.0\n";

    fn version(text: &str) -> String {
        load(text).unwrap().rules()[0].version.clone()
    }

    #[test]
    fn derived_version_follows_content_not_layout() {
        let base = version(RULE);
        assert_eq!(base.len(), 12);
        let relaid = format!("# a comment\n\n{}", RULE.replace("tags = ", "tags    =   "));
        assert_eq!(version(&relaid), base);
        assert_ne!(version(&RULE.replace("1.0", "2.0")), base);
    }

    #[test]
    fn an_explicit_version_wins() {
        assert_eq!(
            version(&RULE.replace("id = \"a\"", "id = \"a\"\nversion = 7")),
            "7"
        );
        assert_eq!(
            version(&RULE.replace("id = \"a\"", "id = \"a\"\nversion = \"2026-12\"")),
            "2026-12"
        );
    }
}
