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
// Exactly-once mode (labels: stage; outcome = committed | aborted).
pub const KAFKA_TRANSACTIONS: &str = "mailpipe_kafka_transactions_total";
pub const KAFKA_TRANSACTION_SECONDS: &str = "mailpipe_kafka_transaction_seconds";
pub const KAFKA_TRANSACTION_INPUTS: &str = "mailpipe_kafka_transaction_inputs_total";

// Kafka producer (labels: topic, outcome).
pub const KAFKA_PRODUCED: &str = "mailpipe_kafka_produced_total";
pub const KAFKA_PRODUCE_SECONDS: &str = "mailpipe_kafka_produce_seconds";

// Edge receiver. Labels: provider and source are configured ids (or "unknown", never a
// path segment as sent), status is the numeric code, reason a closed set.
pub const RECEIVER_REQUESTS: &str = "mailpipe_receiver_requests_total";
pub const RECEIVER_REQUEST_SECONDS: &str = "mailpipe_receiver_request_seconds";
pub const RECEIVER_BODY_BYTES: &str = "mailpipe_receiver_body_bytes_total";
pub const RECEIVER_PRODUCE_SECONDS: &str = "mailpipe_receiver_produce_seconds";
pub const RECEIVER_IN_FLIGHT: &str = "mailpipe_receiver_in_flight_requests";
pub const RECEIVER_REJECTIONS: &str = "mailpipe_receiver_rejections_total";
pub const RECEIVER_CONNECTIONS: &str = "mailpipe_receiver_open_connections";
pub const RECEIVER_CONNECTION_ERRORS: &str = "mailpipe_receiver_connection_errors_total";
pub const RECEIVER_RATE_LIMIT_FALLBACKS: &str = "mailpipe_receiver_rate_limit_fallbacks_total";
pub const RECEIVER_PRODUCER_RESTARTS: &str = "mailpipe_receiver_producer_restarts_total";
pub const RECEIVER_READY: &str = "mailpipe_receiver_ready";

// Stages (labels: stage, reason / provider, event_type).
pub const DEAD_LETTERS: &str = "mailpipe_dead_letters_total";
pub const NORMALIZE_EVENTS: &str = "mailpipe_normalize_events_total";
/// Verified requests that hold no email event (label provider), e.g. Postal's reports on
/// incoming mail.
pub const NORMALIZE_REQUESTS_WITHOUT_EVENTS: &str =
    "mailpipe_normalize_requests_without_events_total";
/// Opens by the enrichment's verdict (labels machine = true/false, reason).
pub const NORMALIZE_OPENS: &str = "mailpipe_normalize_opens_total";
/// IP geolocation lookups of engagement events the provider did not locate (label result =
/// found / not_found); only with `[enrichment] geoip_database`.
pub const NORMALIZE_GEO_LOOKUPS: &str = "mailpipe_normalize_geo_lookups_total";

// Verify stage. Labels: provider and source are configured ids ("unknown" when the record
// names none that is configured), reason the closed set of mailpipe_verify_core::Reason.
pub const VERIFY_VERIFIED: &str = "mailpipe_verify_verified_total";
pub const VERIFY_REJECTED: &str = "mailpipe_verify_rejected_total";
pub const VERIFY_CONTROL: &str = "mailpipe_verify_control_total";
pub const VERIFY_FETCHES: &str = "mailpipe_verify_fetches_total";
pub const VERIFY_FETCH_FAILURES_REMEMBERED: &str =
    "mailpipe_verify_certificate_failures_remembered_total";
pub const VERIFY_REDIS_ERRORS: &str = "mailpipe_verify_redis_errors_total";

// Dedupe stage. Labels: provider is the closed provider set ("unknown" otherwise), step
// claim or confirm, outcome ok or error.
pub const DEDUPE_EVENTS: &str = "mailpipe_dedupe_events_total";
pub const DEDUPE_DUPLICATES: &str = "mailpipe_dedupe_duplicates_total";
pub const DEDUPE_REDELIVERED: &str = "mailpipe_dedupe_redelivered_total";
pub const DEDUPE_REDELIVERED_CONFIRMED: &str = "mailpipe_dedupe_redelivered_confirmed_total";
pub const DEDUPE_CONFIRMED: &str = "mailpipe_dedupe_confirmed_total";
pub const DEDUPE_CONFIRM_ERRORS: &str = "mailpipe_dedupe_confirm_errors_total";
pub const DEDUPE_BATCHES: &str = "mailpipe_dedupe_batches_total";
pub const DEDUPE_BATCH_SIZE: &str = "mailpipe_dedupe_last_batch_size";
pub const DEDUPE_REDIS_SECONDS: &str = "mailpipe_dedupe_redis_seconds";
pub const DEDUPE_REDIS_ERRORS: &str = "mailpipe_dedupe_redis_errors_total";

// Rules stage. Labels: rule is a rule id of the loaded rules file (operator-defined, a
// small set), decision the closed set of the mail.actions schema, outcome ok or invalid.
pub const RULES_EVENTS: &str = "mailpipe_rules_events_total";
pub const RULES_MATCHES: &str = "mailpipe_rules_matches_total";
pub const RULES_ACTIONS: &str = "mailpipe_rules_actions_total";
pub const RULES_EVALUATION_SECONDS: &str = "mailpipe_rules_batch_seconds";
pub const RULES_STATE_ERRORS: &str = "mailpipe_rules_state_errors_total";
pub const RULES_RELOADS: &str = "mailpipe_rules_reloads_total";
pub const RULES_LOADED: &str = "mailpipe_rules_loaded";
pub const RULES_DUE_FIRED: &str = "mailpipe_rules_due_fired_total";
pub const RULES_CORRECTIONS_SKIPPED: &str = "mailpipe_rules_corrections_skipped_total";

// Outbound delivery (mailpipe-deliver).
/// Webhook actions taken in from mail.actions and scheduled.
pub const DELIVERY_ENQUEUED: &str = "mailpipe_delivery_enqueued_total";
/// Attempts by target and verdict (`delivered`, `retry`, `fail`, `disable_target`) and reason.
pub const DELIVERY_ATTEMPTS: &str = "mailpipe_delivery_attempts_total";
/// Seconds one attempt took, by target.
pub const DELIVERY_ATTEMPT_SECONDS: &str = "mailpipe_delivery_attempt_seconds";
/// Deliveries that ended, by target and outcome (`delivered`, `failed`).
pub const DELIVERY_OUTCOMES: &str = "mailpipe_delivery_outcomes_total";
/// Attempts put off without being made, by target and why (`breaker_open`, `rate_limited`,
/// `target_disabled`).
pub const DELIVERY_DEFERRED: &str = "mailpipe_delivery_deferred_total";
/// Breaker state per target: 0 closed, 1 half open, 2 open.
pub const DELIVERY_BREAKER_STATE: &str = "mailpipe_delivery_breaker_state";
/// Redis errors of the delivery store (each retried).
pub const DELIVERY_STORE_ERRORS: &str = "mailpipe_delivery_store_errors_total";

// Aggregate stage. Labels: table is email_events or email_stats_1m, step insert or
// recompute, outcome ok or error.
pub const AGGREGATE_EVENTS: &str = "mailpipe_aggregate_events_total";
pub const AGGREGATE_ROWS_INSERTED: &str = "mailpipe_aggregate_rows_inserted_total";
pub const AGGREGATE_BATCH_ROWS: &str = "mailpipe_aggregate_batch_rows";
pub const AGGREGATE_BATCH_SECONDS: &str = "mailpipe_aggregate_batch_seconds";
pub const AGGREGATE_CLICKHOUSE_ERRORS: &str = "mailpipe_aggregate_clickhouse_errors_total";
pub const AGGREGATE_WINDOWS_RECOMPUTED: &str = "mailpipe_aggregate_windows_recomputed_total";
pub const AGGREGATE_LATE_EVENTS: &str = "mailpipe_aggregate_late_events_total";
pub const AGGREGATE_WINDOW_LAG_SECONDS: &str = "mailpipe_aggregate_window_lag_seconds";
pub const AGGREGATE_PARTITIONS_DROPPED: &str = "mailpipe_aggregate_partitions_dropped_total";

// Every consumer stage's health (labels: stage). Ready = assigned (or deliberately idle)
// and making progress; the same answer `GET /readyz` gives.
pub const STAGE_READY: &str = "mailpipe_stage_ready";
pub const STAGE_ASSIGNED_PARTITIONS: &str = "mailpipe_stage_assigned_partitions";
pub const STAGE_LAST_PROGRESS_SECONDS: &str = "mailpipe_stage_seconds_since_progress";

// Console (port 8090). Lag labels: group (the stage's consumer group), topic, partition;
// alert labels: alert (the alert's name), subject (what it is about, e.g. a provider).
pub const CONSOLE_CONSUMER_LAG: &str = "mailpipe_console_consumer_lag_messages";
pub const CONSOLE_ALERT_FIRING: &str = "mailpipe_console_alert_firing";
pub const CONSOLE_ALERT_EVALUATIONS: &str = "mailpipe_console_alert_evaluations_total";
pub const CONSOLE_ALERT_NOTIFICATIONS: &str = "mailpipe_console_alert_notifications_total";
pub const CONSOLE_API_REQUESTS: &str = "mailpipe_console_api_requests_total";
pub const CONSOLE_QUERY_SECONDS: &str = "mailpipe_console_query_seconds";
pub const CONSOLE_QUERY_ERRORS: &str = "mailpipe_console_query_errors_total";

/// Registers help text and units; called once when a recorder is installed.
pub fn describe_all() {
    describe_counter!(
        DEAD_LETTERS,
        "Messages a stage could not process and wrote to mail.dlq, by stage and reason"
    );
    describe_counter!(
        NORMALIZE_EVENTS,
        "Canonical events written to mail.events, by provider and event type"
    );
    describe_counter!(
        NORMALIZE_OPENS,
        "Opens by the enrichment's verdict: machine (true/false) and its reason"
    );
    describe_counter!(
        NORMALIZE_GEO_LOOKUPS,
        "IP geolocation lookups of engagement events, by result (found / not_found)"
    );
    describe_verify();
    describe_dedupe();
    describe_aggregate();
    describe_delivery();
    describe_health_and_console();
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
    describe_counter!(
        KAFKA_TRANSACTIONS,
        "Kafka transactions of a stage, by outcome (committed or aborted)"
    );
    describe_histogram!(
        KAFKA_TRANSACTION_SECONDS,
        Unit::Seconds,
        "Time from a transaction's begin to its commit or abort"
    );
    describe_counter!(
        KAFKA_TRANSACTION_INPUTS,
        "Input messages whose outputs and offsets were committed in a transaction"
    );
    describe_counter!(KAFKA_PRODUCED, "Records produced, by topic and outcome");
    describe_histogram!(
        KAFKA_PRODUCE_SECONDS,
        Unit::Seconds,
        "Time from produce call to broker acknowledgement"
    );
    describe_receiver();
}

fn describe_verify() {
    describe_counter!(
        VERIFY_VERIFIED,
        "Requests verified and written to mail.verified, by provider, source, kind (events or control) and key_index (which configured secret matched; none for SES)"
    );
    describe_counter!(
        VERIFY_REJECTED,
        "Requests that failed verification and were written to mail.rejected, by provider, source and reason"
    );
    describe_counter!(
        VERIFY_CONTROL,
        "SNS protocol messages handled by verify, by source and action (sns_subscription_confirmed, ...)"
    );
    describe_counter!(
        VERIFY_FETCHES,
        "HTTP GETs of SNS certificates and SubscribeURLs, by purpose and outcome (ok, retry, failed, out_of_time: transient failures for the whole fetch budget)"
    );
    describe_counter!(
        VERIFY_FETCH_FAILURES_REMEMBERED,
        "SNS messages rejected without a fetch because their certificate URL failed recently (negative cache)"
    );
    describe_counter!(
        VERIFY_REDIS_ERRORS,
        "Failed Redis calls recording Mailgun one-time tokens (retried with backoff; the stage holds meanwhile)"
    );
}

fn describe_dedupe() {
    describe_counter!(
        DEDUPE_EVENTS,
        "Events read from mail.events by the dedupe stage, by provider"
    );
    describe_counter!(
        DEDUPE_DUPLICATES,
        "Events not forwarded because their event id was already seen, by provider"
    );
    describe_counter!(
        DEDUPE_REDELIVERED,
        "Events forwarded again because their id was claimed, unconfirmed, by this same message (a redelivery after a crash)"
    );
    describe_counter!(
        DEDUPE_REDELIVERED_CONFIRMED,
        "Redelivered events completed without output because their id's output was confirmed acknowledged (a redelivery after a crash)"
    );
    describe_counter!(
        DEDUPE_CONFIRMED,
        "Event ids marked in Redis as having their output acknowledged by Kafka"
    );
    describe_counter!(
        DEDUPE_CONFIRM_ERRORS,
        "Failed confirmation round trips (not retried: those ids stay unconfirmed, at most an extra copy on a redelivery)"
    );
    describe_counter!(
        DEDUPE_BATCHES,
        "Batches checked against Redis (one pipelined round trip each when Redis answers)"
    );
    describe_gauge!(
        DEDUPE_BATCH_SIZE,
        "Events in the last batch checked against Redis"
    );
    describe_histogram!(
        DEDUPE_REDIS_SECONDS,
        Unit::Seconds,
        "Time of one pipelined Redis round trip for a batch, by step (claim: SET NX GET; confirm: SET XX KEEPTTL) and outcome"
    );
    describe_counter!(
        DEDUPE_REDIS_ERRORS,
        "Failed claim round trips (the batch is retried with backoff)"
    );
}

fn describe_receiver() {
    describe_counter!(
        RECEIVER_REQUESTS,
        "Webhook requests answered, by provider, source and status"
    );
    describe_histogram!(
        RECEIVER_REQUEST_SECONDS,
        Unit::Seconds,
        "Time from request head to response, webhook routes"
    );
    describe_counter!(
        RECEIVER_BODY_BYTES,
        Unit::Bytes,
        "Webhook body bytes read, by provider and source"
    );
    describe_histogram!(
        RECEIVER_PRODUCE_SECONDS,
        Unit::Seconds,
        "Time the receiver waited for Kafka to acknowledge a raw record, by outcome"
    );
    describe_gauge!(
        RECEIVER_IN_FLIGHT,
        "Webhook requests being handled right now"
    );
    describe_counter!(
        RECEIVER_REJECTIONS,
        "Requests answered without producing, by reason (unknown_source, body_too_large, ...)"
    );
    describe_gauge!(RECEIVER_CONNECTIONS, "Open client connections");
    describe_counter!(
        RECEIVER_CONNECTION_ERRORS,
        "Connections ended by an error, by reason (header_timeout, headers_too_large, ...)"
    );
    describe_counter!(
        RECEIVER_RATE_LIMIT_FALLBACKS,
        "Requests allowed without a rate-limit decision because Redis did not answer"
    );
    describe_counter!(
        RECEIVER_PRODUCER_RESTARTS,
        "Kafka producers replaced after a fatal producer error"
    );
    describe_gauge!(
        RECEIVER_READY,
        "1 when the broker answered a metadata request for the raw topic recently"
    );
}

fn describe_aggregate() {
    describe_counter!(
        AGGREGATE_EVENTS,
        "Events read from mail.events.unique and buffered for loading, by provider"
    );
    describe_counter!(
        AGGREGATE_ROWS_INSERTED,
        "Rows acknowledged by ClickHouse, by table (email_events)"
    );
    describe_histogram!(
        AGGREGATE_BATCH_ROWS,
        "Rows per batch loaded into email_events"
    );
    describe_histogram!(
        AGGREGATE_BATCH_SECONDS,
        Unit::Seconds,
        "Time to load one batch: events insert plus window recomputation, retries included"
    );
    describe_counter!(
        AGGREGATE_CLICKHOUSE_ERRORS,
        "Failed ClickHouse calls (retried with backoff), by step (insert, recompute, retention)"
    );
    describe_counter!(
        AGGREGATE_WINDOWS_RECOMPUTED,
        "One-minute windows recomputed into email_stats_1m"
    );
    describe_counter!(
        AGGREGATE_LATE_EVENTS,
        "Events older than their partition's watermark; counted as corrections of their window"
    );
    describe_gauge!(
        AGGREGATE_WINDOW_LAG_SECONDS,
        Unit::Seconds,
        "Wall clock minus the newest event time loaded (how far behind real time the windows are)"
    );
    describe_counter!(
        AGGREGATE_PARTITIONS_DROPPED,
        "Monthly partitions dropped by retention, by table"
    );
}

fn describe_delivery() {
    describe_counter!(
        DELIVERY_ENQUEUED,
        "Webhook actions taken in from mail.actions and put on the delivery schedule"
    );
    describe_counter!(
        DELIVERY_ATTEMPTS,
        "Delivery attempts by target, verdict (delivered, retry, fail, disable_target) and reason"
    );
    describe_histogram!(
        DELIVERY_ATTEMPT_SECONDS,
        Unit::Seconds,
        "Time of one delivery attempt (connect to the end of the response), by target"
    );
    describe_counter!(
        DELIVERY_OUTCOMES,
        "Deliveries that ended, by target and outcome (delivered, failed)"
    );
    describe_counter!(
        DELIVERY_DEFERRED,
        "Attempts put off without being made, by target and why (breaker_open, rate_limited, target_busy, target_disabled)"
    );
    describe_gauge!(
        DELIVERY_BREAKER_STATE,
        "Circuit breaker per target: 0 closed, 1 half open, 2 open"
    );
    describe_counter!(
        DELIVERY_STORE_ERRORS,
        "Failed calls to the delivery store in Redis (retried with backoff)"
    );
}

fn describe_health_and_console() {
    describe_gauge!(
        STAGE_READY,
        "1 when the stage is ready (assigned and making progress, or idle), else 0"
    );
    describe_gauge!(
        STAGE_ASSIGNED_PARTITIONS,
        "Input partitions currently assigned to this stage process"
    );
    describe_gauge!(
        STAGE_LAST_PROGRESS_SECONDS,
        Unit::Seconds,
        "Seconds since the stage last completed an input while it had work in flight"
    );
    describe_gauge!(
        CONSOLE_CONSUMER_LAG,
        "Messages between a consumer group's committed offset and the high watermark, by group, topic and partition"
    );
    describe_gauge!(
        CONSOLE_ALERT_FIRING,
        "1 while the console's alert is firing for the subject, 0 once resolved"
    );
    describe_counter!(
        CONSOLE_ALERT_EVALUATIONS,
        "Alert evaluation rounds by the console, by outcome (ok, error)"
    );
    describe_counter!(
        RULES_CORRECTIONS_SKIPPED,
        "Corrections written by mailpipe replay that the rules stage passed over (never evaluated)"
    );
    describe_counter!(
        CONSOLE_ALERT_NOTIFICATIONS,
        "Alert changes posted to [console.alerts] webhook_url, by outcome (sent, failed)"
    );
    describe_counter!(
        CONSOLE_API_REQUESTS,
        "Console API requests by endpoint and status"
    );
    describe_histogram!(
        CONSOLE_QUERY_SECONDS,
        Unit::Seconds,
        "Time of one console query to ClickHouse or Kafka, by endpoint"
    );
    describe_counter!(
        CONSOLE_QUERY_ERRORS,
        "Console queries that failed or timed out, by endpoint"
    );
}
