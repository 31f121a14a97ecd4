-- One row per record of mail.actions (schemas/rule_action.avsc), loaded by mailpipe-aggregate:
-- what each rule decided for each event, executed or not (`decision`), and what became of it
-- (`outcome`). A delayed action has two rows under one action_id: `scheduled` when decided,
-- then `applied` (or `skipped`, decision guard_failed) when it came due. The sorting key is
-- made of the record's own deterministic fields (action_id is rule/event/action index), so a
-- record loaded twice (a replay after a crash) collapses into one row with FINAL.
-- Parameters are two parallel arrays (ClickHouse 18.16 has no Map type). Partitioned by the
-- month of the triggering event, like email_events, so retention drops both together.
CREATE TABLE IF NOT EXISTS {database}.rule_executions
(
    action_id String,
    rule_id String,
    rule_version String,
    action_index Int32,
    action String,
    parameter_keys Array(String),
    parameter_values Array(String),
    decision String,
    outcome String,
    event_id String,
    event_type String,
    provider String,
    source String,
    recipient String,
    campaign_id String,
    occurred_at DateTime,
    occurred_at_ms Int64,
    decided_at DateTime,
    decided_at_ms Int64,
    due_at DateTime,
    due_at_ms Int64,
    detail String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (rule_id, occurred_at, action_id, outcome);
