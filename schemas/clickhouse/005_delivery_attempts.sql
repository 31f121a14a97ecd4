-- One row per outbound delivery attempt (topic mail.deliveries, schemas/delivery_attempt.avsc),
-- loaded by mailpipe-aggregate: time, target, status, latency, verdict and error of every
-- attempt of every webhook action. Keyed by the attempt itself (action_id, attempt): a record
-- loaded twice, or an attempt repeated because its answer was never recorded, is one row
-- with FINAL. Partitioned by the month of the attempt (retention drops it like the others).
CREATE TABLE IF NOT EXISTS {database}.delivery_attempts
(
    action_id String,
    webhook_id String,
    rule_id String,
    event_id String,
    target String,
    attempt Int32,
    at DateTime,
    at_ms Int64,
    status UInt16,
    latency_ms Int64,
    verdict String,
    reason String,
    error String,
    next_attempt_at_ms Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (target, action_id, attempt);
