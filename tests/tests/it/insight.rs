//! Insight against the real ClickHouse (and Redis for the rules): engagement history figures
//! exact for a hand-made history; a synthetic history with planted best hours (plus Apple
//! privacy-proxy machine opens at another hour, which must not count) read back from
//! `email_events` equals what was generated, the send-time prediction recovers the planted
//! hour through the library, the console API and `mailpipe predict`, and the holdout
//! evaluation beats the naive baseline; a rule's `history` condition decides from the same
//! history through the rules stage's processing.

use std::collections::BTreeMap;
use std::process::Command;

use mailpipe_clickhouse::engagement;
use mailpipe_insight::history::Scope;
use mailpipe_insight::{evaluate, generate, Kind, Observation, Params, Profiles, SyntheticSpec};
use mailpipe_model::{BounceClass, EmailEvent, EventType};
use mailpipe_settings::Settings;
use mailpipe_stage_5_aggregate::row::EventRow;
use mailpipe_test_support::{
    dev_config_path, dev_settings, drop_clickhouse_database, migrate_clickhouse, redis_url,
    unique_name, workspace_binary, EventBuilder,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn client(settings: &Settings) -> clickhouse::Client {
    mailpipe_clickhouse::client(&settings.clickhouse).with_database(&settings.clickhouse.database)
}

async fn insert(settings: &Settings, rows: &[EventRow]) {
    let client = client(settings);
    for chunk in rows.chunks(5_000) {
        let mut insert = client.insert::<EventRow>("email_events").await.unwrap();
        for row in chunk {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
}

/// A row of `event_type` of `recipient` at `at`, message `message`, machine verdict.
fn row(
    id: &str,
    recipient: &str,
    event_type: EventType,
    at: i64,
    message: &str,
    machine: Option<bool>,
) -> EventRow {
    let mut event: EmailEvent = EventBuilder::new(id)
        .event_type(event_type)
        .recipient(recipient)
        .message_id(message)
        .at(at)
        .build();
    if event_type == EventType::Opened {
        event.machine_open = machine;
        if machine == Some(true) {
            event.machine_reason = Some("apple_mail_privacy".into());
        }
    }
    if event_type == EventType::Bounced {
        event.bounce_class = Some(BounceClass::Soft);
    }
    EventRow::from_event(event)
}

/// The hand-made history of `hist@exact.test` (figures in `exact_history_figures`).
fn exact_rows(now: i64) -> Vec<EventRow> {
    let r = "hist@exact.test";
    let mut rows = vec![
        row("x-d1", r, EventType::Delivered, now - DAY, "m1", None),
        row("x-d2", r, EventType::Delivered, now - 10 * DAY, "m2", None),
        row("x-d3", r, EventType::Delivered, now - 40 * DAY, "m3", None),
        row("x-d6", r, EventType::Delivered, now - 60 * DAY, "m6", None),
        row("x-d4", r, EventType::Delivered, now - 100 * DAY, "m4", None),
        row(
            "x-o1",
            r,
            EventType::Opened,
            now - 2 * DAY,
            "m1",
            Some(false),
        ),
        row(
            "x-o1b",
            r,
            EventType::Opened,
            now - 2 * DAY + HOUR,
            "m1",
            Some(false),
        ),
        // Apple's proxy: an open, not a human one.
        row(
            "x-o1m",
            r,
            EventType::Opened,
            now - DAY + HOUR,
            "m1",
            Some(true),
        ),
        // Loaded before the enrichment existed (machine_open NULL): human.
        row("x-o2", r, EventType::Opened, now - 9 * DAY, "m2", None),
        row(
            "x-o3",
            r,
            EventType::Opened,
            now - 35 * DAY,
            "m3",
            Some(false),
        ),
        row("x-c1", r, EventType::Clicked, now - 3 * DAY, "m1", None),
        // The same click inserted twice (a redelivered batch): counted once.
        row("x-c1", r, EventType::Clicked, now - 3 * DAY, "m1", None),
        row("x-b1", r, EventType::Bounced, now - 20 * DAY, "m7", None),
        row("x-q1", r, EventType::Complained, now - 50 * DAY, "m3", None),
        // Outside the 180-day history window: not counted.
        row(
            "x-old",
            r,
            EventType::Delivered,
            now - 200 * DAY,
            "m0",
            None,
        ),
        // After as_of: not counted.
        row("x-late", r, EventType::Clicked, now + HOUR, "m1", None),
        // The domain's other recipient.
        row(
            "y-d1",
            "nobody@exact.test",
            EventType::Delivered,
            now - 5 * DAY,
            "n1",
            None,
        ),
    ];
    let mut hard = row("x-b0", r, EventType::Bounced, now - 120 * DAY, "m8", None);
    hard.bounce_class = "hard".into();
    rows.push(hard);
    rows
}

/// The synthetic history as `email_events` rows: every delivery, every human open, and an
/// Apple privacy-proxy open at Monday 03:00 UTC of each delivered message in the last week.
fn synthetic_rows(observations: &[Observation]) -> Vec<EventRow> {
    let mut rows = Vec::new();
    for (i, o) in observations.iter().enumerate() {
        let message = o.message.clone().unwrap_or_default();
        let (event_type, machine) = match o.kind {
            Kind::Delivered => (EventType::Delivered, None),
            Kind::HumanOpen => (EventType::Opened, Some(false)),
        };
        let mut event_row = row(
            &format!("syn-{i}"),
            &o.recipient,
            event_type,
            o.at_ms,
            &message,
            machine,
        );
        event_row.source = o.source.clone();
        rows.push(event_row);
        if o.kind == Kind::Delivered {
            let monday_3am = o.at_ms - o.at_ms.rem_euclid(7 * DAY) + 4 * DAY + 3 * HOUR;
            let mut machine_row = row(
                &format!("syn-{i}-mpp"),
                &o.recipient,
                EventType::Opened,
                monday_3am,
                &message,
                Some(true),
            );
            machine_row.source = o.source.clone();
            rows.push(machine_row);
        }
    }
    rows
}

type Row = (String, String, String, i64, bool, Option<String>);

fn sorted(mut observations: Vec<Observation>) -> Vec<Row> {
    observations.sort_by(|a, b| (&a.recipient, a.at_ms).cmp(&(&b.recipient, b.at_ms)));
    let mut out: Vec<_> = observations
        .into_iter()
        .map(|o| {
            (
                o.recipient,
                o.domain,
                o.source,
                o.at_ms,
                o.kind == Kind::Delivered,
                o.message,
            )
        })
        .collect();
    out.sort();
    out
}

const RULES: &str = r#"
[[rule]]
id = "recent-opener"
[rule.when]
event_types = ["delivered"]
history = { metric = "human_opens_30d", at_least = 3 }
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "never-opened"
[rule.when]
event_types = ["delivered"]
history = { metric = "days_since_last_human_open", at_least = 30, if_absent = true }
[[rule.then]]
action = "segment"
segment = "dormant"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn history_predictions_and_rules_from_the_real_history() {
    let name = unique_name("insight");
    let mut settings = dev_settings();
    settings.clickhouse.database = name.clone();
    settings.insight.time_zone = "UTC".into();
    settings.insight.history_days = 180;
    migrate_clickhouse(&settings).await;
    let now = now_ms();
    let client = client(&settings);

    // 1. Exact engagement history.
    insert(&settings, &exact_rows(now)).await;
    let h = engagement::history(&client, Scope::Recipient, "hist@exact.test", now, 180)
        .await
        .unwrap();
    let figures: BTreeMap<&str, Option<f64>> = mailpipe_insight::history::METRICS
        .iter()
        .map(|(name, _)| (*name, h.metric(name)))
        .collect();
    let want: BTreeMap<&str, Option<f64>> = [
        ("delivered_7d", 1.0),
        ("delivered_30d", 2.0),
        ("delivered_90d", 4.0),
        ("human_opens_7d", 2.0),
        ("human_opens_30d", 3.0),
        ("human_opens_90d", 4.0),
        ("opens_30d", 4.0),
        ("clicks_7d", 1.0),
        ("clicks_30d", 1.0),
        ("clicks_90d", 1.0),
        ("bounces_30d", 1.0),
        ("soft_bounces_30d", 1.0),
        ("hard_bounces_total", 1.0),
        ("complaints_90d", 1.0),
        ("human_open_rate_90d", 0.75),
        ("days_since_last_human_open", 1.0),
        ("days_since_last_click", 3.0),
        ("days_since_last_delivered", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k, Some(v)))
    .collect();
    assert_eq!(figures, want);
    assert_eq!(h.last_bounce_class.as_deref(), Some("soft"));
    let domain = engagement::history(&client, Scope::Domain, "exact.test", now, 180)
        .await
        .unwrap();
    assert_eq!(domain.last_7d.delivered, 2);
    assert_eq!(domain.metric("human_opens_90d"), Some(4.0));
    let nobody = engagement::history(&client, Scope::Recipient, "nobody@exact.test", now, 180)
        .await
        .unwrap();
    assert_eq!(nobody.metric("days_since_last_human_open"), None);
    assert_eq!(nobody.metric("human_open_rate_90d"), Some(0.0));

    // 2. A rule's history condition, through the rules stage's processing (real Redis).
    let redis = redis::Client::open(redis_url()).unwrap();
    let connection = redis.get_connection_manager().await.unwrap();
    let mut state = mailpipe_stage_6_rules::RulesState::new(connection, format!("{name}:"))
        .with_history(mailpipe_stage_6_rules::history::HistoryReader::from_settings(&settings));
    let rules = mailpipe_rules_core::load(RULES).expect("the test rules load");
    let config = mailpipe_stage_6_rules::process::ProcessConfig {
        score_window_ms: 90 * DAY,
        publish_topics: vec![],
    };
    let delivered = |id: &str, recipient: &str| {
        EventBuilder::new(id)
            .event_type(EventType::Delivered)
            .recipient(recipient)
            .at(now)
            .build()
    };
    let events = [
        delivered("rule-1", "hist@exact.test"),
        delivered("rule-2", "nobody@exact.test"),
    ];
    let out = mailpipe_stage_6_rules::process::process(&rules, &mut state, &config, &events, now)
        .await
        .unwrap();
    let executed = |i: usize| -> Vec<String> {
        out[i]
            .actions
            .iter()
            .map(|a| format!("{}:{}", a.rule_id, a.decision.as_str()))
            .collect()
    };
    assert_eq!(executed(0), ["recent-opener:executed"]);
    assert_eq!(executed(1), ["never-opened:executed"]);

    // 3. Synthetic history with planted hours, the 8 weeks before this week's Monday 00:00
    // UTC (so every run of a week sees the same history and prints the same figures; the
    // Unix epoch was a Thursday).
    let end = now - (now - 4 * DAY).rem_euclid(7 * DAY);
    let spec = SyntheticSpec {
        weeks: 8,
        ..SyntheticSpec::demo(7, end - 8 * 7 * DAY)
    };
    let generated: Vec<Observation> = generate(&spec)
        .into_iter()
        .filter(|o| o.at_ms < end)
        .collect();
    insert(&settings, &synthetic_rows(&generated)).await;
    let since = end - 180 * DAY;
    let read = engagement::observations(&client, since, end).await.unwrap();
    let read: Vec<Observation> = read
        .into_iter()
        .filter(|o| o.domain != "exact.test")
        .collect();
    assert_eq!(
        sorted(read.clone()),
        sorted(generated.clone()),
        "the deliveries and human opens read back are the ones generated (machine opens left out)"
    );

    // The prediction through the library equals the pure model's on the generated data.
    let zone = chrono_tz::UTC;
    let recipient = "r0000@tuesday.test";
    let prediction =
        engagement::predict(&client, recipient, None, end, 180, zone, &Params::default())
            .await
            .unwrap();
    assert_eq!(
        prediction.send_time.best[0].label, "Tue 09:00",
        "{prediction:#?}"
    );
    assert_eq!(prediction.source, "newsletter", "their main source");
    let mut pure_observations = generated.clone();
    pure_observations.extend(
        // The hand-made history is in the global level too.
        exact_rows(now)
            .iter()
            .filter(|r| r.event_id != "x-late" && r.event_id != "x-old")
            .filter(|r| {
                r.event_type == "delivered"
                    || (r.event_type == "opened" && r.machine_open != Some(1))
            })
            .map(|r| Observation {
                recipient: r.recipient.clone(),
                domain: r.recipient_domain.clone(),
                source: r.source.clone(),
                kind: if r.event_type == "delivered" {
                    Kind::Delivered
                } else {
                    Kind::HumanOpen
                },
                at_ms: r.occurred_at_ms,
                message: Some(r.message_id.clone()),
            }),
    );
    let pure = Profiles::build(pure_observations.iter().filter(|o| o.at_ms < end), zone).levels(
        recipient,
        "tuesday.test",
        "newsletter",
    );
    assert_eq!(
        prediction.send_time,
        mailpipe_insight::predict_send_time(&pure, &Params::default())
    );
    assert_eq!(
        prediction.likelihood,
        mailpipe_insight::predict_likelihood(&pure, &Params::default())
    );

    // 4. The console API answers the same.
    let app = mailpipe_console::build(settings.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(mailpipe_console::serve(listener, app, shutdown.clone()));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = get(format!("/api/predict/send-time/{recipient}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["send_time"]["best"][0]["label"], "Tue 09:00");
    assert_eq!(body["send_time"]["basis"], "recipient");
    assert_eq!(body["source"], "newsletter");
    let (status, body) = get(format!("/api/predict/likelihood/{recipient}?source=shop")).await;
    assert_eq!(
        (status, &body["source"]),
        (200, &Value::from("shop")),
        "{body}"
    );
    assert_eq!(body["likelihood"]["evidence"]["source_delivered"], 1200);
    let (status, body) = get("/api/engagement/recipient/HIST@exact.test".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last_30d"]["human_opened"], 3);
    assert_eq!(body["hard_bounces_total"], 1);
    let (status, body) = get("/api/engagement/domain/exact.test".into()).await;
    assert_eq!(
        (status, &body["last_7d"]["delivered"]),
        (200, &Value::from(2))
    );
    let (status, body) = get("/api/engagement/recipient/not-an-address".into()).await;
    assert_eq!(status, 400, "{body}");
    shutdown.cancel();

    // 5. The holdout evaluation: by the library on what ClickHouse holds, by the pure model
    // on what was generated, and by `mailpipe predict evaluate`.
    // Top 1: the demo's three groups have three planted hours, so the naive model's top 3
    // would be exactly those.
    let cutoff = end - 14 * DAY;
    let params = Params {
        top: 1,
        ..Params::default()
    };
    let from_clickhouse = evaluate(
        &engagement::observations(&client, cutoff - 180 * DAY, end)
            .await
            .unwrap(),
        cutoff,
        zone,
        &params,
    );
    eprintln!(
        "holdout 14 days: {} opens, hit rate {:?} vs naive {:?} (lift {:?}); Brier {:?} vs {:?}",
        from_clickhouse.holdout_opens,
        from_clickhouse.hit_rate,
        from_clickhouse.baseline_hit_rate,
        from_clickhouse.lift,
        from_clickhouse.likelihood.brier,
        from_clickhouse.likelihood.baseline_brier
    );
    let (hit, naive) = (
        from_clickhouse.hit_rate.unwrap(),
        from_clickhouse.baseline_hit_rate.unwrap(),
    );
    assert!(
        hit > naive * 1.3,
        "hit rate {hit} does not beat the naive {naive} clearly"
    );
    assert!(from_clickhouse.holdout_opens > 100);
    let as_of = chrono::DateTime::from_timestamp_millis(end)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cli = |args: &[&str]| -> String {
        let output = Command::new(workspace_binary("mailpipe", "cargo build -p mailpipe"))
            .args(args)
            .env("MAILPIPE_CONFIG", dev_config_path())
            .env("MAILPIPE_CLICKHOUSE__DATABASE", &name)
            .env("MAILPIPE_INSIGHT__TIME_ZONE", "UTC")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "mailpipe {args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let evaluate_args = [
        "predict",
        "evaluate",
        "--holdout",
        "14",
        "--top",
        "1",
        "--as-of",
        &as_of,
    ];
    let json: Value =
        serde_json::from_str(&cli(&[&evaluate_args[..], &["--json"]].concat())).unwrap();
    assert_eq!(json["holdout_opens"], from_clickhouse.holdout_opens);
    assert_eq!(json["hits"], from_clickhouse.hits);
    assert_eq!(json["baseline_hits"], from_clickhouse.baseline_hits);
    eprintln!(
        "mailpipe predict evaluate --holdout 14 --top 1:\n{}",
        cli(&evaluate_args)
    );
    let text = cli(&["predict", "send-time", recipient, "--as-of", &as_of]);
    eprintln!("mailpipe predict send-time {recipient}:\n{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains("Tue 09:00")),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&cli(&["engagement", "hist@exact.test", "--json"])).unwrap();
    assert_eq!(json["last_90d"]["delivered"], 4);
    assert_eq!(json["last_30d"]["human_opened"], 3);

    drop_clickhouse_database(&settings).await;
}
