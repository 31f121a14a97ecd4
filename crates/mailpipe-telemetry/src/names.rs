//! Every metric name mailpipe emits, with its help text. Add new metrics here, never inline.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Buckets for every latency histogram, in seconds: 1 ms .. 30 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

// Kafka consumer loop (labels: topic, partition where noted).
pub const KAFKA_MESSAGES_CONSUMED: &str = "mailpipe_kafka_messages_consumed_total";
pub const KAFKA_MESSAGES_COMPLETED: &str = "mailpipe_kafka_messages_completed_total";
pub const KAFKA_IN_FLIGHT: &str = "mailpipe_kafka_in_flight_messages";
pub const KAFKA_PAUSED_PARTITIONS: &str = "mailpipe_kafka_paused_partitions";
pub const KAFKA_COMMITS: &str = "mailpipe_kafka_commits_total";
pub const KAFKA_COMMIT_ERRORS: &str = "mailpipe_kafka_commit_errors_total";
pub const KAFKA_CONSUMER_ERRORS: &str = "mailpipe_kafka_consumer_errors_total";
pub const KAFKA_REBALANCES: &str = "mailpipe_kafka_rebalances_total";

// Kafka producer (labels: topic, outcome).
pub const KAFKA_PRODUCED: &str = "mailpipe_kafka_produced_total";
pub const KAFKA_PRODUCE_SECONDS: &str = "mailpipe_kafka_produce_seconds";

/// Registers help text and units; called once when a recorder is installed.
pub fn describe_all() {
    describe_counter!(
        KAFKA_MESSAGES_CONSUMED,
        "Messages received from Kafka by the consumer loop"
    );
    describe_counter!(
        KAFKA_MESSAGES_COMPLETED,
        "Messages the stage reported as completed (safe to commit)"
    );
    describe_gauge!(
        KAFKA_IN_FLIGHT,
        "Messages received but not yet completed, all partitions"
    );
    describe_gauge!(
        KAFKA_PAUSED_PARTITIONS,
        "Partitions paused because too much of their work is in flight"
    );
    describe_counter!(KAFKA_COMMITS, "Offset commits sent");
    describe_counter!(KAFKA_COMMIT_ERRORS, "Offset commits that failed");
    describe_counter!(
        KAFKA_CONSUMER_ERRORS,
        "Errors reported by the Kafka consumer"
    );
    describe_counter!(
        KAFKA_REBALANCES,
        "Consumer group rebalances (assign or revoke)"
    );
    describe_counter!(KAFKA_PRODUCED, "Records produced, by topic and outcome");
    describe_histogram!(
        KAFKA_PRODUCE_SECONDS,
        Unit::Seconds,
        "Time from produce call to broker acknowledgement"
    );
}
