//! Conditions over sliding windows: thresholds ("≥ 3 soft bounces per recipient within
//! 72 h") and rates ("complaints / delivered above 0.3 % per campaign within 1 h, with at
//! least 1,000 delivered").
//!
//! The counting itself is the stage's (atomic, shared across replicas): these types only
//! say which counter and window they need ([`Lookup::Count`]) and decide, purely, from the
//! counts they are handed. A window is `(until - within, until]`, `until` being the event's
//! time (or the due time, for a delayed action's guard).

use std::collections::BTreeSet;

use mailpipe_model::{BounceClass, EmailEvent, EventType};

use super::EvalContext;
use crate::state::{CounterKey, KeyKind, Lookup};

/// A set of events counted per key: which types (and bounce classes, if any) count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CounterDef {
    pub events: BTreeSet<EventType>,
    /// Empty: any class (or none).
    pub bounce_classes: BTreeSet<BounceClass>,
    pub per: KeyKind,
    /// [`CounterDef::name`], built once (every plan and evaluation asks for it).
    name: String,
}

impl CounterDef {
    pub(crate) fn new(
        events: BTreeSet<EventType>,
        bounce_classes: BTreeSet<BounceClass>,
        per: KeyKind,
    ) -> CounterDef {
        let events_part: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        let mut name = events_part.join("+");
        if !bounce_classes.is_empty() {
            let classes: Vec<&str> = bounce_classes.iter().map(|c| c.as_str()).collect();
            name = format!("{name}:{}", classes.join("+"));
        }
        let name = format!("{name}/{}", per.as_str());
        CounterDef {
            events,
            bounce_classes,
            per,
            name,
        }
    }

    /// Stable name, e.g. `bounced:soft/recipient`; the same events per the same key share it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether `event` is one this counter counts.
    pub(crate) fn counts(&self, event: &EmailEvent) -> bool {
        self.events.contains(&event.event_type)
            && (self.bounce_classes.is_empty()
                || event
                    .bounce_class
                    .is_some_and(|c| self.bounce_classes.contains(&c)))
    }

    pub(crate) fn key_for(&self, event: &EmailEvent) -> Option<CounterKey> {
        Some(CounterKey {
            counter: self.name.clone(),
            per: self.per,
            value: key_value(event, self.per)?,
        })
    }

    fn lookup(&self, ctx: &EvalContext<'_>, within_ms: u64) -> Option<Lookup> {
        Some(Lookup::Count {
            key: self.key_for(ctx.event)?,
            from_ms: ctx.until_ms.saturating_sub(within_ms as i64),
            until_ms: ctx.until_ms,
        })
    }
}

/// The event's value of a key kind; `None` when the event has none (no recipient, …).
pub(crate) fn key_value(event: &EmailEvent, kind: KeyKind) -> Option<String> {
    match kind {
        KeyKind::Recipient => event.recipient.clone(),
        KeyKind::Domain => event.recipient_domain.clone(),
        KeyKind::Campaign => event.campaign_id.clone(),
        KeyKind::Source => Some(event.source.clone()),
        KeyKind::Provider => Some(event.provider.as_str().to_string()),
    }
}

/// `at_least <= count <= at_most` over the window (at least one bound set).
#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    pub counter: CounterDef,
    pub within_ms: u64,
    pub at_least: Option<u64>,
    pub at_most: Option<u64>,
}

impl Threshold {
    pub(crate) fn lookups(&self, ctx: &EvalContext<'_>) -> Vec<Lookup> {
        self.counter
            .lookup(ctx, self.within_ms)
            .into_iter()
            .collect()
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let Some(lookup) = self.counter.lookup(ctx, self.within_ms) else {
            return (
                false,
                ctx.detail(|| format!("event has no {}", self.counter.per.as_str())),
            );
        };
        let Some(count) = ctx.state.count(&lookup) else {
            return (false, ctx.detail(|| "state not fetched".into()));
        };
        let passed =
            self.at_least.is_none_or(|n| count >= n) && self.at_most.is_none_or(|n| count <= n);
        let detail = ctx.detail(|| {
            let within = crate::duration::format_duration_ms(self.within_ms);
            format!("{count} {} within {within}", self.counter.name())
        });
        (passed, detail)
    }
}

/// `numerator / denominator` (in percent) above and/or below bounds, decided only once the
/// denominator reaches `min_denominator` (too few events say nothing).
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    pub numerator: CounterDef,
    pub denominator: CounterDef,
    pub within_ms: u64,
    pub above_percent: Option<f64>,
    pub below_percent: Option<f64>,
    pub min_denominator: u64,
}

impl Rate {
    pub(crate) fn lookups(&self, ctx: &EvalContext<'_>) -> Vec<Lookup> {
        let numerator = self.numerator.lookup(ctx, self.within_ms);
        let denominator = self.denominator.lookup(ctx, self.within_ms);
        numerator.into_iter().chain(denominator).collect()
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let lookups = self.lookups(ctx);
        let [numerator, denominator] = &lookups[..] else {
            return (
                false,
                ctx.detail(|| format!("event has no {}", self.numerator.per.as_str())),
            );
        };
        let (Some(num), Some(den)) = (ctx.state.count(numerator), ctx.state.count(denominator))
        else {
            return (false, ctx.detail(|| "state not fetched".into()));
        };
        let passed = rate_passes(num, den, self);
        let detail = ctx.detail(|| {
            let percent = if den == 0 {
                0.0
            } else {
                num as f64 * 100.0 / den as f64
            };
            format!(
                "{num} {} / {den} {} = {percent:.3}% (minimum {} {})",
                self.numerator.name(),
                self.denominator.name(),
                self.min_denominator,
                self.denominator.name()
            )
        });
        (passed, detail)
    }
}

/// The pure decision of a rate, given the two counts.
pub(crate) fn rate_passes(num: u64, den: u64, rate: &Rate) -> bool {
    if den == 0 || den < rate.min_denominator {
        return false;
    }
    let percent = num as f64 * 100.0 / den as f64;
    rate.above_percent.is_none_or(|p| percent > p) && rate.below_percent.is_none_or(|p| percent < p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(events: &[EventType], classes: &[BounceClass], per: KeyKind) -> CounterDef {
        CounterDef::new(
            events.iter().copied().collect(),
            classes.iter().copied().collect(),
            per,
        )
    }

    #[test]
    fn counter_names_and_membership() {
        let soft = def(
            &[EventType::Bounced],
            &[BounceClass::Soft],
            KeyKind::Recipient,
        );
        assert_eq!(soft.name(), "bounced:soft/recipient");
        let mut e = crate::condition::test_support::event(EventType::Bounced);
        assert!(!soft.counts(&e));
        e.bounce_class = Some(BounceClass::Soft);
        assert!(soft.counts(&e));
        let both = def(
            &[EventType::Delivered, EventType::Bounced],
            &[],
            KeyKind::Campaign,
        );
        assert_eq!(both.name(), "bounced+delivered/campaign");
        assert_eq!(both.key_for(&e).unwrap().value, "spring");
    }

    #[test]
    fn rate_needs_enough_events_and_compares_strictly() {
        let rate = Rate {
            numerator: def(&[EventType::Complained], &[], KeyKind::Campaign),
            denominator: def(&[EventType::Delivered], &[], KeyKind::Campaign),
            within_ms: 3_600_000,
            above_percent: Some(0.3),
            below_percent: None,
            min_denominator: 1000,
        };
        assert!(!rate_passes(10, 999, &rate), "too few delivered");
        assert!(rate_passes(4, 1000, &rate), "0.4% > 0.3%");
        assert!(!rate_passes(3, 1000, &rate), "0.3% is not above 0.3%");
        assert!(!rate_passes(0, 0, &rate));
    }
}
