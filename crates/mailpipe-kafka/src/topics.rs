//! Topic names (with the configured prefix) and topic creation.

use std::time::Duration;

use mailpipe_settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaError;

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
}

impl Topic {
    pub const ALL: [Topic; 8] = [
        Topic::Raw,
        Topic::Verified,
        Topic::Rejected,
        Topic::Events,
        Topic::Dlq,
        Topic::EventsUnique,
        Topic::Actions,
        Topic::Suppressions,
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
        }
    }

    /// The suppression list is a table other teams read: keep the latest record per key.
    fn is_compacted(self) -> bool {
        matches!(self, Topic::Suppressions)
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

/// Creates every topic with its configured partition count; topics that already exist are
/// left as they are. Returns `(name, created)` per topic.
pub async fn create_topics(settings: &KafkaSettings) -> Result<Vec<(String, bool)>, KafkaError> {
    let names = TopicNames::new(&settings.topic_prefix);
    let admin: AdminClient<DefaultClientContext> =
        crate::client::admin_config(settings).create()?;
    let wanted: Vec<(Topic, String)> = Topic::ALL.iter().map(|t| (*t, names.name(*t))).collect();
    let new_topics: Vec<NewTopic> = wanted
        .iter()
        .map(|(topic, name)| {
            let new = NewTopic::new(
                name,
                topic.partitions(settings),
                TopicReplication::Fixed(settings.replication_factor),
            );
            if topic.is_compacted() {
                new.set("cleanup.policy", "compact")
            } else {
                new
            }
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
    fn base_names_are_unique() {
        let mut names: Vec<_> = Topic::ALL.iter().map(|t| t.base_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Topic::ALL.len());
    }
}
