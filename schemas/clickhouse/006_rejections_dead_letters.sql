-- What the console shows of what went wrong, and when events became queryable.
--
-- rejected_requests: one row per mail.rejected record (schemas/rejected_request.avsc), loaded
-- by mailpipe-aggregate. Credentials were removed by verify; the body is kept only as an
-- excerpt (its first 2 KiB, invalid UTF-8 replaced). A replayed record has the same request
-- id and collapses under FINAL.
CREATE TABLE IF NOT EXISTS {database}.rejected_requests
(
    request_id String,
    rejected_at DateTime,
    rejected_at_ms Int64,
    received_at_ms Int64,
    provider String,
    source String,
    reason String,
    detail String,
    remote_addr String,
    body_bytes UInt64,
    body_excerpt String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (reason, rejected_at, request_id);

-- dead_letters: one row per mail.dlq record (schemas/dead_letter.avsc), keyed by the input's
-- Kafka position, so a replayed record collapses under FINAL. The payload is kept as an
-- excerpt, except for inputs of mail.raw, whose headers hold the senders' credentials: their
-- excerpt stays empty (the record itself is on mail.dlq).
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    stage String,
    reason String,
    detail String,
    failed_at DateTime,
    failed_at_ms Int64,
    topic String,
    partition Int32,
    offset Int64,
    raw_request_id String,
    provider String,
    source String,
    payload_bytes UInt64,
    payload_excerpt String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (stage, reason, failed_at, topic, partition, offset);

-- When the aggregate stage inserted each event (Unix ms): received_at_ms to inserted_at_ms
-- is the receiver-to-queryable latency. 0 for rows inserted before this migration.
ALTER TABLE {database}.email_events ADD COLUMN inserted_at_ms Int64 DEFAULT 0;
