//! Conditions: one small type per kind, each with `evaluate`, and the context they read.
//!
//! A condition is either stateless (it reads only the event) or stateful (it needs a
//! [`Lookup`] answered by the stage). `when` lists stateless ones first, so most events are
//! decided before any state is needed and the stage is asked for nothing.

mod check;
pub(crate) mod counting;
pub(crate) mod engagement;
pub(crate) mod expression;
pub(crate) mod fields;
pub(crate) mod history;
pub(crate) mod pattern;
pub(crate) mod time_window;
pub(crate) mod when;

use std::sync::Arc;

use mailpipe_model::EmailEvent;

use crate::state::{Lookup, StateSnapshot};
use crate::vars::EventVars;

/// One checked condition.
#[derive(Debug)]
pub(crate) enum Condition {
    OneOf(fields::OneOf),
    AnyTag(fields::AnyTag),
    Metadata(fields::MetadataEquals),
    Pattern(pattern::Pattern),
    TimeWindow(time_window::TimeWindow),
    Expression(expression::Expression),
    Segment(engagement::Segment),
    Score(engagement::ScoreBound),
    History(history::HistoryBound),
    Threshold(counting::Threshold),
    Rate(counting::Rate),
}

impl Condition {
    /// The key it was written under in `when`, for explanations.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Condition::OneOf(c) => c.field.name(),
            Condition::AnyTag(_) => "tags",
            Condition::Metadata(_) => "metadata",
            Condition::Pattern(c) => c.target.name(),
            Condition::TimeWindow(_) => "time_window",
            Condition::Expression(_) => "expression",
            Condition::Segment(s) if s.member => "in_segment",
            Condition::Segment(_) => "not_in_segment",
            Condition::Score(_) => "score",
            Condition::History(_) => "history",
            Condition::Threshold(_) => "threshold",
            Condition::Rate(_) => "rate",
        }
    }

    pub(crate) fn is_stateful(&self) -> bool {
        matches!(
            self,
            Condition::Segment(_)
                | Condition::Score(_)
                | Condition::History(_)
                | Condition::Threshold(_)
                | Condition::Rate(_)
        )
    }

    /// The state this condition needs for this event (none for stateless ones).
    pub(crate) fn lookups(&self, ctx: &EvalContext<'_>) -> Vec<Lookup> {
        match self {
            Condition::Segment(c) => c.lookup(ctx).into_iter().collect(),
            Condition::Score(c) => c.lookup(ctx).into_iter().collect(),
            Condition::History(c) => c.lookup(ctx).into_iter().collect(),
            Condition::Threshold(c) => c.lookups(ctx),
            Condition::Rate(c) => c.lookups(ctx),
            _ => Vec::new(),
        }
    }

    /// Whether it holds, and (when explaining) why.
    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        match self {
            Condition::OneOf(c) => c.evaluate(ctx),
            Condition::AnyTag(c) => c.evaluate(ctx),
            Condition::Metadata(c) => c.evaluate(ctx),
            Condition::Pattern(c) => c.evaluate(ctx),
            Condition::TimeWindow(c) => c.evaluate(ctx),
            Condition::Expression(c) => c.evaluate(ctx),
            Condition::Segment(c) => c.evaluate(ctx),
            Condition::Score(c) => c.evaluate(ctx),
            Condition::History(c) => c.evaluate(ctx),
            Condition::Threshold(c) => c.evaluate(ctx),
            Condition::Rate(c) => c.evaluate(ctx),
        }
    }
}

/// What conditions read for one event: the event, the end of counting windows, the state
/// snapshot, and the event's variables for CEL expressions (resolved as they are read).
pub(crate) struct EvalContext<'a> {
    pub event: &'a EmailEvent,
    /// End of sliding windows: the event's time, or a delayed action's due time.
    pub until_ms: i64,
    pub state: &'a StateSnapshot,
    /// Whether to write explanations (off on the stage's hot path).
    pub explain: bool,
    cel_env: &'a Arc<cel::Env>,
    vars: EventVars<'a>,
}

impl<'a> EvalContext<'a> {
    pub(crate) fn new(
        event: &'a EmailEvent,
        until_ms: i64,
        state: &'a StateSnapshot,
        explain: bool,
        cel_env: &'a Arc<cel::Env>,
    ) -> Self {
        EvalContext {
            event,
            until_ms,
            state,
            explain,
            cel_env,
            vars: EventVars::of(event),
        }
    }

    /// The explanation, computed only when explaining.
    pub(crate) fn detail(&self, text: impl FnOnce() -> String) -> String {
        if self.explain {
            text()
        } else {
            String::new()
        }
    }

    /// A CEL context over the event's fields.
    pub(crate) fn cel_context(&self) -> cel::Context<'_, '_> {
        let mut context = cel::Context::with_env(Arc::clone(self.cel_env));
        context.set_variable_resolver(&self.vars);
        context
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A typical event and contexts over it, for the conditions' unit tests.
    use std::sync::{Arc, OnceLock};

    use mailpipe_model::{EmailEvent, EventType, Provider};

    use super::EvalContext;
    use crate::state::StateSnapshot;

    pub(crate) fn event(event_type: EventType) -> EmailEvent {
        let mut event = crate::vars::sample_event(&["plan".to_string()]);
        event.event_type = event_type;
        event.provider = Provider::Sendgrid;
        event.source = "main".into();
        event.recipient = Some("ann@example.org".into());
        event.recipient_domain = Some("example.org".into());
        event.campaign_id = Some("spring".into());
        event.tags = vec!["welcome".into()];
        event.metadata.insert("plan".into(), "pro".into());
        event.geo = None;
        event
    }

    fn env() -> &'static Arc<cel::Env> {
        static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
        ENV.get_or_init(super::expression::environment)
    }

    pub(crate) fn context_for(event: &EmailEvent) -> EvalContext<'_> {
        static EMPTY: OnceLock<StateSnapshot> = OnceLock::new();
        context_with_state(event, EMPTY.get_or_init(StateSnapshot::new))
    }

    pub(crate) fn context_with_state<'a>(
        event: &'a EmailEvent,
        state: &'a StateSnapshot,
    ) -> EvalContext<'a> {
        EvalContext::new(event, crate::vars::event_time_ms(event), state, true, env())
    }
}
