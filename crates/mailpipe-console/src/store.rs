//! The console's ClickHouse queries. Each is bounded: a client-side timeout
//! (`[console] query_timeout_ms`), the same as the server's `max_execution_time`, and a
//! `LIMIT` on every list. Counts read the tables `FINAL`, so a replayed insert never counts
//! twice. Ranges are by event time (`occurred_at`), half-open `[from, to)`.

use mailpipe_clickhouse::engagement;
use std::time::{Duration, Instant};

use clickhouse::Row;
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use serde::{Deserialize, Serialize};

use crate::error::ConsoleError;
use crate::range::TimeRange;

/// The console's view of ClickHouse.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    timeout: Duration,
    max_rows: u32,
}

/// Counts of one event type.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct TypeCount {
    pub event_type: String,
    pub events: u64,
}

/// Events of one type in one series bucket.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct BucketCount {
    pub bucket: u32,
    pub event_type: String,
    pub events: u64,
}

/// One recipient domain's bounces.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct DomainBounces {
    pub domain: String,
    pub bounced: u64,
    pub delivered: u64,
    pub events: u64,
}

/// The event counts of one provider, source or campaign.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize, Serialize)]
pub struct Breakdown {
    pub key: String,
    pub events: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    pub rejected: u64,
    pub complained: u64,
    pub opened: u64,
    pub clicked: u64,
    pub unsubscribed: u64,
}

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Provider,
    Source,
    Campaign,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Provider => "provider",
            By::Source => "source",
            By::Campaign => "campaign",
        }
    }

    fn column(self) -> &'static str {
        match self {
            By::Provider => "provider",
            By::Source => "source",
            By::Campaign => "campaign_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize, Serialize)]
pub struct RejectionCount {
    pub reason: String,
    pub provider: String,
    pub source: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize, Serialize)]
pub struct DeadLetterCount {
    pub stage: String,
    pub reason: String,
    pub count: u64,
}

/// One recent rejected request or dead letter, as the drill-down shows it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct Example {
    pub at: u32,
    pub stage: String,
    pub reason: String,
    pub provider: String,
    pub source: String,
    pub request_id: String,
    pub detail: String,
    pub body: String,
    pub bytes: u64,
}

/// Received → queryable latency of recently inserted events.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Latency {
    pub events: u64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ExecutionCount {
    pub rule_id: String,
    pub decision: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct RecentSuppression {
    pub at: u32,
    pub recipient: String,
    pub reason: String,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

/// Events per day of one source in the same hour of the day, for the volume alert.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct SourceDay {
    pub source: String,
    pub days_ago: u8,
    pub events: u64,
}

const RANGE: &str = "occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)";

impl Store {
    pub fn new(settings: &Settings) -> Store {
        let timeout = Duration::from_millis(settings.console.query_timeout_ms);
        let server_limit = timeout.as_secs().max(1).to_string();
        let client = mailpipe_clickhouse::client(&settings.clickhouse)
            .with_database(&settings.clickhouse.database)
            .with_setting("max_execution_time", server_limit)
            .with_setting("readonly", "2");
        Store {
            client,
            timeout,
            max_rows: settings.console.max_rows,
        }
    }

    /// Answers when ClickHouse answers a trivial query in time (for `/readyz`).
    pub async fn ping(&self) -> Result<(), ConsoleError> {
        let one: u8 = self
            .fetch_one("readyz", self.client.query("SELECT toUInt8(1)"))
            .await?;
        if one == 1 {
            Ok(())
        } else {
            Err(ConsoleError::ClickHouse(format!("SELECT 1 answered {one}")))
        }
    }

    /// The engagement history of `key` (as stored) as of `as_of_ms`.
    pub async fn engagement(
        &self,
        scope: mailpipe_insight::history::Scope,
        key: &str,
        as_of_ms: i64,
        history_days: u32,
    ) -> Result<mailpipe_insight::history::EngagementHistory, ConsoleError> {
        let fut = engagement::history(&self.client, scope, key, as_of_ms, history_days);
        self.timed("engagement", fut).await
    }

    /// Send-time and likelihood predictions for `recipient` (as stored), with `source` as
    /// the source level (default: their main source).
    pub async fn predict(
        &self,
        recipient: &str,
        source: Option<&str>,
        as_of_ms: i64,
        history_days: u32,
        zone: chrono_tz::Tz,
    ) -> Result<engagement::Prediction, ConsoleError> {
        let params = mailpipe_insight::Params::default();
        let fut = engagement::predict(
            &self.client,
            recipient,
            source,
            as_of_ms,
            history_days,
            zone,
            &params,
        );
        self.timed("predict", fut).await
    }

    /// The list bound: `limit` if given, at most `[console] max_rows`.
    pub fn limit(&self, limit: Option<u32>) -> u32 {
        limit.unwrap_or(100).clamp(1, self.max_rows)
    }

    pub async fn type_counts(&self, r: TimeRange) -> Result<Vec<TypeCount>, ConsoleError> {
        let sql = format!(
            "SELECT event_type, count() AS events FROM email_events FINAL \
             WHERE {RANGE} GROUP BY event_type ORDER BY event_type"
        );
        self.fetch("overview", self.client.query(&sql).bind(r.from).bind(r.to))
            .await
    }

    pub async fn recipients(&self, r: TimeRange) -> Result<u64, ConsoleError> {
        let sql = format!(
            "SELECT uniqExact(recipient) FROM email_events FINAL \
             WHERE {RANGE} AND recipient != ''"
        );
        self.fetch_one("overview", self.client.query(&sql).bind(r.from).bind(r.to))
            .await
    }

    pub async fn series(&self, r: TimeRange) -> Result<Vec<BucketCount>, ConsoleError> {
        let sql = format!(
            "SELECT toUInt32(intDiv(toUInt32(occurred_at), ?) * ?) AS bucket, event_type, \
             count() AS events FROM email_events FINAL WHERE {RANGE} \
             GROUP BY bucket, event_type ORDER BY bucket, event_type"
        );
        let step = r.step_seconds();
        let query = self.client.query(&sql).bind(step).bind(step);
        self.fetch("overview", query.bind(r.from).bind(r.to)).await
    }

    pub async fn top_bounce_domains(
        &self,
        r: TimeRange,
    ) -> Result<Vec<DomainBounces>, ConsoleError> {
        let sql = format!(
            "SELECT recipient_domain AS domain, countIf(event_type = 'bounced') AS bounced, \
             countIf(event_type = 'delivered') AS delivered, count() AS events \
             FROM email_events FINAL WHERE {RANGE} AND recipient_domain != '' \
             GROUP BY domain HAVING bounced > 0 ORDER BY bounced DESC, domain LIMIT 10"
        );
        self.fetch("overview", self.client.query(&sql).bind(r.from).bind(r.to))
            .await
    }

    pub async fn breakdown(
        &self,
        by: By,
        r: TimeRange,
        limit: u32,
    ) -> Result<Vec<Breakdown>, ConsoleError> {
        let sql = format!(
            "SELECT {col} AS key, count() AS events, \
             countIf(event_type = 'delivered') AS delivered, \
             countIf(event_type = 'bounced') AS bounced, \
             countIf(event_type = 'failed') AS failed, \
             countIf(event_type = 'rejected') AS rejected, \
             countIf(event_type = 'complained') AS complained, \
             countIf(event_type = 'opened') AS opened, \
             countIf(event_type = 'clicked') AS clicked, \
             countIf(event_type = 'unsubscribed') AS unsubscribed \
             FROM email_events FINAL WHERE {RANGE} \
             GROUP BY key ORDER BY events DESC, key LIMIT ?",
            col = by.column()
        );
        let query = self.client.query(&sql).bind(r.from).bind(r.to).bind(limit);
        self.fetch(by.as_str(), query).await
    }

    pub async fn rejections(&self, r: TimeRange) -> Result<Vec<RejectionCount>, ConsoleError> {
        let sql = "SELECT reason, provider, source, count() AS count \
             FROM rejected_requests FINAL \
             WHERE rejected_at >= toDateTime(?) AND rejected_at < toDateTime(?) \
             GROUP BY reason, provider, source ORDER BY count DESC, reason, provider, source \
             LIMIT ?";
        let query = self.client.query(sql).bind(r.from).bind(r.to);
        self.fetch("rejections", query.bind(self.max_rows)).await
    }

    pub async fn dead_letters(&self, r: TimeRange) -> Result<Vec<DeadLetterCount>, ConsoleError> {
        let sql = "SELECT stage, reason, count() AS count FROM dead_letters FINAL \
             WHERE failed_at >= toDateTime(?) AND failed_at < toDateTime(?) \
             GROUP BY stage, reason ORDER BY count DESC, stage, reason LIMIT ?";
        let query = self.client.query(sql).bind(r.from).bind(r.to);
        self.fetch("rejections", query.bind(self.max_rows)).await
    }

    /// The newest rejected requests with `reason` in the range (`stage` is `verify`).
    pub async fn rejection_examples(
        &self,
        reason: &str,
        r: TimeRange,
        limit: u32,
    ) -> Result<Vec<Example>, ConsoleError> {
        let sql = "SELECT toUInt32(rejected_at) AS at, 'verify' AS stage, reason, provider, \
             source, request_id, detail, body_excerpt AS body, body_bytes AS bytes \
             FROM rejected_requests FINAL WHERE reason = ? \
             AND rejected_at >= toDateTime(?) AND rejected_at < toDateTime(?) \
             ORDER BY rejected_at_ms DESC, request_id LIMIT ?";
        let query = self.client.query(sql).bind(reason).bind(r.from).bind(r.to);
        self.fetch("examples", query.bind(limit)).await
    }

    /// The newest dead letters with `reason` (of `stage`, if given) in the range.
    pub async fn dead_letter_examples(
        &self,
        reason: &str,
        stage: Option<&str>,
        r: TimeRange,
        limit: u32,
    ) -> Result<Vec<Example>, ConsoleError> {
        let sql = "SELECT toUInt32(failed_at) AS at, stage, reason, provider, source, \
             raw_request_id AS request_id, detail, payload_excerpt AS body, \
             payload_bytes AS bytes FROM dead_letters FINAL \
             WHERE reason = ? AND (? = '' OR stage = ?) \
             AND failed_at >= toDateTime(?) AND failed_at < toDateTime(?) \
             ORDER BY failed_at_ms DESC, topic, partition, offset LIMIT ?";
        let stage = stage.unwrap_or("");
        let query = self.client.query(sql).bind(reason).bind(stage).bind(stage);
        self.fetch("examples", query.bind(r.from).bind(r.to).bind(limit))
            .await
    }

    /// Latency of the events inserted in the last `window_seconds` before `now_ms`.
    pub async fn latency(&self, now_ms: i64, window_seconds: u64) -> Result<Latency, ConsoleError> {
        let since = now_ms - i64::try_from(window_seconds).unwrap_or(i64::MAX / 1000) * 1000;
        let sql = "SELECT count() AS events, \
             if(events = 0, 0., toFloat64(quantileExact(0.5)(d))) AS p50_seconds, \
             if(events = 0, 0., toFloat64(quantileExact(0.99)(d))) AS p99_seconds \
             FROM (SELECT (inserted_at_ms - received_at_ms) / 1000 AS d FROM email_events \
             WHERE inserted_at_ms > ? AND inserted_at_ms <= ? AND revision = 0 \
             AND occurred_at >= toDateTime(?))";
        // Live inserts only (a replay's corrections were received long ago); the event-time
        // bound lets ClickHouse skip old partitions (events a week late are left out). No
        // FINAL: a copy counted twice moves a quantile by nothing that matters.
        let oldest = (since / 1000 - 7 * 86_400).max(0);
        let query = self.client.query(sql).bind(since).bind(now_ms).bind(oldest);
        self.fetch_one("lag", query).await
    }

    pub async fn executions(&self, r: TimeRange) -> Result<Vec<ExecutionCount>, ConsoleError> {
        let sql = format!(
            "SELECT rule_id, decision, uniqExact(action_id) AS count FROM rule_executions FINAL \
             WHERE {RANGE} GROUP BY rule_id, decision ORDER BY count DESC, rule_id, decision \
             LIMIT ?"
        );
        let query = self.client.query(&sql).bind(r.from).bind(r.to);
        self.fetch("rules", query.bind(self.max_rows)).await
    }

    /// Recipients suppressed now, and of them those suppressed within the range.
    pub async fn suppressed(&self, r: TimeRange) -> Result<(u64, u64), ConsoleError> {
        let total = "SELECT count() FROM suppressions FINAL WHERE suppressed = 1";
        let in_range = "SELECT count() FROM suppressions FINAL WHERE suppressed = 1 \
             AND at >= toDateTime(?) AND at < toDateTime(?)";
        let total = self.fetch_one("rules", self.client.query(total)).await?;
        let query = self.client.query(in_range).bind(r.from).bind(r.to);
        Ok((total, self.fetch_one("rules", query).await?))
    }

    pub async fn recent_suppressions(
        &self,
        limit: u32,
    ) -> Result<Vec<RecentSuppression>, ConsoleError> {
        let sql = "SELECT toUInt32(at) AS at, recipient, reason, origin FROM suppressions FINAL \
             WHERE suppressed = 1 ORDER BY at_ms DESC, recipient LIMIT ?";
        self.fetch("rules", self.client.query(sql).bind(limit))
            .await
    }

    /// Dead letters per stage written in `[since, until)` (Unix seconds).
    pub async fn dead_letters_by_stage(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<KeyCount>, ConsoleError> {
        self.counts_in("stage", "dead_letters", "failed_at", since, until)
            .await
    }

    /// Rejected requests per source in `[since, until)`.
    pub async fn rejections_by_source(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<KeyCount>, ConsoleError> {
        self.counts_in("source", "rejected_requests", "rejected_at", since, until)
            .await
    }

    /// Rows of `table` per `key` with `time` in `[since, until)`; the names are this file's
    /// constants, never input.
    async fn counts_in(
        &self,
        key: &'static str,
        table: &'static str,
        time: &'static str,
        since: i64,
        until: i64,
    ) -> Result<Vec<KeyCount>, ConsoleError> {
        let sql = format!(
            "SELECT {key} AS key, count() AS count FROM {table} FINAL \
             WHERE {time} >= toDateTime(?) AND {time} < toDateTime(?) \
             GROUP BY key ORDER BY key LIMIT ?"
        );
        let query = self.client.query(&sql).bind(since).bind(until);
        self.fetch("alerts", query.bind(self.max_rows)).await
    }

    /// Events per source received in the hour before `now` (days_ago 0) and in the same hour
    /// on each of the 7 days before.
    pub async fn source_volume(&self, now: i64) -> Result<Vec<SourceDay>, ConsoleError> {
        let sql = "SELECT source, toUInt8(intDiv(? - toUInt32(received_at), 86400)) AS days_ago, \
             count() AS events FROM email_events FINAL \
             WHERE received_at >= toDateTime(? - 7 * 86400 - 3600) AND received_at < toDateTime(?) \
             AND (? - toUInt32(received_at)) % 86400 < 3600 \
             AND occurred_at >= toDateTime(? - 9 * 86400) \
             GROUP BY source, days_ago ORDER BY source, days_ago LIMIT ?";
        let now = now.max(8 * 86_400);
        let query = self
            .client
            .query(sql)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(now);
        self.fetch("alerts", query.bind(self.max_rows.saturating_mul(8)))
            .await
    }

    async fn fetch<T>(
        &self,
        endpoint: &'static str,
        query: clickhouse::query::Query,
    ) -> Result<Vec<T>, ConsoleError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.timed(endpoint, query.fetch_all::<T>()).await
    }

    async fn fetch_one<T>(
        &self,
        endpoint: &'static str,
        query: clickhouse::query::Query,
    ) -> Result<T, ConsoleError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.timed(endpoint, query.fetch_one::<T>()).await
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        endpoint: &'static str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, ConsoleError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ConsoleError::ClickHouse(e.to_string())),
            Err(_) => Err(ConsoleError::ClickHouse(format!(
                "query timed out after {} ms",
                self.timeout.as_millis()
            ))),
        };
        metrics::histogram!(names::CONSOLE_QUERY_SECONDS, "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!(names::CONSOLE_QUERY_ERRORS, "endpoint" => endpoint).increment(1);
        }
        result
    }
}
