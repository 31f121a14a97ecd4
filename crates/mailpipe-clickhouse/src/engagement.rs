//! Engagement history and the inputs of the send-time and likelihood models, read from
//! `email_events` (`FINAL`: one row per event, whatever was inserted twice). The figures'
//! meanings are in `mailpipe_insight::history`; the models are `mailpipe_insight`'s.
//!
//! Every query reads at most `history_days` before `as_of` (`[insight] history_days`), so
//! "over all history" means over that window, and only events strictly before `as_of`: the
//! rules stage asks as of the event it evaluates, which so never counts itself (whether
//! the aggregate stage has loaded it yet or not). The client must have the database selected.
//! A human open is an `opened` row whose `machine_open` is not 1 (rows loaded before the
//! enrichment existed have NULL there and count as human).
//!
//! Cost: `email_events` is ordered by (source, event_type, occurred_at, …), not by
//! recipient, so a recipient's history is a scan of the window's parts for that recipient
//! (ClickHouse reads only the columns named). The rules stage caches histories
//! (`[insight] history_cache_seconds`).

use mailpipe_insight::history::{Counts, EngagementHistory, Scope};
use mailpipe_insight::{
    predict_likelihood, predict_send_time, HourCounts, Kind, Levels, Likelihood, Observation,
    Params, Profile, SendTimePrediction,
};
use serde::{Deserialize, Serialize};

use crate::ClickHouseError;

const DAY_MS: i64 = 86_400_000;
const HUMAN_OPEN: &str = "event_type = 'opened' AND ifNull(machine_open, 0) = 0";

/// `key` as `email_events` stores it: trimmed and lower-cased, and for a recipient under
/// `[privacy] hash_recipients` (`hash_key` given) its keyed-hash form (an already hashed
/// `h:…` key is kept).
pub fn stored_key(scope: Scope, key: &str, hash_key: Option<&[u8]>) -> String {
    let key = key.trim().to_lowercase();
    match (scope, hash_key) {
        (Scope::Recipient, Some(hash_key)) if !key.starts_with("h:") => {
            mailpipe_model::privacy::hashed_address(hash_key, &key)
        }
        _ => key,
    }
}

/// The column a scope filters on.
fn scope_column(scope: Scope) -> &'static str {
    match scope {
        Scope::Recipient => "recipient",
        Scope::Domain => "recipient_domain",
    }
}

/// `[countIf(cond AND in 7 d), … 30 d, … 90 d]` for a count's condition.
fn windowed(condition: &str, as_of_ms: i64) -> String {
    let parts: Vec<String> = mailpipe_insight::history::WINDOW_DAYS
        .iter()
        .map(|days| {
            let from = as_of_ms - i64::from(*days) * DAY_MS;
            format!("countIf({condition} AND occurred_at_ms > {from})")
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The distinct (recipient, message) pairs with a human open, per window (an open without a
/// message id counts as its own message).
fn windowed_messages(as_of_ms: i64) -> String {
    let parts: Vec<String> = mailpipe_insight::history::WINDOW_DAYS
        .iter()
        .map(|days| {
            let from = as_of_ms - i64::from(*days) * DAY_MS;
            format!(
                "uniqExactIf(recipient, if(message_id = '', event_id, message_id), {HUMAN_OPEN} AND occurred_at_ms > {from})"
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct HistoryRow {
    delivered: Vec<u64>,
    opened: Vec<u64>,
    human_opened: Vec<u64>,
    human_opened_messages: Vec<u64>,
    clicked: Vec<u64>,
    bounced: Vec<u64>,
    hard_bounced: Vec<u64>,
    soft_bounced: Vec<u64>,
    complained: Vec<u64>,
    unsubscribed: Vec<u64>,
    last_delivered: i64,
    last_human_open: i64,
    last_click: i64,
    last_bounce: i64,
    last_bounce_class: String,
    hard_bounces_total: u64,
}

/// The SQL of one history (the key is bound as `?`).
pub fn history_sql(scope: Scope, as_of_ms: i64, history_days: u32) -> String {
    let since_s = (as_of_ms - i64::from(history_days) * DAY_MS).max(0) / 1000;
    let column = scope_column(scope);
    let w = |condition: &str| windowed(condition, as_of_ms);
    format!(
        "SELECT {delivered} AS delivered, {opened} AS opened, {human} AS human_opened, \
         {messages} AS human_opened_messages, {clicked} AS clicked, {bounced} AS bounced, \
         {hard} AS hard_bounced, {soft} AS soft_bounced, {complained} AS complained, \
         {unsubscribed} AS unsubscribed, \
         maxIf(occurred_at_ms, event_type = 'delivered') AS last_delivered, \
         maxIf(occurred_at_ms, {HUMAN_OPEN}) AS last_human_open, \
         maxIf(occurred_at_ms, event_type = 'clicked') AS last_click, \
         maxIf(occurred_at_ms, event_type = 'bounced') AS last_bounce, \
         argMaxIf(bounce_class, occurred_at_ms, event_type = 'bounced') AS last_bounce_class, \
         countIf(event_type = 'bounced' AND bounce_class = 'hard') AS hard_bounces_total \
         FROM email_events FINAL \
         WHERE {column} = ? AND occurred_at >= toDateTime({since_s}) AND occurred_at_ms < {as_of_ms}",
        delivered = w("event_type = 'delivered'"),
        opened = w("event_type = 'opened'"),
        human = w(HUMAN_OPEN),
        messages = windowed_messages(as_of_ms),
        clicked = w("event_type = 'clicked'"),
        bounced = w("event_type = 'bounced'"),
        hard = w("event_type = 'bounced' AND bounce_class = 'hard'"),
        soft = w("event_type = 'bounced' AND bounce_class = 'soft'"),
        complained = w("event_type = 'complained'"),
        unsubscribed = w("event_type = 'unsubscribed'"),
    )
}

/// The engagement history of `key` (an address or a domain, as stored: lower-case, or the
/// hashed form under `[privacy] hash_recipients`) as of `as_of_ms`.
pub async fn history(
    client: &clickhouse::Client,
    scope: Scope,
    key: &str,
    as_of_ms: i64,
    history_days: u32,
) -> Result<EngagementHistory, ClickHouseError> {
    let row: HistoryRow = client
        .query(&history_sql(scope, as_of_ms, history_days))
        .bind(key)
        .fetch_one()
        .await?;
    Ok(from_row(scope, key, as_of_ms, row))
}

fn from_row(scope: Scope, key: &str, as_of_ms: i64, row: HistoryRow) -> EngagementHistory {
    let window = |i: usize| Counts {
        delivered: at(&row.delivered, i),
        opened: at(&row.opened, i),
        human_opened: at(&row.human_opened, i),
        human_opened_messages: at(&row.human_opened_messages, i),
        clicked: at(&row.clicked, i),
        bounced: at(&row.bounced, i),
        hard_bounced: at(&row.hard_bounced, i),
        soft_bounced: at(&row.soft_bounced, i),
        complained: at(&row.complained, i),
        unsubscribed: at(&row.unsubscribed, i),
    };
    let time = |ms: i64| (ms > 0).then_some(ms);
    EngagementHistory {
        scope,
        key: key.to_string(),
        as_of_ms,
        last_delivered_ms: time(row.last_delivered),
        last_human_open_ms: time(row.last_human_open),
        last_click_ms: time(row.last_click),
        last_bounce_ms: time(row.last_bounce),
        last_bounce_class: (row.last_bounce > 0 && !row.last_bounce_class.is_empty())
            .then(|| row.last_bounce_class.clone()),
        hard_bounces_total: row.hard_bounces_total,
        last_7d: window(0),
        last_30d: window(1),
        last_90d: window(2),
    }
}

/// A time zone name checked by chrono-tz, safe to write into SQL as a literal (IANA names
/// are letters, digits, `/`, `_`, `+`, `-`).
fn zone_literal(zone: chrono_tz::Tz) -> String {
    let name = zone.name();
    debug_assert!(name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c)));
    format!("'{name}'")
}

/// The filter of one level of a prediction: a recipient, a domain, a source, or everybody.
#[derive(Debug, Clone, Copy)]
pub enum Level<'a> {
    Recipient(&'a str),
    Domain(&'a str),
    Source(&'a str),
    Global,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct HourRow {
    hour_of_week: u8,
    opens: u64,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct TallyRow {
    delivered: u64,
    opened_messages: u64,
}

/// One level's profile for the models: human opens by hour of the week in `zone`, and
/// delivered / opened messages, over `[since_ms, until_ms)`.
pub async fn profile(
    client: &clickhouse::Client,
    level: Level<'_>,
    since_ms: i64,
    until_ms: i64,
    zone: chrono_tz::Tz,
) -> Result<Profile, ClickHouseError> {
    let (filter, key) = match level {
        Level::Recipient(r) => ("recipient = ?", Some(r)),
        Level::Domain(d) => ("recipient_domain = ?", Some(d)),
        Level::Source(s) => ("source = ?", Some(s)),
        Level::Global => ("1", None),
    };
    let since_s = since_ms.max(0) / 1000;
    let window = format!(
        "occurred_at >= toDateTime({since_s}) AND occurred_at_ms >= {since_ms} AND occurred_at_ms < {until_ms}"
    );
    let zone = zone_literal(zone);
    let hours_sql = format!(
        "SELECT toUInt8((toDayOfWeek(occurred_at, {zone}) - 1) * 24 + toHour(occurred_at, {zone})) AS hour_of_week, \
         count() AS opens FROM email_events FINAL \
         WHERE {filter} AND {HUMAN_OPEN} AND {window} GROUP BY hour_of_week"
    );
    let tally_sql = format!(
        "SELECT countIf(event_type = 'delivered') AS delivered, \
         uniqExactIf(recipient, message_id, {HUMAN_OPEN} AND message_id != '') AS opened_messages \
         FROM email_events FINAL WHERE {filter} AND {window}"
    );
    let mut hours = client.query(&hours_sql);
    let mut tally = client.query(&tally_sql);
    if let Some(key) = key {
        hours = hours.bind(key);
        tally = tally.bind(key);
    }
    let rows: Vec<HourRow> = hours.fetch_all().await?;
    let tally: TallyRow = tally.fetch_one().await?;
    let mut open_hours = HourCounts::new();
    for row in rows {
        open_hours.add_n(
            row.hour_of_week,
            u32::try_from(row.opens).unwrap_or(u32::MAX),
        );
    }
    Ok(Profile {
        open_hours,
        delivered: tally.delivered,
        opened_messages: tally.opened_messages,
    })
}

/// The levels of a recipient's prediction (their domain is the part after `@`; `source`
/// the one they are mailed from, empty when unknown).
pub async fn levels(
    client: &clickhouse::Client,
    recipient: &str,
    source: &str,
    since_ms: i64,
    until_ms: i64,
    zone: chrono_tz::Tz,
) -> Result<Levels, ClickHouseError> {
    let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
    Ok(Levels {
        recipient: profile(
            client,
            Level::Recipient(recipient),
            since_ms,
            until_ms,
            zone,
        )
        .await?,
        domain: profile(client, Level::Domain(domain), since_ms, until_ms, zone).await?,
        source: profile(client, Level::Source(source), since_ms, until_ms, zone).await?,
        global: profile(client, Level::Global, since_ms, until_ms, zone).await?,
    })
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct SourceRow {
    source: String,
}

/// The source most of `recipient`'s events of `[since_ms, until_ms)` came from (ties: the
/// first by name); `None` when they have none.
pub async fn main_source(
    client: &clickhouse::Client,
    recipient: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Option<String>, ClickHouseError> {
    let since_s = since_ms.max(0) / 1000;
    let sql = format!(
        "SELECT source FROM email_events FINAL WHERE recipient = ? \
         AND occurred_at >= toDateTime({since_s}) AND occurred_at_ms >= {since_ms} \
         AND occurred_at_ms < {until_ms} GROUP BY source ORDER BY count() DESC, source LIMIT 1"
    );
    let rows: Vec<SourceRow> = client.query(&sql).bind(recipient).fetch_all().await?;
    Ok(rows.into_iter().next().map(|r| r.source))
}

/// The send-time and engagement-likelihood predictions for one recipient, with what they
/// rest on: what `mailpipe predict send-time` prints and `/api/predict/...` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// As stored (lower-case; the keyed-hash form under `[privacy] hash_recipients`).
    pub recipient: String,
    pub domain: String,
    /// The source level's source: as asked, else the one most of the recipient's events
    /// came from; empty when they have none (the source level is then empty).
    pub source: String,
    /// The zone the hours of the week are in (`[insight] time_zone`).
    pub time_zone: String,
    /// The history read: `[from_ms, as_of_ms)`.
    pub from_ms: i64,
    pub as_of_ms: i64,
    pub send_time: SendTimePrediction,
    pub likelihood: Likelihood,
}

/// Predicts for `recipient` (as stored) from the `history_days` before `as_of_ms`, with
/// `source` as the source level (default: their main source).
pub async fn predict(
    client: &clickhouse::Client,
    recipient: &str,
    source: Option<&str>,
    as_of_ms: i64,
    history_days: u32,
    zone: chrono_tz::Tz,
    params: &Params,
) -> Result<Prediction, ClickHouseError> {
    let from_ms = as_of_ms - i64::from(history_days) * DAY_MS;
    let source = match source {
        Some(source) => source.to_string(),
        None => main_source(client, recipient, from_ms, as_of_ms)
            .await?
            .unwrap_or_default(),
    };
    let levels = levels(client, recipient, &source, from_ms, as_of_ms, zone).await?;
    Ok(Prediction {
        recipient: recipient.to_string(),
        domain: recipient
            .rsplit_once('@')
            .map_or(String::new(), |(_, d)| d.to_string()),
        source,
        time_zone: zone.name().to_string(),
        from_ms,
        as_of_ms,
        send_time: predict_send_time(&levels, params),
        likelihood: predict_likelihood(&levels, params),
    })
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct ObservationRow {
    recipient: String,
    recipient_domain: String,
    source: String,
    delivered: u8,
    occurred_at_ms: i64,
    message_id: String,
}

/// Every delivery and human open of `[since_ms, until_ms)` with a recipient, for
/// `mailpipe predict evaluate` (`mailpipe_insight::evaluate`). One row per event: memory
/// grows with the window's deliveries and opens.
pub async fn observations(
    client: &clickhouse::Client,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<Observation>, ClickHouseError> {
    let since_s = since_ms.max(0) / 1000;
    let sql = format!(
        "SELECT recipient, recipient_domain, source, toUInt8(event_type = 'delivered') AS delivered, \
         occurred_at_ms, message_id FROM email_events FINAL \
         WHERE (event_type = 'delivered' OR ({HUMAN_OPEN})) AND recipient != '' \
         AND occurred_at >= toDateTime({since_s}) AND occurred_at_ms >= {since_ms} \
         AND occurred_at_ms < {until_ms}"
    );
    let rows: Vec<ObservationRow> = client.query(&sql).fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| Observation {
            recipient: r.recipient,
            domain: r.recipient_domain,
            source: r.source,
            kind: if r.delivered == 1 {
                Kind::Delivered
            } else {
                Kind::HumanOpen
            },
            at_ms: r.occurred_at_ms,
            message: (!r.message_id.is_empty()).then_some(r.message_id),
        })
        .collect())
}

fn at(values: &[u64], i: usize) -> u64 {
    values.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_names_every_window_and_binds_only_the_key() {
        let sql = history_sql(Scope::Domain, 100 * DAY_MS, 180);
        assert_eq!(sql.matches('?').count(), 1);
        assert!(sql.contains("WHERE recipient_domain = ?"));
        for days in [7, 30, 90] {
            let from = (100 - days) * DAY_MS;
            assert!(sql.contains(&format!("occurred_at_ms > {from})")), "{days}");
        }
        // A window start before the epoch is clamped, not negative.
        assert!(sql.contains("occurred_at >= toDateTime(0)"));
    }

    #[test]
    fn keys_are_stored_lower_case_and_hashed_when_asked() {
        assert_eq!(stored_key(Scope::Domain, " X.Test ", Some(b"k")), "x.test");
        assert_eq!(stored_key(Scope::Recipient, "A@X.test", None), "a@x.test");
        let hashed = stored_key(Scope::Recipient, "A@X.test", Some(b"0123456789abcdef"));
        assert!(
            hashed.starts_with("h:") && hashed.ends_with("@x.test"),
            "{hashed}"
        );
        assert_eq!(
            stored_key(Scope::Recipient, &hashed, Some(b"0123456789abcdef")),
            hashed
        );
    }

    #[test]
    fn an_empty_row_is_an_empty_history() {
        let row = HistoryRow {
            delivered: vec![0, 0, 0],
            opened: vec![0, 0, 0],
            human_opened: vec![0, 0, 0],
            human_opened_messages: vec![0, 0, 0],
            clicked: vec![0, 0, 0],
            bounced: vec![0, 0, 0],
            hard_bounced: vec![0, 0, 0],
            soft_bounced: vec![0, 0, 0],
            complained: vec![0, 0, 0],
            unsubscribed: vec![0, 0, 0],
            last_delivered: 0,
            last_human_open: 0,
            last_click: 0,
            last_bounce: 0,
            last_bounce_class: String::new(),
            hard_bounces_total: 0,
        };
        assert_eq!(
            from_row(Scope::Recipient, "a@x.test", 5, row),
            EngagementHistory::empty(Scope::Recipient, "a@x.test", 5)
        );
    }
}
