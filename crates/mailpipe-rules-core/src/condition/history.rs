//! The `history` condition: one figure of the recipient's (or their domain's) engagement
//! history, as `email_events` holds it (`mailpipe_insight::history::METRICS`), against
//! bounds. The stage reads the history from ClickHouse (cached); this crate only compares
//! the value it is handed. A figure can be absent (an open rate with nothing delivered,
//! days since an open that never happened): the condition is then `if_absent` (default
//! false). An event without a recipient (or domain) has no history: false.

use super::EvalContext;
use crate::state::{KeyKind, Lookup};

/// `at_least <= metric < below` over the history of `per` (recipient or domain).
#[derive(Debug, Clone)]
pub(crate) struct HistoryBound {
    pub per: KeyKind,
    pub metric: String,
    pub at_least: Option<f64>,
    pub below: Option<f64>,
    pub if_absent: bool,
}

impl HistoryBound {
    pub(crate) fn lookup(&self, ctx: &EvalContext<'_>) -> Option<Lookup> {
        let key = match self.per {
            KeyKind::Domain => ctx.event.recipient_domain.clone()?,
            _ => ctx.event.recipient.clone()?,
        };
        Some(Lookup::History {
            per: self.per,
            key,
            metric: self.metric.clone(),
        })
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let Some(lookup) = self.lookup(ctx) else {
            return (
                false,
                ctx.detail(|| format!("event has no {}", self.per.as_str())),
            );
        };
        let Some(answer) = ctx.state.get(&lookup) else {
            return (false, ctx.detail(|| "state not fetched".into()));
        };
        let Some(value) = ctx.state.score(&lookup) else {
            // Absent (Answer::Missing): the figure has no value for this history.
            let detail = ctx.detail(|| {
                format!(
                    "{} of the {} has no value ({answer:?}); if_absent = {}",
                    self.metric,
                    self.per.as_str(),
                    self.if_absent
                )
            });
            return (self.if_absent, detail);
        };
        let passed = self.at_least.is_none_or(|low| value >= low)
            && self.below.is_none_or(|high| value < high);
        let detail = ctx.detail(|| {
            let low = self
                .at_least
                .map_or(String::new(), |l| format!(" at least {l}"));
            let high = self.below.map_or(String::new(), |h| format!(" below {h}"));
            format!(
                "{} of the {} is {value} (want{low}{high})",
                self.metric,
                self.per.as_str()
            )
        });
        (passed, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_for, context_with_state, event};
    use crate::state::{Answer, StateSnapshot};
    use mailpipe_model::EventType;

    fn bound(per: KeyKind, at_least: Option<f64>, below: Option<f64>) -> HistoryBound {
        HistoryBound {
            per,
            metric: "human_opens_30d".into(),
            at_least,
            below,
            if_absent: false,
        }
    }

    #[test]
    fn compares_the_recipients_or_the_domains_figure() {
        let e = event(EventType::Delivered);
        let by_recipient = Lookup::History {
            per: KeyKind::Recipient,
            key: "ann@example.org".into(),
            metric: "human_opens_30d".into(),
        };
        let by_domain = Lookup::History {
            per: KeyKind::Domain,
            key: "example.org".into(),
            metric: "human_opens_30d".into(),
        };
        let state: StateSnapshot = [
            (by_recipient, Answer::Score(0.0)),
            (by_domain, Answer::Score(120.0)),
        ]
        .into_iter()
        .collect();
        let ctx = context_with_state(&e, &state);
        assert!(bound(KeyKind::Recipient, None, Some(1.0)).evaluate(&ctx).0);
        assert!(!bound(KeyKind::Recipient, Some(1.0), None).evaluate(&ctx).0);
        let (passed, detail) = bound(KeyKind::Domain, Some(100.0), None).evaluate(&ctx);
        assert!(passed);
        assert_eq!(
            detail,
            "human_opens_30d of the domain is 120 (want at least 100)"
        );
    }

    #[test]
    fn absent_figures_and_missing_state() {
        let e = event(EventType::Delivered);
        let lookup = Lookup::History {
            per: KeyKind::Recipient,
            key: "ann@example.org".into(),
            metric: "human_opens_30d".into(),
        };
        let state: StateSnapshot = [(lookup, Answer::Missing)].into_iter().collect();
        let ctx = context_with_state(&e, &state);
        let mut b = bound(KeyKind::Recipient, Some(1.0), None);
        assert!(!b.evaluate(&ctx).0);
        b.if_absent = true;
        assert!(b.evaluate(&ctx).0);
        let (passed, detail) = b.evaluate(&context_for(&e));
        assert!(!passed);
        assert_eq!(detail, "state not fetched");
        let mut nobody = e.clone();
        nobody.recipient = None;
        assert!(!b.evaluate(&context_for(&nobody)).0);
    }
}
