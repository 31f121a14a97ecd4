//! The `email_events` row of one canonical event (schemas/clickhouse/001_email_events.sql).
//!
//! Absent optional values become '' (key columns cannot be Nullable on ClickHouse 18.16);
//! times are kept twice: `DateTime` seconds for partitioning, ordering and windows, and
//! the exact milliseconds.

use mailpipe_model::EmailEvent;
use serde::{Deserialize, Serialize};

/// One row of `email_events`, fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct EventRow {
    pub event_id: String,
    pub event_type: String,
    pub provider_event: String,
    pub provider: String,
    pub source: String,
    pub occurred_at: u32,
    pub occurred_at_ms: i64,
    pub received_at: u32,
    pub received_at_ms: i64,
    pub recipient: String,
    pub recipient_domain: String,
    pub message_id: String,
    pub campaign_id: String,
    pub tags: Vec<String>,
    pub metadata_keys: Vec<String>,
    pub metadata_values: Vec<String>,
    pub reject_reason: String,
    pub bounce_class: String,
    pub url: String,
    pub user_agent: String,
    pub ip: String,
    pub geo_country: String,
    pub geo_region: String,
    pub geo_city: String,
    pub mta_response: String,
    pub description: String,
    pub raw_request_id: String,
    pub raw_event: String,
    /// When the stage inserted the row (Unix ms; set by the loader just before the insert).
    pub inserted_at_ms: i64,
    /// 0, or the revision of the replay that corrected the event (its record's
    /// `mailpipe-correction` header).
    pub revision: u64,
    // Enrichment (009_enrichment.sql).
    pub client_name: String,
    pub client_os: String,
    pub device_class: String,
    /// On opened events 1 (machine) or 0 (human); NULL elsewhere.
    pub machine_open: Option<u8>,
    pub machine_reason: String,
    pub geo_source: String,
}

/// A `DateTime` (Unix seconds, UInt32) from Unix milliseconds, clamped to its range
/// (1970-01-01 .. 2106-02-07): a provider time outside it cannot be stored otherwise.
pub fn datetime_seconds(unix_ms: i64) -> u32 {
    u32::try_from(unix_ms.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

impl EventRow {
    pub fn from_event(event: EmailEvent) -> EventRow {
        let (metadata_keys, metadata_values) = event.metadata.into_iter().unzip();
        let geo = event.geo.unwrap_or_default();
        EventRow {
            event_type: event.event_type.as_str().to_string(),
            provider: event.provider.as_str().to_string(),
            event_id: event.event_id,
            provider_event: event.provider_event,
            source: event.source,
            occurred_at: datetime_seconds(event.occurred_at),
            occurred_at_ms: event.occurred_at,
            received_at: datetime_seconds(event.received_at),
            received_at_ms: event.received_at,
            recipient: event.recipient.unwrap_or_default(),
            recipient_domain: event.recipient_domain.unwrap_or_default(),
            message_id: event.message_id.unwrap_or_default(),
            campaign_id: event.campaign_id.unwrap_or_default(),
            tags: event.tags,
            metadata_keys,
            metadata_values,
            reject_reason: event
                .reject_reason
                .map_or_else(String::new, |r| r.as_str().to_string()),
            bounce_class: event
                .bounce_class
                .map_or_else(String::new, |b| b.as_str().to_string()),
            url: event.url.unwrap_or_default(),
            user_agent: event.user_agent.unwrap_or_default(),
            ip: event.ip.unwrap_or_default(),
            geo_country: geo.country.unwrap_or_default(),
            geo_region: geo.region.unwrap_or_default(),
            geo_city: geo.city.unwrap_or_default(),
            mta_response: event.mta_response.unwrap_or_default(),
            description: event.description.unwrap_or_default(),
            raw_request_id: event.raw_request_id,
            raw_event: event.raw_event,
            inserted_at_ms: 0,
            revision: 0,
            client_name: event.client_name.unwrap_or_default(),
            client_os: event.client_os.unwrap_or_default(),
            device_class: event
                .device_class
                .map_or_else(String::new, |d| d.as_str().to_string()),
            machine_open: event.machine_open.map(u8::from),
            machine_reason: event.machine_reason.unwrap_or_default(),
            geo_source: event.geo_source.unwrap_or_default(),
        }
    }

    /// Roughly the bytes this row takes in a RowBinary insert, for the batch byte bound.
    pub fn approximate_bytes(&self) -> usize {
        let strings = [
            &self.event_id,
            &self.event_type,
            &self.provider_event,
            &self.provider,
            &self.source,
            &self.recipient,
            &self.recipient_domain,
            &self.message_id,
            &self.campaign_id,
            &self.reject_reason,
            &self.bounce_class,
            &self.url,
            &self.user_agent,
            &self.ip,
            &self.geo_country,
            &self.geo_region,
            &self.geo_city,
            &self.mta_response,
            &self.description,
            &self.raw_request_id,
            &self.raw_event,
            &self.client_name,
            &self.client_os,
            &self.device_class,
            &self.machine_reason,
            &self.geo_source,
        ];
        let arrays = [&self.tags, &self.metadata_keys, &self.metadata_values];
        let text: usize = strings.iter().map(|s| s.len() + 2).sum();
        let listed: usize = arrays
            .iter()
            .flat_map(|a| a.iter())
            .map(|s| s.len() + 2)
            .sum();
        text + listed + 3 + 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_model::{BounceClass, EventType, Geo, Provider, RejectReason};
    use std::collections::BTreeMap;

    fn event() -> EmailEvent {
        EmailEvent {
            event_id: "ev-1".into(),
            event_type: EventType::Bounced,
            provider_event: "bounce".into(),
            provider: Provider::Sendgrid,
            source: "sendgrid".into(),
            occurred_at: 1_795_996_800_123,
            received_at: 1_795_996_801_456,
            recipient: Some("a@example.com".into()),
            recipient_domain: Some("example.com".into()),
            message_id: None,
            campaign_id: Some("spring".into()),
            tags: vec!["t1".into()],
            metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
            reject_reason: Some(RejectReason::TimedOut),
            bounce_class: Some(BounceClass::Hard),
            url: None,
            user_agent: None,
            ip: None,
            geo: Some(Geo {
                country: Some("FR".into()),
                region: None,
                city: None,
            }),
            mta_response: Some("550 no such user".into()),
            description: None,
            raw_request_id: "req-1".into(),
            raw_event: "{}".into(),
            client_name: None,
            client_os: None,
            device_class: None,
            machine_open: None,
            machine_reason: None,
            geo_source: None,
        }
    }

    #[test]
    fn maps_every_field_with_empty_strings_for_absent_values() {
        let row = EventRow::from_event(event());
        assert_eq!(row.event_type, "bounced");
        assert_eq!(row.provider, "sendgrid");
        assert_eq!(row.occurred_at, 1_795_996_800);
        assert_eq!(row.occurred_at_ms, 1_795_996_800_123);
        assert_eq!(row.received_at, 1_795_996_801);
        assert_eq!(row.reject_reason, "timed_out");
        assert_eq!(row.bounce_class, "hard");
        assert_eq!(row.message_id, "");
        assert_eq!(row.metadata_keys, ["k"]);
        assert_eq!(row.metadata_values, ["v"]);
        assert_eq!(row.geo_country, "FR");
        assert_eq!(row.geo_city, "");
        assert!(row.approximate_bytes() > 60);
    }

    #[test]
    fn times_outside_datetime_are_clamped() {
        assert_eq!(datetime_seconds(-5), 0);
        assert_eq!(datetime_seconds(i64::MAX), u32::MAX);
        assert_eq!(datetime_seconds(1_999), 1);
    }
}
