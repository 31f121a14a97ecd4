-- One row per unique canonical event (schemas/email_event.avsc), loaded by mailpipe-aggregate.
-- ReplacingMergeTree collapses rows with the same sorting key. Every column of the key is a
-- function of the ESP event itself (never of when or how often we received it), so a copy of
-- an event (a replay, a redelivery after a crash) has the same key and collapses into one row:
-- `SELECT count() FROM email_events FINAL` counts each event once. Absent optional values are
-- '' (and empty arrays): key columns cannot be Nullable on ClickHouse 18.16.
CREATE TABLE IF NOT EXISTS {database}.email_events
(
    event_id String,
    event_type String,
    provider_event String,
    provider String,
    source String,
    occurred_at DateTime,
    occurred_at_ms Int64,
    received_at DateTime,
    received_at_ms Int64,
    recipient String,
    recipient_domain String,
    message_id String,
    campaign_id String,
    tags Array(String),
    metadata_keys Array(String),
    metadata_values Array(String),
    reject_reason String,
    bounce_class String,
    url String,
    user_agent String,
    ip String,
    geo_country String,
    geo_region String,
    geo_city String,
    mta_response String,
    description String,
    raw_request_id String,
    raw_event String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (source, event_type, occurred_at, campaign_id, event_id);
