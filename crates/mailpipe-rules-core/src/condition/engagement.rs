//! Engagement conditions: the recipient's score against a bound, and segment membership.
//!
//! Both read state the stage keeps (the score decays or is windowed there; this crate only
//! compares the value it is handed). An event without a recipient has neither, so both are
//! false for it.

use super::EvalContext;
use crate::state::Lookup;

/// The recipient is (or is not) in the named segment.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub name: String,
    pub member: bool,
}

impl Segment {
    pub(crate) fn lookup(&self, ctx: &EvalContext<'_>) -> Option<Lookup> {
        Some(Lookup::Segment {
            name: self.name.clone(),
            recipient: ctx.event.recipient.clone()?,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let Some(lookup) = self.lookup(ctx) else {
            return (false, ctx.detail(|| "event has no recipient".into()));
        };
        match ctx.state.flag(&lookup) {
            Some(is_member) => {
                let detail = ctx.detail(|| {
                    let verb = if is_member { "is" } else { "is not" };
                    format!("recipient {verb} in segment {}", self.name)
                });
                (is_member == self.member, detail)
            }
            None => (false, ctx.detail(|| "state not fetched".into())),
        }
    }
}

/// `at_least <= score < below`, each bound optional (at least one is set).
#[derive(Debug, Clone)]
pub(crate) struct ScoreBound {
    pub at_least: Option<f64>,
    pub below: Option<f64>,
}

impl ScoreBound {
    pub(crate) fn lookup(&self, ctx: &EvalContext<'_>) -> Option<Lookup> {
        Some(Lookup::Score {
            recipient: ctx.event.recipient.clone()?,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let Some(lookup) = self.lookup(ctx) else {
            return (false, ctx.detail(|| "event has no recipient".into()));
        };
        let Some(score) = ctx.state.score(&lookup) else {
            return (false, ctx.detail(|| "state not fetched".into()));
        };
        let passed = self.at_least.is_none_or(|low| score >= low)
            && self.below.is_none_or(|high| score < high);
        let detail = ctx.detail(|| {
            let low = self
                .at_least
                .map_or(String::new(), |l| format!(" at least {l}"));
            let high = self.below.map_or(String::new(), |h| format!(" below {h}"));
            format!("score {score} (want{low}{high})")
        });
        (passed, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_with_state, event};
    use crate::state::{Answer, StateSnapshot};
    use mailpipe_model::EventType;

    #[test]
    fn score_bounds_are_half_open() {
        let e = event(EventType::Opened);
        let recipient = e.recipient.clone().unwrap();
        let state: StateSnapshot = [(Lookup::Score { recipient }, Answer::Score(10.0))]
            .into_iter()
            .collect();
        let ctx = context_with_state(&e, &state);
        let bound = |at_least, below| ScoreBound { at_least, below }.evaluate(&ctx).0;
        assert!(bound(Some(10.0), None));
        assert!(!bound(None, Some(10.0)));
        assert!(bound(Some(5.0), Some(10.5)));
        assert!(!bound(Some(11.0), None));
    }

    #[test]
    fn segment_membership_and_missing_state() {
        let e = event(EventType::Clicked);
        let recipient = e.recipient.clone().unwrap();
        let lookup = Lookup::Segment {
            name: "vip".into(),
            recipient,
        };
        let state: StateSnapshot = [(lookup, Answer::Flag(true))].into_iter().collect();
        let ctx = context_with_state(&e, &state);
        let seg = |name: &str, member| {
            Segment {
                name: name.into(),
                member,
            }
            .evaluate(&ctx)
        };
        assert!(seg("vip", true).0);
        assert!(!seg("vip", false).0);
        let (passed, detail) = seg("other", true);
        assert!(!passed);
        assert_eq!(detail, "state not fetched");
    }
}
