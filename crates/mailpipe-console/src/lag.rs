//! Consumer lag per stage, from Kafka: each stage's consumer group's committed offsets
//! against the high watermarks of its input partitions, and whether the group has members.
//! The console only reads: its clients carry each group's id to ask for its offsets but
//! never subscribe, join or commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailpipe_kafka::TopicNames;
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::error::ConsoleError;

/// One input partition of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub partition: i32,
    /// `None` when the group has not committed on the partition.
    pub committed: Option<i64>,
    pub high_watermark: i64,
    pub lag: i64,
}

/// One input topic of one stage's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub stage: &'static str,
    pub group: String,
    pub topic: String,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

/// Reads lag through one idle client per consumer group, kept between calls.
#[derive(Clone)]
pub struct LagReader {
    settings: Arc<Settings>,
    timeout: Duration,
    clients: Arc<Mutex<HashMap<String, Arc<BaseConsumer>>>>,
}

impl LagReader {
    pub fn new(settings: Arc<Settings>) -> LagReader {
        LagReader {
            timeout: Duration::from_millis(settings.console.query_timeout_ms),
            settings,
            clients: Arc::default(),
        }
    }

    /// Lag of every stage's group on every input topic that exists, in pipeline order.
    pub async fn all(&self) -> Result<Vec<GroupLag>, ConsoleError> {
        let reader = self.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let names = TopicNames::new(&reader.settings.kafka.topic_prefix);
            let mut out = Vec::new();
            for stage in Stage::ALL {
                let group = stage.group_id(&reader.settings);
                let client = reader.client(&group)?;
                for topic in stage.inputs() {
                    let topic = names.name(*topic);
                    if let Some(lag) = reader.topic_lag(&client, stage, &group, &topic)? {
                        out.push(lag);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| ConsoleError::Kafka(format!("lag task failed: {e}")))?;
        metrics::histogram!(names::CONSOLE_QUERY_SECONDS, "endpoint" => "lag")
            .record(started.elapsed().as_secs_f64());
        if let Ok(lags) = &result {
            for l in lags {
                for p in &l.partitions {
                    metrics::gauge!(names::CONSOLE_CONSUMER_LAG, "group" => l.group.clone(),
                        "topic" => l.topic.clone(), "partition" => p.partition.to_string())
                    .set(p.lag as f64);
                }
            }
        } else {
            metrics::counter!(names::CONSOLE_QUERY_ERRORS, "endpoint" => "lag").increment(1);
        }
        result
    }

    /// How many members `stage`'s consumer group has now (0: no instance is running).
    pub async fn members(&self, stage: Stage) -> Result<usize, ConsoleError> {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || {
            let group = stage.group_id(&reader.settings);
            let client = reader.client(&group)?;
            let list = client.fetch_group_list(Some(&group), reader.timeout)?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.members().len())
                .sum())
        })
        .await
        .map_err(|e| ConsoleError::Kafka(format!("group task failed: {e}")))?
    }

    fn client(&self, group: &str) -> Result<Arc<BaseConsumer>, ConsoleError> {
        let mut clients = self.clients.lock().expect("lag clients lock");
        if let Some(c) = clients.get(group) {
            return Ok(c.clone());
        }
        let mut config = mailpipe_kafka::consumer_config(&self.settings.kafka, group);
        config.set("client.id", "mailpipe-console");
        let client: Arc<BaseConsumer> = Arc::new(config.create()?);
        clients.insert(group.to_string(), client.clone());
        Ok(client)
    }

    fn topic_lag(
        &self,
        client: &BaseConsumer,
        stage: Stage,
        group: &str,
        topic: &str,
    ) -> Result<Option<GroupLag>, ConsoleError> {
        let metadata = client.fetch_metadata(Some(topic), self.timeout)?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
        let committed = client.committed_offsets(tpl, self.timeout)?;
        let mut partitions = Vec::new();
        for p in t.partitions() {
            let (low, high) = client.fetch_watermarks(topic, p.id(), self.timeout)?;
            let committed =
                committed
                    .find_partition(topic, p.id())
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            partitions.push(PartitionLag {
                partition: p.id(),
                committed,
                high_watermark: high,
                lag: partition_lag(committed, low, high),
            });
        }
        partitions.sort_by_key(|p| p.partition);
        Ok(Some(GroupLag {
            stage: stage.name(),
            group: group.to_string(),
            topic: topic.to_string(),
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        }))
    }
}

/// Messages between the group's position and the end of the partition: from the committed
/// offset, or from the log start when nothing is committed (or the committed offset was
/// deleted by retention). Never negative.
pub fn partition_lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    let position = committed.map_or(low, |c| c.max(low));
    (high - position).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_log_start() {
        assert_eq!(partition_lag(Some(90), 0, 100), 10);
        assert_eq!(partition_lag(None, 40, 100), 60);
        assert_eq!(
            partition_lag(Some(10), 40, 100),
            60,
            "committed before retention"
        );
        assert_eq!(partition_lag(Some(120), 0, 100), 0);
    }
}
