-- The audit of `mailpipe erase`: who erased which recipient when, and what was removed.
-- The recipient is recorded only as its keyed hash ([privacy] hash_key) and its domain.
-- Not partitioned by time: retention never drops the audit.
CREATE TABLE IF NOT EXISTS {database}.privacy_erasures
(
    erased_at DateTime,
    erased_at_ms Int64,
    operator String,
    recipient_hash String,
    recipient_domain String,
    was_suppressed UInt8,
    removed String
)
ENGINE = MergeTree
ORDER BY (erased_at, recipient_hash);
