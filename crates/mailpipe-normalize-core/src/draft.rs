//! Building canonical events: the defaults every provider starts from, recipient address
//! normalization, and the final touches applied to every event in one place.

use mailpipe_model::{EmailEvent, EventType, Provider, RejectReason};

use crate::input::ParseInput;

/// `occurred_at` of an event whose provider gives no time (the epoch; `received_at` says
/// when it arrived).
pub const UNKNOWN_TIME: i64 = 0;

/// A new event of `provider` with everything the request gives: source, receipt time, raw
/// request id, and the provider's original event text. The provider fills in the rest,
/// its event time included; without one, `occurred_at` stays [`UNKNOWN_TIME`].
///
/// Never the receipt time: `occurred_at` is in `email_events`' sorting key and partition,
/// so it must be the same for every copy of the event, whenever each copy arrives (a copy
/// arriving after dedupe's TTL would otherwise be a second row).
pub(crate) fn new_event(
    input: &ParseInput<'_>,
    provider: Provider,
    provider_event: &str,
    raw_event: &str,
) -> EmailEvent {
    EmailEvent {
        event_id: String::new(),
        event_type: EventType::Unknown,
        provider_event: provider_event.to_string(),
        provider,
        source: input.source.to_string(),
        occurred_at: UNKNOWN_TIME,
        received_at: input.received_at_ms,
        recipient: None,
        recipient_domain: None,
        message_id: None,
        campaign_id: None,
        tags: Vec::new(),
        metadata: Default::default(),
        reject_reason: None,
        bounce_class: None,
        url: None,
        user_agent: None,
        ip: None,
        geo: None,
        mta_response: None,
        description: None,
        raw_request_id: input.raw_request_id.to_string(),
        raw_event: raw_event.to_string(),
        client_name: None,
        client_os: None,
        device_class: None,
        machine_open: None,
        machine_reason: None,
        geo_source: None,
    }
}

/// The bare address of `"Name <addr>"` or `"addr"`, trimmed and lower-cased; `None` when
/// nothing is left. Lower-casing the local part too is deliberate: the address is the
/// partition key and the join key across providers, and no ESP we know treats case as
/// significant.
pub(crate) fn address(text: &str) -> Option<String> {
    let text = text.trim();
    let bare = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let mut bare = bare.trim();
    // As `trim_start_matches("mailto:")`, without building a substring searcher per call.
    while let Some(rest) = bare.strip_prefix("mailto:") {
        bare = rest;
    }
    (!bare.is_empty()).then(|| bare.to_lowercase())
}

/// Applied to every event after its provider built it: the recipient normalized and its
/// domain derived; `campaign_id` from the metadata key `campaign_id` when the provider
/// has no campaign field of its own (a convention senders can follow on any ESP); the
/// taxonomy's reject reason where the provider gave none ([`implied_reject_reason`]).
pub(crate) fn finish(event: &mut EmailEvent) {
    if event.reject_reason.is_none() {
        event.reject_reason = implied_reject_reason(event.event_type);
    }
    event.recipient = event.recipient.as_deref().and_then(address);
    event.recipient_domain = event
        .recipient
        .as_deref()
        .and_then(|r| r.rsplit_once('@'))
        .map(|(_, domain)| domain.to_string())
        .filter(|domain| !domain.is_empty());
    if event.campaign_id.is_none() {
        event.campaign_id = event
            .metadata
            .get("campaign_id")
            .filter(|c| !c.is_empty())
            .cloned();
    }
    // A provider's machine-open flag is about opens only; enrichment (the normalize stage)
    // completes the verdict from the user agent.
    if event.event_type != EventType::Opened {
        event.machine_open = None;
    } else if event.machine_open == Some(true) {
        event.machine_reason = Some("provider_flag".to_string());
    }
}

/// The reject reason an event type implies when the provider does not classify it, one
/// rule for every provider (the anymail taxonomy): a complaint is `spam`, an unsubscribe
/// `unsubscribed`, and a bounce, deferral, failure or rejection without a classification
/// `other`. A provider's own classification always wins; other event types have none.
pub fn implied_reject_reason(event_type: EventType) -> Option<RejectReason> {
    match event_type {
        EventType::Complained => Some(RejectReason::Spam),
        EventType::Unsubscribed => Some(RejectReason::Unsubscribed),
        EventType::Bounced | EventType::Deferred | EventType::Failed | EventType::Rejected => {
            Some(RejectReason::Other)
        }
        EventType::Queued
        | EventType::Sent
        | EventType::Delivered
        | EventType::Autoresponded
        | EventType::Opened
        | EventType::Clicked
        | EventType::Subscribed
        | EventType::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclassified_failures_complaints_and_unsubscribes_get_the_taxonomy_reason() {
        use EventType::*;
        let implied: Vec<_> = [
            Complained,
            Unsubscribed,
            Bounced,
            Deferred,
            Failed,
            Rejected,
        ]
        .into_iter()
        .map(implied_reject_reason)
        .collect();
        use RejectReason::{Other, Spam, Unsubscribed as Unsub};
        assert_eq!(
            implied,
            [
                Some(Spam),
                Some(Unsub),
                Some(Other),
                Some(Other),
                Some(Other),
                Some(Other)
            ]
        );
        for t in [
            Queued,
            Sent,
            Delivered,
            Autoresponded,
            Opened,
            Clicked,
            Subscribed,
            Unknown,
        ] {
            assert_eq!(implied_reject_reason(t), None, "{t:?}");
        }
    }

    #[test]
    fn addresses_lose_display_names_and_case() {
        assert_eq!(
            address(" Jane Doe <Jane.Doe@Example.COM> ").as_deref(),
            Some("jane.doe@example.com")
        );
        assert_eq!(
            address("\"a, b\" <x@y.example>").as_deref(),
            Some("x@y.example")
        );
        assert_eq!(address("BOB@x.example").as_deref(), Some("bob@x.example"));
        assert_eq!(address("  "), None);
        assert_eq!(address("<>"), None);
        assert_eq!(
            address("<mailto:mailto:A@b.example>").as_deref(),
            Some("a@b.example")
        );
    }

    #[test]
    fn finish_derives_the_domain_and_falls_back_to_a_metadata_campaign() {
        let input = ParseInput {
            source: "s",
            raw_request_id: "r",
            received_at_ms: 7,
            headers: &[],
            query: "",
            body: b"",
        };
        let mut e = new_event(&input, Provider::Generic, "x", "{}");
        e.recipient = Some("Ann <Ann@Mail.Example.org>".into());
        e.metadata.insert("campaign_id".into(), "spring".into());
        finish(&mut e);
        assert_eq!(e.recipient.as_deref(), Some("ann@mail.example.org"));
        assert_eq!(e.recipient_domain.as_deref(), Some("mail.example.org"));
        assert_eq!(e.campaign_id.as_deref(), Some("spring"));
        assert_eq!((e.occurred_at, e.received_at), (UNKNOWN_TIME, 7));
        e.recipient = Some("no-at-sign".into());
        finish(&mut e);
        assert_eq!(e.recipient_domain, None);
    }
}
