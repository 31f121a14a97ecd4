//! Checking a `when` (or `guard`) table at load: each key becomes one condition, in the
//! evaluation order [`When`] relies on (stateless first), and the match mode is validated
//! against the number of conditions.

use std::collections::BTreeSet;

use super::counting::{CounterDef, Rate, Threshold};
use super::engagement::{ScoreBound, Segment};
use super::expression::Expression;
use super::fields::{AnyTag, Field, MetadataEquals, OneOf};
use super::history::HistoryBound;
use super::pattern::{Pattern, Target};
use super::time_window::TimeWindow;
use super::when::When;
use super::Condition;
use crate::compile::Sink;
use crate::error::RuleErrorKind;
use crate::file::{RawMatch, RawWhen};

/// Checks a `when` table; `what` names it in messages (`when`, `guard`).
pub(crate) fn compile(
    raw: &RawWhen,
    what: &str,
    env: &cel::Env,
    sink: &mut Sink<'_>,
) -> Option<When> {
    let errors_before = sink.errors.len();
    let mut conditions = Vec::new();
    let mut one_of = |field: Field,
                      values: Option<Vec<String>>,
                      span: std::ops::Range<usize>,
                      sink: &mut Sink<'_>| {
        if let Some(values) = values {
            if values.is_empty() {
                sink.at(
                    span,
                    RuleErrorKind::Invalid(format!("{} is empty", field.name())),
                );
            }
            conditions.push(Condition::OneOf(OneOf { field, values }));
        }
    };
    macro_rules! symbols {
        ($field:expr, $raw:expr) => {
            if let Some(list) = &$raw {
                let values = list
                    .get_ref()
                    .iter()
                    .map(|v| v.as_str().to_string())
                    .collect();
                one_of($field, Some(values), list.span(), sink);
            }
        };
    }
    symbols!(Field::EventType, raw.event_types);
    symbols!(Field::Provider, raw.providers);
    symbols!(Field::Source, raw.sources);
    symbols!(Field::CampaignId, raw.campaign_ids);
    symbols!(Field::BounceClass, raw.bounce_classes);
    symbols!(Field::RejectReason, raw.reject_reasons);
    if let Some(tags) = &raw.tags {
        if tags.get_ref().is_empty() {
            sink.at(tags.span(), RuleErrorKind::Invalid("tags is empty".into()));
        }
        conditions.push(Condition::AnyTag(AnyTag {
            tags: tags.get_ref().clone(),
        }));
    }
    if let Some(pairs) = &raw.metadata {
        if pairs.is_empty() {
            sink.here(RuleErrorKind::Invalid("metadata is empty".into()));
        }
        conditions.push(Condition::Metadata(MetadataEquals {
            pairs: pairs.clone(),
        }));
    }
    let patterns = [
        (Target::Recipient, &raw.recipient_matches),
        (Target::RecipientDomain, &raw.recipient_domain_matches),
    ];
    for (target, list) in patterns {
        if let Some(pattern) = list
            .as_ref()
            .and_then(|l| Pattern::compile(target, l, sink))
        {
            conditions.push(Condition::Pattern(pattern));
        }
    }
    if let Some(window) = raw
        .time_window
        .as_ref()
        .and_then(|w| TimeWindow::compile(w, sink))
    {
        conditions.push(Condition::TimeWindow(window));
    }
    if let Some(expression) = raw
        .expression
        .as_ref()
        .and_then(|e| Expression::compile(e, env, sink))
    {
        conditions.push(Condition::Expression(expression));
    }
    // Stateful conditions last (see the module doc).
    for (name, member) in [(&raw.in_segment, true), (&raw.not_in_segment, false)] {
        if let Some(name) = name {
            conditions.push(Condition::Segment(Segment {
                name: name.clone(),
                member,
            }));
        }
    }
    if let Some(score) = &raw.score {
        if score.at_least.is_none() && score.below.is_none() {
            sink.here(RuleErrorKind::Invalid(
                "score needs at_least or below".into(),
            ));
        }
        if [score.at_least, score.below]
            .iter()
            .flatten()
            .any(|b| !b.is_finite())
        {
            sink.here(RuleErrorKind::Invalid(
                "score bounds must be finite numbers".into(),
            ));
        }
        conditions.push(Condition::Score(ScoreBound {
            at_least: score.at_least,
            below: score.below,
        }));
    }
    if let Some(history) = raw.history.as_ref().and_then(|h| compile_history(h, sink)) {
        conditions.push(Condition::History(history));
    }
    if let Some(threshold) = raw
        .threshold
        .as_ref()
        .and_then(|t| compile_threshold(t, sink))
    {
        conditions.push(Condition::Threshold(threshold));
    }
    if let Some(rate) = raw.rate.as_ref().and_then(|r| compile_rate(r, sink)) {
        conditions.push(Condition::Rate(rate));
    }
    let needed = match (raw.mode, &raw.at_least) {
        (Some(_), Some(at_least)) => {
            sink.at(
                at_least.span(),
                RuleErrorKind::Invalid(format!("{what}: set `match` or `at_least`, not both")),
            );
            return None;
        }
        (Some(RawMatch::Any), None) => 1,
        (Some(RawMatch::All) | None, None) => conditions.len(),
        (None, Some(at_least)) => {
            let n = *at_least.get_ref() as usize;
            if n == 0 || n > conditions.len() {
                let message = format!(
                    "{what}: at_least = {n} but it has {} conditions",
                    conditions.len()
                );
                sink.at(at_least.span(), RuleErrorKind::Invalid(message));
            }
            n
        }
    };
    if conditions.is_empty() && sink.errors.len() == errors_before {
        sink.here(RuleErrorKind::Invalid(format!("{what} has no conditions")));
    }
    (sink.errors.len() == errors_before).then_some(When { conditions, needed })
}

fn compile_history(raw: &crate::file::RawHistory, sink: &mut Sink<'_>) -> Option<HistoryBound> {
    use crate::state::KeyKind;
    let errors_before = sink.errors.len();
    let per = match &raw.of {
        None => KeyKind::Recipient,
        Some(of) => match of.get_ref() {
            KeyKind::Recipient | KeyKind::Domain => *of.get_ref(),
            other => {
                sink.at(
                    of.span(),
                    RuleErrorKind::Invalid(format!(
                        "history of `{}`: only recipient or domain histories are kept",
                        other.as_str()
                    )),
                );
                KeyKind::Recipient
            }
        },
    };
    let metric = raw.metric.get_ref();
    if !mailpipe_insight::history::EngagementHistory::is_metric(metric) {
        let known: Vec<&str> = mailpipe_insight::history::METRICS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        sink.at(
            raw.metric.span(),
            RuleErrorKind::Invalid(format!(
                "unknown history metric `{metric}` (one of: {})",
                known.join(", ")
            )),
        );
    }
    if raw.at_least.is_none() && raw.below.is_none() {
        sink.here(RuleErrorKind::Invalid(
            "history needs at_least or below".into(),
        ));
    }
    if [raw.at_least, raw.below]
        .iter()
        .flatten()
        .any(|b| !b.is_finite())
    {
        sink.here(RuleErrorKind::Invalid(
            "history bounds must be finite numbers".into(),
        ));
    }
    (sink.errors.len() == errors_before).then(|| HistoryBound {
        per,
        metric: metric.clone(),
        at_least: raw.at_least,
        below: raw.below,
        if_absent: raw.if_absent,
    })
}

fn counter_def(
    events: &toml::Spanned<Vec<mailpipe_model::EventType>>,
    classes: &[mailpipe_model::BounceClass],
    per: crate::state::KeyKind,
    sink: &mut Sink<'_>,
) -> CounterDef {
    if events.get_ref().is_empty() {
        sink.at(
            events.span(),
            RuleErrorKind::Invalid("events is empty".into()),
        );
    }
    CounterDef::new(
        events.get_ref().iter().copied().collect(),
        classes.iter().copied().collect::<BTreeSet<_>>(),
        per,
    )
}

fn within(text: &toml::Spanned<String>, sink: &mut Sink<'_>) -> u64 {
    match crate::duration::parse_duration_ms(text.get_ref()) {
        Some(ms) if ms > 0 => ms,
        _ => {
            sink.at(
                text.span(),
                RuleErrorKind::InvalidDuration(text.get_ref().clone()),
            );
            0
        }
    }
}

fn compile_threshold(raw: &crate::file::RawThreshold, sink: &mut Sink<'_>) -> Option<Threshold> {
    let counter = counter_def(&raw.events, &raw.bounce_classes, raw.per, sink);
    let within_ms = within(&raw.within, sink);
    let (at_least, at_most) = (
        raw.at_least.as_ref().map(|n| *n.get_ref()),
        raw.at_most.as_ref().map(|n| *n.get_ref()),
    );
    if at_least.is_none() && at_most.is_none() {
        sink.at(
            raw.within.span(),
            RuleErrorKind::Invalid("threshold needs at_least or at_most".into()),
        );
        return None;
    }
    Some(Threshold {
        counter,
        within_ms,
        at_least,
        at_most,
    })
}

fn compile_rate(raw: &crate::file::RawRate, sink: &mut Sink<'_>) -> Option<Rate> {
    let numerator = counter_def(&raw.numerator, &[], raw.per, sink);
    let denominator = counter_def(&raw.denominator, &[], raw.per, sink);
    let within_ms = within(&raw.within, sink);
    let above_percent = raw.above_percent.as_ref().map(|p| *p.get_ref());
    let below_percent = raw.below_percent.as_ref().map(|p| *p.get_ref());
    if above_percent.is_none() && below_percent.is_none() {
        sink.at(
            raw.within.span(),
            RuleErrorKind::Invalid("rate needs above_percent or below_percent".into()),
        );
        return None;
    }
    let min_denominator = raw.min_denominator.max(1);
    Some(Rate {
        numerator,
        denominator,
        within_ms,
        above_percent,
        below_percent,
        min_denominator,
    })
}
