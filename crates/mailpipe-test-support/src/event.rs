//! A builder of canonical [`EmailEvent`]s for tests, so a test states only the fields it
//! cares about instead of all 23 of the struct literal.
//!
//! Defaults: a SendGrid `delivered` event of source `main`, at 1_717_000_000_000 ms (both
//! `occurred_at` and `received_at`), no recipient, every optional field `None` or empty,
//! `raw_request_id` `req-<event_id>` and `raw_event` `{}`.
//!
//! ```
//! use mailpipe_model::{EventType, Provider};
//! use mailpipe_test_support::EventBuilder;
//!
//! let event = EventBuilder::new("ev-1")
//!     .event_type(EventType::Opened)
//!     .provider(Provider::Mailgun)
//!     .recipient("user1@example.com")
//!     .build();
//! assert_eq!(event.recipient_domain.as_deref(), Some("example.com"));
//! assert_eq!(event.provider_event, "opened");
//! ```

use std::collections::BTreeMap;

use mailpipe_model::{EmailEvent, EventType, Provider};

/// The default event time: 2024-05-29T16:26:40Z, in Unix milliseconds.
pub const DEFAULT_AT_MS: i64 = 1_717_000_000_000;

/// Builds one [`EmailEvent`]; every setter replaces what an earlier one set.
#[derive(Debug, Clone)]
pub struct EventBuilder(EmailEvent);

/// Text for an optional field: a `&str` or `String` sets it, an `Option` sets or clears it.
pub trait OptionalText {
    fn into_optional_text(self) -> Option<String>;
}

impl OptionalText for &str {
    fn into_optional_text(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl OptionalText for String {
    fn into_optional_text(self) -> Option<String> {
        Some(self)
    }
}

impl OptionalText for Option<String> {
    fn into_optional_text(self) -> Option<String> {
        self
    }
}

impl OptionalText for Option<&str> {
    fn into_optional_text(self) -> Option<String> {
        self.map(str::to_string)
    }
}

impl EventBuilder {
    /// A SendGrid `delivered` event with id `event_id` and the defaults above.
    pub fn new(event_id: impl Into<String>) -> EventBuilder {
        let event_id = event_id.into();
        EventBuilder(EmailEvent {
            raw_request_id: format!("req-{event_id}"),
            event_id,
            event_type: EventType::Delivered,
            provider_event: EventType::Delivered.as_str().into(),
            provider: Provider::Sendgrid,
            source: "main".into(),
            occurred_at: DEFAULT_AT_MS,
            received_at: DEFAULT_AT_MS,
            recipient: None,
            recipient_domain: None,
            message_id: None,
            campaign_id: None,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            reject_reason: None,
            bounce_class: None,
            url: None,
            user_agent: None,
            ip: None,
            geo: None,
            mta_response: None,
            description: None,
            raw_event: "{}".into(),
            client_name: None,
            client_os: None,
            device_class: None,
            machine_open: None,
            machine_reason: None,
            geo_source: None,
        })
    }

    /// Same as [`EventBuilder::new`]: the default type is `delivered`.
    pub fn delivered(event_id: impl Into<String>) -> EventBuilder {
        EventBuilder::new(event_id)
    }

    /// The type, and the provider's name for it (its canonical symbol; set
    /// [`EventBuilder::provider_event`] after this for another).
    pub fn event_type(mut self, event_type: EventType) -> EventBuilder {
        self.0.event_type = event_type;
        self.0.provider_event = event_type.as_str().into();
        self
    }

    pub fn provider_event(mut self, name: impl Into<String>) -> EventBuilder {
        self.0.provider_event = name.into();
        self
    }

    pub fn provider(mut self, provider: Provider) -> EventBuilder {
        self.0.provider = provider;
        self
    }

    pub fn source(mut self, source: impl Into<String>) -> EventBuilder {
        self.0.source = source.into();
        self
    }

    /// When it happened and when it was received, both `ms`; set
    /// [`EventBuilder::received_at`] after this for another reception time.
    pub fn at(mut self, ms: i64) -> EventBuilder {
        self.0.occurred_at = ms;
        self.0.received_at = ms;
        self
    }

    pub fn received_at(mut self, ms: i64) -> EventBuilder {
        self.0.received_at = ms;
        self
    }

    /// The recipient, and its domain (the part after the last `@`).
    pub fn recipient(mut self, address: impl Into<String>) -> EventBuilder {
        let address = address.into();
        self.0.recipient_domain = address.rsplit_once('@').map(|(_, d)| d.to_string());
        self.0.recipient = Some(address);
        self
    }

    pub fn message_id(mut self, id: impl OptionalText) -> EventBuilder {
        self.0.message_id = id.into_optional_text();
        self
    }

    pub fn campaign_id(mut self, id: impl OptionalText) -> EventBuilder {
        self.0.campaign_id = id.into_optional_text();
        self
    }

    pub fn tag(mut self, tag: impl Into<String>) -> EventBuilder {
        self.0.tags.push(tag.into());
        self
    }

    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> EventBuilder {
        self.0.metadata.insert(key.into(), value.into());
        self
    }

    pub fn url(mut self, url: impl OptionalText) -> EventBuilder {
        self.0.url = url.into_optional_text();
        self
    }

    pub fn user_agent(mut self, user_agent: impl OptionalText) -> EventBuilder {
        self.0.user_agent = user_agent.into_optional_text();
        self
    }

    pub fn ip(mut self, ip: impl OptionalText) -> EventBuilder {
        self.0.ip = ip.into_optional_text();
        self
    }

    pub fn mta_response(mut self, text: impl OptionalText) -> EventBuilder {
        self.0.mta_response = text.into_optional_text();
        self
    }

    pub fn raw_request_id(mut self, id: impl Into<String>) -> EventBuilder {
        self.0.raw_request_id = id.into();
        self
    }

    pub fn raw_event(mut self, json: impl Into<String>) -> EventBuilder {
        self.0.raw_event = json.into();
        self
    }

    pub fn build(self) -> EmailEvent {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_setters_win_and_the_domain_follows_the_recipient() {
        let event = EventBuilder::new("ev-7")
            .event_type(EventType::Clicked)
            .provider_event("click")
            .at(10)
            .received_at(12)
            .recipient("a@b@example.org")
            .campaign_id(None::<String>)
            .tag("x")
            .tag("y")
            .build();
        assert_eq!(event.event_type, EventType::Clicked);
        assert_eq!(event.provider_event, "click");
        assert_eq!((event.occurred_at, event.received_at), (10, 12));
        assert_eq!(event.recipient_domain.as_deref(), Some("example.org"));
        assert_eq!(event.campaign_id, None);
        assert_eq!(event.tags, ["x", "y"]);
        assert_eq!(event.raw_request_id, "req-ev-7");
    }
}
