//! The JSON API (`/api/...`, contract in the crate's API.md and openapi.json): read-only
//! handlers over [`Store`], [`LagReader`] and the [`Watcher`]'s alerts, and the pure
//! shaping of their answers (rates, filled series).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use serde::{Deserialize, Serialize};

use crate::alerts::Alert;
use crate::error::ConsoleError;
use crate::lag::{GroupLag, LagReader};
use crate::range::TimeRange;
use crate::store::{Breakdown, BucketCount, By, Example, Store, TypeCount};
use crate::watch::{unix_now, Watcher};

/// What every handler works with.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub lag: LagReader,
    pub watcher: Arc<Watcher>,
    pub http: reqwest::Client,
}

/// `from`, `to`, `limit` and the drill-down's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub stage: Option<String>,
}

impl Params {
    fn range(&self) -> Result<TimeRange, ConsoleError> {
        TimeRange::parse(self.from.as_deref(), self.to.as_deref(), unix_now())
    }
}

/// The five rates of the contract; `None` when the denominator is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    pub delivery_rate: Option<f64>,
    pub bounce_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
}

/// The counts the rates are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateBase {
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    pub rejected: u64,
    pub complained: u64,
    pub opened: u64,
    pub clicked: u64,
}

impl From<&Breakdown> for RateBase {
    fn from(r: &Breakdown) -> RateBase {
        RateBase {
            delivered: r.delivered,
            bounced: r.bounced,
            failed: r.failed,
            rejected: r.rejected,
            complained: r.complained,
            opened: r.opened,
            clicked: r.clicked,
        }
    }
}

impl Rates {
    pub fn of(c: RateBase) -> Rates {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        Rates {
            delivery_rate: ratio(c.delivered, c.delivered + c.bounced + c.failed + c.rejected),
            bounce_rate: ratio(c.bounced, c.delivered + c.bounced),
            complaint_rate: ratio(c.complained, c.delivered),
            open_rate: ratio(c.opened, c.delivered),
            click_rate: ratio(c.clicked, c.delivered),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub from: i64,
    pub to: i64,
    pub generated_at: String,
    pub totals: Totals,
    pub rates: Rates,
    pub series: Series,
    pub top_bounce_domains: Vec<DomainRow>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub events: u64,
    pub recipients: u64,
    pub by_type: BTreeMap<String, u64>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Series {
    pub step_seconds: i64,
    pub buckets: Vec<i64>,
    pub by_type: BTreeMap<String, Vec<u64>>,
}

#[derive(Debug, Serialize)]
pub struct DomainRow {
    pub domain: String,
    pub bounced: u64,
    pub delivered: u64,
    pub events: u64,
    pub bounce_rate: Option<f64>,
}

/// Counts per type and bucket, every bucket of the range present (0 where none).
pub fn fill_series(range: TimeRange, counts: &[BucketCount]) -> Series {
    let buckets = range.buckets();
    let index: BTreeMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut by_type: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in counts {
        let Some(i) = index.get(&i64::from(c.bucket)) else {
            continue;
        };
        let row = by_type
            .entry(c.event_type.clone())
            .or_insert_with(|| vec![0; buckets.len()]);
        row[*i] += c.events;
    }
    Series {
        step_seconds: range.step_seconds(),
        buckets,
        by_type,
    }
}

fn base_of(by_type: &BTreeMap<String, u64>) -> RateBase {
    let n = |t: &str| by_type.get(t).copied().unwrap_or(0);
    RateBase {
        delivered: n("delivered"),
        bounced: n("bounced"),
        failed: n("failed"),
        rejected: n("rejected"),
        complained: n("complained"),
        opened: n("opened"),
        clicked: n("clicked"),
    }
}

pub async fn overview(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<Overview>, ConsoleError> {
    let range = p.range()?;
    let store = &app.store;
    let (types, recipients, series, domains) = tokio::try_join!(
        store.type_counts(range),
        store.recipients(range),
        store.series(range),
        store.top_bounce_domains(range),
    )?;
    let by_type: BTreeMap<String, u64> = types
        .into_iter()
        .map(|TypeCount { event_type, events }| (event_type, events))
        .collect();
    Ok(Json(Overview {
        from: range.from,
        to: range.to,
        generated_at: now_rfc3339(),
        totals: Totals {
            events: by_type.values().sum(),
            recipients,
            by_type: by_type.clone(),
        },
        rates: Rates::of(base_of(&by_type)),
        series: fill_series(range, &series),
        top_bounce_domains: domains
            .into_iter()
            .map(|d| DomainRow {
                bounce_rate: Rates::of(RateBase {
                    delivered: d.delivered,
                    bounced: d.bounced,
                    ..RateBase::default()
                })
                .bounce_rate,
                domain: d.domain,
                bounced: d.bounced,
                delivered: d.delivered,
                events: d.events,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
pub struct BreakdownAnswer {
    pub from: i64,
    pub to: i64,
    pub by: &'static str,
    pub rows: Vec<BreakdownRow>,
}

#[derive(Debug, Serialize)]
pub struct BreakdownRow {
    /// The key and its counts, as queried.
    #[serde(flatten)]
    pub counts: Breakdown,
    #[serde(flatten)]
    pub rates: Rates,
}

async fn breakdown(
    app: AppState,
    p: Params,
    by: By,
) -> Result<Json<BreakdownAnswer>, ConsoleError> {
    let range = p.range()?;
    let rows = app
        .store
        .breakdown(by, range, app.store.limit(p.limit))
        .await?;
    let rows = rows
        .into_iter()
        .map(|r| BreakdownRow {
            rates: Rates::of(RateBase::from(&r)),
            counts: r,
        })
        .collect();
    Ok(Json(BreakdownAnswer {
        from: range.from,
        to: range.to,
        by: by.as_str(),
        rows,
    }))
}

pub async fn providers(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<BreakdownAnswer>, ConsoleError> {
    breakdown(app, p, By::Provider).await
}

pub async fn sources(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<BreakdownAnswer>, ConsoleError> {
    breakdown(app, p, By::Source).await
}

pub async fn campaigns(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<BreakdownAnswer>, ConsoleError> {
    breakdown(app, p, By::Campaign).await
}

#[derive(Debug, Serialize)]
pub struct RejectionsAnswer {
    pub from: i64,
    pub to: i64,
    pub rejections: Vec<crate::store::RejectionCount>,
    pub dead_letters: Vec<crate::store::DeadLetterCount>,
}

pub async fn rejections(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<RejectionsAnswer>, ConsoleError> {
    let range = p.range()?;
    let (rejections, dead_letters) =
        tokio::try_join!(app.store.rejections(range), app.store.dead_letters(range))?;
    Ok(Json(RejectionsAnswer {
        from: range.from,
        to: range.to,
        rejections,
        dead_letters,
    }))
}

#[derive(Debug, Serialize)]
pub struct ExamplesAnswer {
    pub kind: String,
    pub reason: String,
    pub examples: Vec<ExampleRow>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ExampleRow {
    pub at: i64,
    pub stage: String,
    pub reason: String,
    pub provider: String,
    pub source: String,
    pub request_id: String,
    pub detail: String,
    pub body: String,
    pub truncated: bool,
}

impl From<Example> for ExampleRow {
    fn from(e: Example) -> ExampleRow {
        ExampleRow {
            at: i64::from(e.at),
            truncated: e.bytes > e.body.len() as u64,
            stage: e.stage,
            reason: e.reason,
            provider: e.provider,
            source: e.source,
            request_id: e.request_id,
            detail: e.detail,
            body: e.body,
        }
    }
}

/// The drill-down's default and largest number of examples.
const EXAMPLES_DEFAULT: u32 = 20;
const EXAMPLES_MAX: u32 = 100;

pub async fn examples(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<ExamplesAnswer>, ConsoleError> {
    let range = p.range()?;
    let reason = p
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ConsoleError::BadRequest("`reason` is required".into()))?;
    let limit = p.limit.unwrap_or(EXAMPLES_DEFAULT).clamp(1, EXAMPLES_MAX);
    let kind = p.kind.clone().unwrap_or_default();
    let rows = match kind.as_str() {
        "rejection" => app.store.rejection_examples(&reason, range, limit).await?,
        "dead_letter" => {
            let stage = p.stage.as_deref().filter(|s| !s.is_empty());
            app.store
                .dead_letter_examples(&reason, stage, range, limit)
                .await?
        }
        _ => {
            return Err(ConsoleError::BadRequest(
                "`kind` must be rejection or dead_letter".into(),
            ))
        }
    };
    Ok(Json(ExamplesAnswer {
        kind,
        reason,
        examples: rows.into_iter().map(ExampleRow::from).collect(),
    }))
}

#[derive(Debug, Serialize)]
pub struct LagAnswer {
    pub generated_at: String,
    pub groups: Vec<GroupLag>,
    pub latency: LatencyAnswer,
}

#[derive(Debug, Serialize)]
pub struct LatencyAnswer {
    pub window_seconds: u64,
    pub events: u64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

/// The latency window of `/api/lag`.
const LATENCY_WINDOW_SECONDS: u64 = 900;

pub async fn lag(State(app): State<AppState>) -> Result<Json<LagAnswer>, ConsoleError> {
    let (groups, latency) = tokio::try_join!(
        app.lag.all(),
        app.store.latency(unix_now() * 1000, LATENCY_WINDOW_SECONDS)
    )?;
    let any = latency.events > 0;
    Ok(Json(LagAnswer {
        generated_at: now_rfc3339(),
        groups,
        latency: LatencyAnswer {
            window_seconds: LATENCY_WINDOW_SECONDS,
            events: latency.events,
            p50_seconds: any.then_some(latency.p50_seconds),
            p99_seconds: any.then_some(latency.p99_seconds),
        },
    }))
}

#[derive(Debug, Serialize)]
pub struct RulesAnswer {
    pub from: i64,
    pub to: i64,
    pub running: bool,
    pub members: usize,
    pub executions: Vec<ExecutionRow>,
    pub suppressions: SuppressionsAnswer,
}

#[derive(Debug, Serialize)]
pub struct ExecutionRow {
    pub rule_id: String,
    pub decision: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct SuppressionsAnswer {
    pub total: u64,
    pub in_range: u64,
    pub recent: Vec<SuppressionRow>,
}

#[derive(Debug, Serialize)]
pub struct SuppressionRow {
    pub at: i64,
    pub recipient: String,
    pub reason: String,
    pub origin: String,
    /// The rule that suppressed, when a rule did (origin `rule:<id>`).
    pub rule_id: Option<String>,
}

pub async fn rules(
    State(app): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Json<RulesAnswer>, ConsoleError> {
    let range = p.range()?;
    let (members, executions, (total, in_range), recent) = tokio::try_join!(
        app.lag.members(Stage::Rules),
        app.store.executions(range),
        app.store.suppressed(range),
        app.store.recent_suppressions(10),
    )?;
    Ok(Json(RulesAnswer {
        from: range.from,
        to: range.to,
        running: members > 0 || !executions.is_empty(),
        members,
        executions: executions
            .into_iter()
            .map(|e| ExecutionRow {
                rule_id: e.rule_id,
                decision: e.decision,
                count: e.count,
            })
            .collect(),
        suppressions: SuppressionsAnswer {
            total,
            in_range,
            recent: recent
                .into_iter()
                .map(|s| SuppressionRow {
                    at: i64::from(s.at),
                    rule_id: s.origin.strip_prefix("rule:").map(str::to_string),
                    recipient: s.recipient,
                    reason: s.reason,
                    origin: s.origin,
                })
                .collect(),
        },
    }))
}

#[derive(Debug, Serialize)]
pub struct AlertsAnswer {
    pub evaluated_at: Option<String>,
    pub interval_seconds: u64,
    pub alerts: Vec<Alert>,
}

pub async fn alerts(State(app): State<AppState>) -> Json<AlertsAnswer> {
    let (alerts, at) = app.watcher.alerts();
    Json(AlertsAnswer {
        evaluated_at: (at > 0).then(|| rfc3339(at)),
        interval_seconds: app.settings.console.alerts.interval_seconds,
        alerts,
    })
}

#[derive(Debug, Serialize)]
pub struct StagesAnswer {
    pub stages: Vec<StageHealth>,
}

#[derive(Debug, Serialize)]
pub struct StageHealth {
    pub stage: &'static str,
    pub url: String,
    pub ready: bool,
    pub detail: String,
}

/// Each stage's `/readyz` (the receiver's too), probed now.
pub async fn stages(State(app): State<AppState>) -> Json<StagesAnswer> {
    let mut targets = vec![("receiver", app.settings.receiver.listen)];
    targets.extend(
        Stage::ALL
            .iter()
            .map(|s| (s.name(), s.metrics_listen(&app.settings))),
    );
    let probes = targets.into_iter().map(|(stage, addr)| {
        let http = app.http.clone();
        async move {
            let url = format!("http://{addr}");
            let (ready, detail) = match http.get(format!("{url}/readyz")).send().await {
                Ok(r) => {
                    let ready = r.status().is_success();
                    let text = r.text().await.unwrap_or_default();
                    (ready, text.trim().to_string())
                }
                Err(e) if e.is_connect() => (false, "not running (connection refused)".into()),
                Err(e) if e.is_timeout() => (false, "not answering (timed out)".into()),
                Err(e) => (false, format!("unreachable: {}", e.without_url())),
            };
            StageHealth {
                stage,
                url,
                ready,
                detail,
            }
        }
    });
    Json(StagesAnswer {
        stages: futures_join_all(probes).await,
    })
}

/// Runs the probes concurrently, answers in order.
/// The key of an engagement or prediction request, as `email_events` stores it.
fn insight_key(
    app: &AppState,
    scope: mailpipe_insight::history::Scope,
    key: &str,
) -> Result<String, ConsoleError> {
    let privacy = &app.settings.privacy;
    let hash_key = privacy
        .hash_recipients
        .then_some(privacy.hash_key.as_bytes());
    let stored = mailpipe_clickhouse::engagement::stored_key(scope, key, hash_key);
    let valid = match scope {
        mailpipe_insight::history::Scope::Recipient => stored.contains('@'),
        mailpipe_insight::history::Scope::Domain => !stored.is_empty() && !stored.contains('@'),
    };
    if !valid {
        return Err(ConsoleError::BadRequest(format!(
            "{key:?} is not a {}",
            if scope == mailpipe_insight::history::Scope::Recipient {
                "recipient address"
            } else {
                "domain"
            }
        )));
    }
    Ok(stored)
}

fn now_ms() -> i64 {
    unix_now() * 1000
}

/// `/api/engagement/recipient/{address}`: one recipient's engagement history.
pub async fn engagement_recipient(
    State(app): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<mailpipe_insight::history::EngagementHistory>, ConsoleError> {
    let scope = mailpipe_insight::history::Scope::Recipient;
    let key = insight_key(&app, scope, &address)?;
    let days = app.settings.insight.history_days;
    Ok(Json(
        app.store.engagement(scope, &key, now_ms(), days).await?,
    ))
}

/// `/api/engagement/domain/{domain}`: one recipient domain's engagement history.
pub async fn engagement_domain(
    State(app): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<mailpipe_insight::history::EngagementHistory>, ConsoleError> {
    let scope = mailpipe_insight::history::Scope::Domain;
    let key = insight_key(&app, scope, &domain)?;
    let days = app.settings.insight.history_days;
    Ok(Json(
        app.store.engagement(scope, &key, now_ms(), days).await?,
    ))
}

/// `?source=` of a prediction: the source level's source instead of the recipient's main one.
#[derive(Debug, Default, Deserialize)]
pub struct PredictParams {
    pub source: Option<String>,
}

/// `/api/predict/send-time/{address}` and `/api/predict/likelihood/{address}`: both
/// predictions for one recipient (computed together: they read the same history).
pub async fn predict(
    State(app): State<AppState>,
    Path(address): Path<String>,
    Query(p): Query<PredictParams>,
) -> Result<Json<mailpipe_clickhouse::engagement::Prediction>, ConsoleError> {
    let key = insight_key(&app, mailpipe_insight::history::Scope::Recipient, &address)?;
    let insight = &app.settings.insight;
    let zone: chrono_tz::Tz = insight.time_zone.parse().map_err(|_| {
        ConsoleError::BadRequest(format!(
            "insight.time_zone {:?} is unknown",
            insight.time_zone
        ))
    })?;
    Ok(Json(
        app.store
            .predict(
                &key,
                p.source.as_deref(),
                now_ms(),
                insight.history_days,
                zone,
            )
            .await?,
    ))
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_contract_and_are_null_without_a_denominator() {
        let r = Rates::of(RateBase {
            delivered: 80,
            bounced: 10,
            failed: 5,
            rejected: 5,
            complained: 2,
            opened: 40,
            clicked: 8,
        });
        assert_eq!(r.delivery_rate, Some(0.8));
        assert_eq!(r.bounce_rate, Some(10.0 / 90.0));
        assert_eq!(r.complaint_rate, Some(0.025));
        assert_eq!(r.open_rate, Some(0.5));
        assert_eq!(r.click_rate, Some(0.1));
        let none = Rates::of(RateBase::default());
        assert_eq!(none.bounce_rate, None);
        assert_eq!(none.open_rate, None);
    }

    #[test]
    fn series_has_every_bucket_and_zeros_where_nothing_happened() {
        let range = TimeRange { from: 60, to: 300 };
        let counts = [
            BucketCount {
                bucket: 60,
                event_type: "opened".into(),
                events: 2,
            },
            BucketCount {
                bucket: 240,
                event_type: "opened".into(),
                events: 1,
            },
            BucketCount {
                bucket: 120,
                event_type: "delivered".into(),
                events: 5,
            },
            BucketCount {
                bucket: 999,
                event_type: "delivered".into(),
                events: 5,
            },
        ];
        let s = fill_series(range, &counts);
        assert_eq!(s.buckets, [60, 120, 180, 240]);
        assert_eq!(s.by_type["opened"], [2, 0, 0, 1]);
        assert_eq!(s.by_type["delivered"], [0, 5, 0, 0]);
    }

    #[test]
    fn an_example_says_whether_its_body_was_cut() {
        let e = |body: &str, bytes| Example {
            at: 5,
            stage: "verify".into(),
            reason: "bad_signature".into(),
            provider: "p".into(),
            source: "s".into(),
            request_id: "r".into(),
            detail: String::new(),
            body: body.into(),
            bytes,
        };
        assert!(ExampleRow::from(e("abc", 4000)).truncated);
        assert!(!ExampleRow::from(e("abc", 3)).truncated);
    }
}
