-- One-minute roll-ups of email_events, written by mailpipe-aggregate. Each row is computed
-- from `email_events FINAL` for its whole window, never incremented: a window is recomputed
-- after every load that touched it, so a copy of an event, a replay or a late event cannot
-- be counted twice. A window's count only grows, so the version column is `events` itself:
-- ReplacingMergeTree keeps, per window and dimensions, the row of the most recent (largest)
-- recomputation, and `SELECT sum(events) FROM email_stats_1m FINAL` equals
-- `SELECT count() FROM email_events FINAL`. `unique_recipients` is a uniqExact state
-- (recipient '' not counted): merge it with uniqExactMerge over any set of rows.
CREATE TABLE IF NOT EXISTS {database}.email_stats_1m
(
    window_start DateTime,
    source String,
    provider String,
    campaign_id String,
    event_type String,
    recipient_domain String,
    events UInt64,
    unique_recipients AggregateFunction(uniqExact, String)
)
ENGINE = ReplacingMergeTree(events)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, source, provider, campaign_id, event_type, recipient_domain);
