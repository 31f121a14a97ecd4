//! Conditions on the event's own fields: event type, provider, source, campaign, bounce
//! class, reject reason (each "one of these values"), tags ("carries one of these") and
//! metadata ("has all these key/value pairs").
//!
//! Enum values are compared by their schema symbols, fixed at load time, so evaluation is a
//! string comparison and never allocates.

use std::collections::BTreeMap;

use mailpipe_model::EmailEvent;

use super::EvalContext;

/// Which single-valued field of the event a [`OneOf`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    EventType,
    Provider,
    Source,
    CampaignId,
    BounceClass,
    RejectReason,
}

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::EventType => "event_types",
            Field::Provider => "providers",
            Field::Source => "sources",
            Field::CampaignId => "campaign_ids",
            Field::BounceClass => "bounce_classes",
            Field::RejectReason => "reject_reasons",
        }
    }

    fn read(self, event: &EmailEvent) -> Option<&str> {
        match self {
            Field::EventType => Some(event.event_type.as_str()),
            Field::Provider => Some(event.provider.as_str()),
            Field::Source => Some(event.source.as_str()),
            Field::CampaignId => event.campaign_id.as_deref(),
            Field::BounceClass => event.bounce_class.map(|c| c.as_str()),
            Field::RejectReason => event.reject_reason.map(|r| r.as_str()),
        }
    }
}

/// The field's value is one of `values`.
#[derive(Debug, Clone)]
pub(crate) struct OneOf {
    pub field: Field,
    pub values: Vec<String>,
}

impl OneOf {
    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let value = self.field.read(ctx.event);
        let passed = value.is_some_and(|v| self.values.iter().any(|w| w == v));
        let detail = ctx.detail(|| {
            format!(
                "{} is {} (want one of {})",
                self.field.name(),
                value.unwrap_or("absent"),
                self.values.join(", ")
            )
        });
        (passed, detail)
    }
}

/// The event carries at least one of these tags.
#[derive(Debug, Clone)]
pub(crate) struct AnyTag {
    pub tags: Vec<String>,
}

impl AnyTag {
    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let found = ctx.event.tags.iter().find(|t| self.tags.contains(t));
        let detail = ctx.detail(|| match found {
            Some(tag) => format!("tag {tag} present"),
            None => format!("none of the tags {} present", self.tags.join(", ")),
        });
        (found.is_some(), detail)
    }
}

/// Every pair is in the event's metadata with exactly this value.
#[derive(Debug, Clone)]
pub(crate) struct MetadataEquals {
    pub pairs: BTreeMap<String, String>,
}

impl MetadataEquals {
    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let mismatch = self
            .pairs
            .iter()
            .find(|(k, v)| ctx.event.metadata.get(*k) != Some(*v));
        let detail = ctx.detail(|| match mismatch {
            None => "metadata has every pair".to_string(),
            Some((key, want)) => match ctx.event.metadata.get(key) {
                Some(got) => format!("metadata {key} is {got:?}, not {want:?}"),
                None => format!("metadata has no {key}"),
            },
        });
        (mismatch.is_none(), detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_for, event};
    use mailpipe_model::{BounceClass, EventType};

    #[test]
    fn one_of_reads_each_field() {
        let mut e = event(EventType::Bounced);
        e.bounce_class = Some(BounceClass::Soft);
        let check = |field, values: &[&str]| {
            let c = OneOf {
                field,
                values: values.iter().map(|s| s.to_string()).collect(),
            };
            c.evaluate(&context_for(&e)).0
        };
        assert!(check(Field::EventType, &["delivered", "bounced"]));
        assert!(!check(Field::EventType, &["delivered"]));
        assert!(check(Field::Provider, &["sendgrid"]));
        assert!(check(Field::Source, &["main"]));
        assert!(check(Field::CampaignId, &["spring"]));
        assert!(check(Field::BounceClass, &["soft"]));
        // An absent field matches nothing.
        assert!(!check(Field::RejectReason, &["other"]));
    }

    #[test]
    fn tags_and_metadata() {
        let e = event(EventType::Opened);
        let ctx = context_for(&e);
        let tags = |t: &[&str]| AnyTag {
            tags: t.iter().map(|s| s.to_string()).collect(),
        };
        assert!(tags(&["x", "welcome"]).evaluate(&ctx).0);
        assert!(!tags(&["x"]).evaluate(&ctx).0);
        let meta = |pairs: &[(&str, &str)]| MetadataEquals {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(meta(&[("plan", "pro")]).evaluate(&ctx).0);
        let (passed, detail) = meta(&[("plan", "pro"), ("team", "a")]).evaluate(&ctx);
        assert!(!passed);
        assert_eq!(detail, "metadata has no team");
    }
}
