//! Topic names (with the configured prefix) and topic creation.

use std::time::Duration;

use mailpipe_settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaError;

/// The header that marks a `mail.events.unique` record as a correction written by
/// `mailpipe replay`; its value is the replay's revision (decimal Unix ms of its start).
/// Readers that keep state per event (the aggregate stage) let it replace what they hold.
pub const CORRECTION_HEADER: &str = "mailpipe-correction";

/// The revision a record's [`CORRECTION_HEADER`] carries, if it is a correction.
pub fn correction_revision<M: rdkafka::message::Message>(message: &M) -> Option<u64> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == CORRECTION_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// Every topic of the pipeline (design.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Raw,
    Verified,
    Rejected,
    Events,
    Dlq,
    EventsUnique,
    Actions,
    Suppressions,
    Deliveries,
}

impl Topic {
    pub const ALL: [Topic; 9] = [
        Topic::Raw,
        Topic::Verified,
        Topic::Rejected,
        Topic::Events,
        Topic::Dlq,
        Topic::EventsUnique,
        Topic::Actions,
        Topic::Suppressions,
        Topic::Deliveries,
    ];

    /// The name without prefix, as in the public contract.
    pub fn base_name(self) -> &'static str {
        match self {
            Topic::Raw => "mail.raw",
            Topic::Verified => "mail.verified",
            Topic::Rejected => "mail.rejected",
            Topic::Events => "mail.events",
            Topic::Dlq => "mail.dlq",
            Topic::EventsUnique => "mail.events.unique",
            Topic::Actions => "mail.actions",
            Topic::Suppressions => "mail.suppressions",
            Topic::Deliveries => "mail.deliveries",
        }
    }

    /// The Avro schema of the topic's record values: the one place a topic's schema is
    /// chosen (writers register it under `<topic>-value`). `None`: the topic's records are
    /// not defined yet (the rules stage's topics).
    pub fn value_schema(self) -> Option<&'static str> {
        match self {
            Topic::Raw => Some(mailpipe_avro::RAW_REQUEST_SCHEMA),
            Topic::Verified => Some(mailpipe_avro::VERIFIED_REQUEST_SCHEMA),
            Topic::Rejected => Some(mailpipe_avro::REJECTED_REQUEST_SCHEMA),
            Topic::Events | Topic::EventsUnique => Some(mailpipe_avro::EMAIL_EVENT_SCHEMA),
            Topic::Dlq => Some(mailpipe_avro::DEAD_LETTER_SCHEMA),
            Topic::Actions => Some(mailpipe_avro::RULE_ACTION_SCHEMA),
            Topic::Suppressions => Some(mailpipe_avro::SUPPRESSION_SCHEMA),
            Topic::Deliveries => Some(mailpipe_avro::DELIVERY_ATTEMPT_SCHEMA),
        }
    }

    fn partitions(self, settings: &KafkaSettings) -> i32 {
        let p = &settings.partitions;
        match self {
            Topic::Raw => p.raw,
            Topic::Verified => p.verified,
            Topic::Rejected => p.rejected,
            Topic::Events => p.events,
            Topic::Dlq => p.dlq,
            Topic::EventsUnique => p.events_unique,
            Topic::Actions => p.actions,
            Topic::Suppressions => p.suppressions,
            Topic::Deliveries => p.deliveries,
        }
    }

    /// The suppression list is a table other teams read: keep the latest record per key.
    fn is_compacted(self) -> bool {
        matches!(self, Topic::Suppressions)
    }

    /// Topics whose records hold a whole request body (raw, verified, and the rejected
    /// and dead-lettered copies of it), or all of one event of it (`raw_event`: a body may
    /// be one event): they must take the largest record a body makes.
    fn carries_bodies(self) -> bool {
        matches!(
            self,
            Topic::Raw
                | Topic::Verified
                | Topic::Rejected
                | Topic::Dlq
                | Topic::Events
                | Topic::EventsUnique
        )
    }

    /// The topic-level configuration `create_topics` sets: `mail.raw` takes the largest raw
    /// record, the topics of records derived from it (verified, rejected, dead letters,
    /// events) that plus the stages' margin (`mailpipe_settings::DERIVED_RECORD_MARGIN_BYTES`).
    fn configs(self, max_record_bytes: u64) -> Vec<(&'static str, String)> {
        let mut configs = Vec::new();
        if self.is_compacted() {
            configs.push(("cleanup.policy", "compact".to_string()));
        }
        if self == Topic::Raw {
            configs.push(("max.message.bytes", max_record_bytes.to_string()));
        } else if self.carries_bodies() {
            let derived = mailpipe_settings::with_derived_record_margin(max_record_bytes);
            configs.push(("max.message.bytes", derived.to_string()));
        }
        configs
    }
}

/// Resolves topic names with the configured prefix.
#[derive(Debug, Clone)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> TopicNames {
        TopicNames {
            prefix: prefix.into(),
        }
    }

    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }
}

/// Creates every topic with its configured partition count and configuration
/// (`cleanup.policy=compact` where design.md says so; `max.message.bytes` =
/// `max_record_bytes` on `mail.raw`, plus the stages' margin on the other topics that carry
/// request bodies). Topics that already exist
/// are left as they are. Returns `(name, created)` per topic.
pub async fn create_topics(
    settings: &KafkaSettings,
    max_record_bytes: u64,
) -> Result<Vec<(String, bool)>, KafkaError> {
    let names = TopicNames::new(&settings.topic_prefix);
    let admin: AdminClient<DefaultClientContext> =
        crate::client::admin_config(settings).create()?;
    let names: Vec<String> = Topic::ALL.iter().map(|t| names.name(*t)).collect();
    let configs: Vec<Vec<(&str, String)>> = Topic::ALL
        .iter()
        .map(|t| t.configs(max_record_bytes))
        .collect();
    let new_topics: Vec<NewTopic> = Topic::ALL
        .iter()
        .zip(&names)
        .zip(&configs)
        .map(|((topic, name), configs)| {
            configs.iter().fold(
                NewTopic::new(
                    name,
                    topic.partitions(settings),
                    TopicReplication::Fixed(settings.replication_factor),
                ),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut outcome = Vec::new();
    for result in results {
        match result {
            Ok(name) => outcome.push((name, true)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => outcome.push((name, false)),
            Err((name, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic: name,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        assert_eq!(TopicNames::new("").name(Topic::Raw), "mail.raw");
        assert_eq!(
            TopicNames::new("prod.").name(Topic::EventsUnique),
            "prod.mail.events.unique"
        );
    }

    #[test]
    fn body_topics_take_the_largest_record_and_suppressions_are_compacted() {
        let derived = [
            Topic::Verified,
            Topic::Rejected,
            Topic::Dlq,
            Topic::Events,
            Topic::EventsUnique,
        ];
        for topic in Topic::ALL {
            let configs = topic.configs(5_500_000);
            let max = configs.iter().find(|(k, _)| *k == "max.message.bytes");
            let want = if topic == Topic::Raw {
                Some("5500000")
            } else if derived.contains(&topic) {
                Some("5565536")
            } else {
                None
            };
            assert_eq!(max.map(|(_, v)| v.as_str()), want, "{topic:?}");
            let compact = configs.contains(&("cleanup.policy", "compact".to_string()));
            assert_eq!(compact, topic == Topic::Suppressions, "{topic:?}");
        }
    }

    #[test]
    fn base_names_are_unique() {
        let mut names: Vec<_> = Topic::ALL.iter().map(|t| t.base_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Topic::ALL.len());
    }

    /// Every shipped schema belongs to a topic, and events keep one schema through dedupe.
    #[test]
    fn every_shipped_schema_is_some_topics_schema() {
        for (file, text) in mailpipe_avro::ALL_SCHEMAS {
            assert!(
                Topic::ALL.iter().any(|t| t.value_schema() == Some(*text)),
                "{file} is no topic's schema"
            );
        }
        assert_eq!(
            Topic::Events.value_schema(),
            Topic::EventsUnique.value_schema()
        );
    }
}
