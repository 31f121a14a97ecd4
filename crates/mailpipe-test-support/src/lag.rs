//! Consumer lag of the pipeline's stages, as the chaos test and the pipeline bench watch it:
//! for each consumer stage, the records on its input topic (the sum of the partitions' high
//! watermarks) and how many of them its group has committed. The difference is the stage's
//! lag: work that reached its input but that it has not finished yet.
//!
//! The stages are given as `(stage, group, input topic)`; [`stage_inputs`] lists the
//! pipeline's consumer stages that way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mailpipe_kafka::TopicNames;
use mailpipe_settings::{KafkaSettings, Settings};
use mailpipe_stage::Stage;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::committed_total;

/// One consumer stage: (its process name, its consumer group, the topic it reads).
pub type StageInput = (&'static str, String, String);

/// The pipeline's consumer stages, in flow order, for the settings' topic prefix.
pub fn stage_inputs(settings: &Settings) -> Vec<StageInput> {
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    [
        Stage::Verify,
        Stage::Normalize,
        Stage::Dedupe,
        Stage::Aggregate,
    ]
    .into_iter()
    .map(|s| (s.name(), s.group_id(settings), names.name(s.input())))
    .collect()
}

/// Per consumer stage: (records on its input topic, of which committed by its group).
/// Blocking (a few broker round trips per stage); see [`progress_now`] in async code.
pub fn progress(
    kafka: &KafkaSettings,
    inputs: &[StageInput],
) -> BTreeMap<&'static str, (i64, i64)> {
    // A client only for metadata and watermarks: it never subscribes, so its group id
    // joins no group and disturbs no stage.
    let consumer: BaseConsumer = mailpipe_kafka::consumer_config(kafka, "lag-probe")
        .create()
        .expect("consumer");
    let mut out = BTreeMap::new();
    for (stage, group, topic) in inputs {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut end = 0;
        let mut partitions = 0;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .expect("watermarks");
                end += high;
                partitions += 1;
            }
        }
        out.insert(*stage, (end, committed_total(group, topic, partitions)));
    }
    out
}

/// [`progress`] on the blocking pool, so an async test's other tasks keep running.
pub async fn progress_now(
    kafka: &KafkaSettings,
    inputs: &[StageInput],
) -> BTreeMap<&'static str, (i64, i64)> {
    let (kafka, inputs) = (kafka.clone(), inputs.to_vec());
    tokio::task::spawn_blocking(move || progress(&kafka, &inputs))
        .await
        .expect("progress task")
}

/// Per consumer stage: records on its input topic not yet committed by its group.
pub fn lags(progress: &BTreeMap<&'static str, (i64, i64)>) -> BTreeMap<&'static str, i64> {
    progress
        .iter()
        .map(|(stage, (end, committed))| (*stage, end - committed))
        .collect()
}

/// Waits until every stage's group is `Stable` with at least one member (the stages have
/// joined and got their partitions), at most `limit`. Returns the groups still not stable
/// (empty when all are), for the caller to report. A bench that starts its traffic only
/// then does not count the first join (seconds) in its latencies.
pub async fn wait_for_stable_groups(
    kafka: &KafkaSettings,
    inputs: &[StageInput],
    limit: Duration,
) -> Vec<String> {
    let (kafka, inputs) = (kafka.clone(), inputs.to_vec());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = mailpipe_kafka::consumer_config(&kafka, "lag-probe")
            .create()
            .expect("consumer");
        let started = Instant::now();
        loop {
            // DescribeGroups for each group: its state and members (classic protocol).
            let unstable: Vec<String> = inputs
                .iter()
                .filter(|(_, group, _)| {
                    let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(5))
                    else {
                        return true;
                    };
                    !list
                        .groups()
                        .iter()
                        .any(|g| g.state() == "Stable" && !g.members().is_empty())
                })
                .map(|(_, group, _)| group.clone())
                .collect();
            if unstable.is_empty() || started.elapsed() >= limit {
                return unstable;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("group wait task")
}
