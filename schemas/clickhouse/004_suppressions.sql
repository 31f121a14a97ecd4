-- The suppression list as a table: the latest record of each (scope, recipient) key of the
-- compacted topic mail.suppressions (schemas/suppression.avsc), loaded by mailpipe-aggregate.
-- Records of one key share a Kafka partition, so their offsets order them exactly; the offset
-- is the ReplacingMergeTree version and FINAL keeps the newest change per key (a replayed
-- record has the same offset and collapses). The list now:
--   SELECT * FROM suppressions FINAL WHERE suppressed = 1
-- The history of changes is the topic itself (until compaction) and rule_executions.
-- Not partitioned by time: retention never drops a suppression.
CREATE TABLE IF NOT EXISTS {database}.suppressions
(
    scope String,
    recipient String,
    suppressed UInt8,
    reason String,
    origin String,
    event_id String,
    at DateTime,
    at_ms Int64,
    kafka_partition Int32,
    kafka_offset UInt64
)
ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY (scope, recipient);
