//! The console's JSON API against the real ClickHouse and Kafka: every endpoint's figures
//! equal what the test put there (computed here from the generated data) and what a direct
//! query gives, on a database and topics of the test's own; the alerts fire and resolve on
//! real observations; the OpenAPI file names only routes that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EventType, Provider};
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_stage_5_aggregate::actions::ActionRow;
use mailpipe_stage_5_aggregate::problems::{DeadLetterRow, RejectionRow};
use mailpipe_stage_5_aggregate::row::EventRow;
use mailpipe_test_support::{
    create_topic, dev_settings, drop_clickhouse_database, kafka_brokers, migrate_clickhouse,
    unique_name, EventBuilder,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const TYPES: [EventType; 10] = [
    EventType::Delivered,
    EventType::Delivered,
    EventType::Delivered,
    EventType::Opened,
    EventType::Bounced,
    EventType::Clicked,
    EventType::Delivered,
    EventType::Complained,
    EventType::Failed,
    EventType::Unsubscribed,
];
const PROVIDERS: [Provider; 3] = [Provider::Sendgrid, Provider::Mailgun, Provider::Postmark];
const EVENTS: usize = 600;

struct Console {
    settings: Settings,
    app: mailpipe_console::api::AppState,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Console {
    async fn start(settings: Settings) -> Console {
        let app = mailpipe_console::build(settings.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(mailpipe_console::serve(
            listener,
            app.clone(),
            shutdown.clone(),
        ));
        Console {
            settings,
            app,
            base,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn clickhouse(&self) -> clickhouse::Client {
        mailpipe_clickhouse::client(&self.settings.clickhouse)
            .with_database(&self.settings.clickhouse.database)
    }

    async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[T],
    ) {
        let mut insert = self.clickhouse().insert::<T>(table).await.unwrap();
        for row in rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    /// `(key, count)` rows of a direct query.
    async fn pairs(&self, sql: &str) -> BTreeMap<String, u64> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Pair {
            key: String,
            n: u64,
        }
        self.clickhouse()
            .query(sql)
            .fetch_all::<Pair>()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.n))
            .collect()
    }
}

type Posts = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook target on a free port that keeps what it is sent.
async fn capture_server() -> (String, Posts) {
    let posts: Posts = Posts::default();
    let keep = posts.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                keep.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

/// The posts received once there are `n` of them (at most 10 s).
async fn wait_for_posts(posts: &Posts, n: usize) -> Vec<(axum::http::HeaderMap, Vec<u8>)> {
    for _ in 0..200 {
        if posts.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = posts.lock().unwrap().clone();
    assert_eq!(got.len(), n, "alert notifications posted");
    got
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Event `i` of the generated traffic, at `at_s`.
fn event(i: usize, at_s: i64, now_ms: i64) -> EventRow {
    let mut b = EventBuilder::new(format!("ev-{i}"))
        .event_type(TYPES[i % TYPES.len()])
        .provider(PROVIDERS[i % PROVIDERS.len()])
        .source(format!("src-{}", i % 2))
        .recipient(format!("r{}@d{}.example", i % 61, i % 7))
        .at(at_s * 1000)
        .received_at(now_ms - 60_000);
    if !i.is_multiple_of(5) {
        b = b.campaign_id(format!("c{}", i % 4));
    }
    let mut row = EventRow::from_event(b.build());
    // Inserted within the last minute, each (i % 10 + 1) s after it was received.
    row.inserted_at_ms = now_ms - (i as i64 % 50) * 1000;
    row.received_at_ms = row.inserted_at_ms - (i as i64 % 10 + 1) * 1000;
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_equals_clickhouse_and_kafka_and_alerts_fire_and_resolve() {
    let name = unique_name("console");
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{name}.");
    settings.clickhouse.database = name.clone();
    let alerts = &mut settings.console.alerts;
    alerts.window_seconds = 3_600;
    alerts.dead_letters_per_window = 5;
    alerts.rejections_per_window = 1_000;
    alerts.lag_min = 10;
    alerts.lag_for_seconds = 0;
    alerts.rate_min_events = 10;
    alerts.bounce_rate_max = 0.05;
    alerts.complaint_rate_max = 1.0;
    alerts.latency_p99_seconds = 1_000.0;
    // Alert changes are posted here, signed with the first [delivery] secret.
    let (hook_url, received) = capture_server().await;
    alerts.webhook_url = hook_url;
    migrate_clickhouse(&settings).await;
    let c = Console::start(settings.clone()).await;

    // 600 events over the last 50 minutes, 60 of them inserted twice (a replay), and 20
    // more before the range.
    let now = now_s();
    let now_ms = now * 1000;
    let (from, to) = (now - 3_600, now);
    let rows: Vec<EventRow> = (0..EVENTS)
        .map(|i| event(i, now - 3_000 + i as i64 * 4, now_ms))
        .collect();
    c.insert("email_events", &rows).await;
    c.insert("email_events", &rows[..60]).await;
    let early: Vec<EventRow> = (EVENTS..EVENTS + 20)
        .map(|i| event(i, from - 100, now_ms))
        .collect();
    c.insert("email_events", &early).await;

    // /api/overview: totals by type, recipients, series and top bouncing domains.
    let range = format!("from={from}&to={to}");
    let o = c.ok(&format!("/api/overview?{range}")).await;
    assert_eq!(
        (o["from"].as_i64(), o["to"].as_i64()),
        (Some(from), Some(to))
    );
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..EVENTS {
        *by_type
            .entry(TYPES[i % TYPES.len()].as_str().into())
            .or_default() += 1;
    }
    assert_eq!(o["totals"]["events"], EVENTS as u64);
    let shown: BTreeMap<String, u64> =
        serde_json::from_value(o["totals"]["by_type"].clone()).unwrap();
    assert_eq!(shown, by_type);
    let direct = c
        .pairs(&format!(
            "SELECT event_type AS key, count() AS n FROM email_events FINAL \
             WHERE occurred_at >= toDateTime({from}) AND occurred_at < toDateTime({to}) GROUP BY key"
        ))
        .await;
    assert_eq!(shown, direct);
    let recipients: BTreeSet<String> = rows.iter().map(|r| r.recipient.clone()).collect();
    assert_eq!(o["totals"]["recipients"], recipients.len() as u64);
    let series = &o["series"];
    assert_eq!(series["step_seconds"], 60);
    let buckets: Vec<i64> = serde_json::from_value(series["buckets"].clone()).unwrap();
    assert_eq!(
        buckets[0],
        from - from.rem_euclid(60),
        "aligned to the minute"
    );
    assert!(*buckets.last().unwrap() < to && buckets.last().unwrap() + 60 >= to);
    assert!(buckets.windows(2).all(|w| w[1] - w[0] == 60));
    let series_total: u64 = series["by_type"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(series_total, EVENTS as u64, "every event in one bucket");
    let delivered = by_type["delivered"] as f64;
    let bounced = by_type["bounced"] as f64;
    let rate = |k: &str| o["rates"][k].as_f64().unwrap();
    assert!((rate("bounce_rate") - bounced / (delivered + bounced)).abs() < 1e-12);
    assert!((rate("open_rate") - by_type["opened"] as f64 / delivered).abs() < 1e-12);
    assert!(
        (rate("delivery_rate") - delivered / (delivered + bounced + by_type["failed"] as f64))
            .abs()
            < 1e-12
    );
    let top = o["top_bounce_domains"].as_array().unwrap();
    let direct_top = c
        .pairs(&format!(
            "SELECT recipient_domain AS key, countIf(event_type = 'bounced') AS n \
             FROM email_events FINAL WHERE occurred_at >= toDateTime({from}) \
             AND occurred_at < toDateTime({to}) GROUP BY key HAVING n > 0"
        ))
        .await;
    assert_eq!(top.len(), direct_top.len().min(10));
    for d in top {
        assert_eq!(
            d["bounced"].as_u64(),
            direct_top.get(d["domain"].as_str().unwrap()).copied()
        );
    }

    // /api/providers, /api/sources, /api/campaigns: counts per key equal the data's.
    for (path, key_of) in [
        (
            "providers",
            Box::new(|i: usize| PROVIDERS[i % 3].as_str().to_string())
                as Box<dyn Fn(usize) -> String>,
        ),
        ("sources", Box::new(|i: usize| format!("src-{}", i % 2))),
        (
            "campaigns",
            Box::new(|i: usize| {
                if i.is_multiple_of(5) {
                    String::new()
                } else {
                    format!("c{}", i % 4)
                }
            }),
        ),
    ] {
        let answer = c.ok(&format!("/api/{path}?{range}")).await;
        let mut expected: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for i in 0..EVENTS {
            let e = expected.entry(key_of(i)).or_default();
            e.0 += 1;
            match TYPES[i % TYPES.len()] {
                EventType::Delivered => e.1 += 1,
                EventType::Bounced => e.2 += 1,
                _ => {}
            }
        }
        let rows = answer["rows"].as_array().unwrap();
        assert_eq!(rows.len(), expected.len(), "{path}");
        for row in rows {
            let (events, delivered, bounced) = expected[row["key"].as_str().unwrap()];
            assert_eq!(row["events"], events, "{path} {row}");
            assert_eq!(row["delivered"], delivered, "{path} {row}");
            assert_eq!(row["bounced"], bounced, "{path} {row}");
            let expected_rate = bounced as f64 / (delivered + bounced) as f64;
            assert!((row["bounce_rate"].as_f64().unwrap() - expected_rate).abs() < 1e-12);
        }
        let counts: Vec<u64> = rows.iter().map(|r| r["events"].as_u64().unwrap()).collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "{path}: sorted by events"
        );
    }

    // Rejections and dead letters, and their drill-down.
    let rejections: Vec<RejectionRow> = (0..12)
        .map(|i| {
            RejectionRow::from(RejectedRecord {
                request_id: format!("req-{i}"),
                received_at: now_ms - 600_000,
                provider: "mailgun".into(),
                source: "mailgun".into(),
                method: "POST".into(),
                path: "/webhooks/mailgun".into(),
                query: String::new(),
                headers: Vec::new(),
                remote_addr: None,
                body: vec![b'x'; if i == 0 { 5_000 } else { 10 }],
                rejected_at: now_ms - 600_000 + i,
                reason: if i % 3 == 0 {
                    "stale_timestamp"
                } else {
                    "bad_signature"
                }
                .into(),
                detail: "test".into(),
            })
        })
        .collect();
    c.insert("rejected_requests", &rejections).await;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let raw = names.name(Topic::Raw);
    let letters: Vec<DeadLetterRow> = (0..8)
        .map(|i| {
            let topic = if i < 5 {
                names.name(Topic::Verified)
            } else {
                raw.clone()
            };
            DeadLetterRow::new(
                DeadLetterRecord {
                    stage: if i < 5 { "normalize" } else { "verify" }.into(),
                    reason: if i < 5 { "not_json" } else { "undecodable" }.into(),
                    detail: "test".into(),
                    failed_at: now_ms - 300_000 + i,
                    topic,
                    partition: 0,
                    offset: i,
                    raw_request_id: Some(format!("req-{i}")),
                    provider: Some("sendgrid".into()),
                    source: None,
                    payload: b"authorization: Basic c2VjcmV0".to_vec(),
                },
                &raw,
            )
        })
        .collect();
    c.insert("dead_letters", &letters).await;
    let r = c.ok(&format!("/api/rejections?{range}")).await;
    let shown: BTreeMap<String, u64> = r["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["reason"].as_str().unwrap().to_string(),
                x["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let direct = c
        .pairs(&format!(
            "SELECT reason AS key, count() AS n FROM rejected_requests FINAL \
             WHERE rejected_at >= toDateTime({from}) AND rejected_at < toDateTime({to}) GROUP BY key"
        ))
        .await;
    assert_eq!(shown, direct);
    assert_eq!(
        shown,
        BTreeMap::from([("bad_signature".into(), 8), ("stale_timestamp".into(), 4)])
    );
    let letters_shown: BTreeMap<String, u64> = r["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let key = format!(
                "{}/{}",
                x["stage"].as_str().unwrap(),
                x["reason"].as_str().unwrap()
            );
            (key, x["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        letters_shown,
        BTreeMap::from([
            ("normalize/not_json".into(), 5),
            ("verify/undecodable".into(), 3)
        ])
    );
    let ex = c
        .ok(&format!(
            "/api/examples?kind=dead_letter&reason=undecodable&stage=verify&{range}"
        ))
        .await;
    let ex = ex["examples"].as_array().unwrap();
    assert_eq!(ex.len(), 3);
    assert!(
        ex.iter().all(|e| e["body"] == "" && e["truncated"] == true),
        "no credentials: {ex:?}"
    );
    let ex = c
        .ok(&format!(
            "/api/examples?kind=rejection&reason=stale_timestamp&{range}&limit=2"
        ))
        .await;
    let ex = ex["examples"].as_array().unwrap();
    assert_eq!(ex.len(), 2, "limit");
    assert_eq!(ex[0]["request_id"], "req-9", "newest first");
    let all = c
        .ok(&format!(
            "/api/examples?kind=rejection&reason=stale_timestamp&{range}"
        ))
        .await;
    let first = all["examples"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (first["request_id"].as_str(), first["truncated"].as_bool()),
        (Some("req-0"), Some(true))
    );
    assert_eq!(
        first["body"].as_str().unwrap().len(),
        2048,
        "bodies truncated"
    );

    // Bad parameters: 400 with the reason.
    let (status, body) = c.get("/api/overview?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("from"), "{body}");
    let (status, _) = c.get("/api/examples?kind=other&reason=x").await;
    assert_eq!(status, 400);

    // /api/lag: dedupe's input with 10 and 6 records, its group committed 4 on partition 0.
    let input = names.name(Topic::Events);
    create_topic(&input, 2).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    for (partition, n) in [(0, 10), (1, 6)] {
        for i in 0..n {
            let key = format!("k{i}");
            producer
                .send(
                    FutureRecord::to(&input)
                        .partition(partition)
                        .key(&key)
                        .payload("x"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    let group = Stage::Dedupe.group_id(&settings);
    let commit = {
        let (group, input) = (group.clone(), input.clone());
        move |offsets: &[(i32, i64)]| {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", kafka_brokers())
                .set("group.id", &group)
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for (p, o) in offsets {
                tpl.add_partition_offset(&input, *p, Offset::Offset(*o))
                    .unwrap();
            }
            consumer.commit(&tpl, CommitMode::Sync).unwrap();
        }
    };
    tokio::task::spawn_blocking({
        let commit = commit.clone();
        move || commit(&[(0, 4)])
    })
    .await
    .unwrap();
    let lag = c.ok("/api/lag").await;
    let groups = lag["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "only existing input topics: {groups:?}");
    let g = &groups[0];
    assert_eq!(
        (g["stage"].as_str(), g["group"].as_str()),
        (Some("dedupe"), Some(group.as_str()))
    );
    assert_eq!(g["total_lag"], 12);
    let parts = g["partitions"].as_array().unwrap();
    assert_eq!(
        (
            parts[0]["committed"].as_i64(),
            parts[0]["high_watermark"].as_i64(),
            parts[0]["lag"].as_i64()
        ),
        (Some(4), Some(10), Some(6))
    );
    assert_eq!(
        (parts[1]["committed"].clone(), parts[1]["lag"].as_i64()),
        (Value::Null, Some(6))
    );
    // Latency: equal to the direct query over the same window.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Quantiles {
        n: u64,
        p50: f64,
        p99: f64,
    }
    let q: Quantiles = c
        .clickhouse()
        .query(&format!(
            "SELECT count() AS n, toFloat64(quantileExact(0.5)(d)) AS p50, toFloat64(quantileExact(0.99)(d)) AS p99 \
             FROM (SELECT (inserted_at_ms - received_at_ms) / 1000 AS d FROM email_events \
             WHERE inserted_at_ms > {} AND inserted_at_ms <= {} AND revision = 0)",
            now_ms - 900_000,
            now_s() * 1000
        ))
        .fetch_one()
        .await
        .unwrap();
    let latency = &lag["latency"];
    assert_eq!(latency["events"], q.n);
    // Every insert counts (the 60 replayed rows too: no FINAL, a copy barely moves a
    // quantile), the events before the range too (inserted in the window).
    assert_eq!(q.n, (EVENTS + 60 + 20) as u64);
    assert_eq!(latency["p50_seconds"].as_f64(), Some(q.p50));
    assert_eq!(latency["p99_seconds"].as_f64(), Some(q.p99));
    assert!((1.0..=10.0).contains(&q.p50));

    // /api/rules: not running (no member, no execution), then executions counted.
    let rules = c.ok(&format!("/api/rules?{range}")).await;
    assert_eq!(rules["running"], false);
    let action = |id: &str, rule: &str, decision: &str, outcome: &str| ActionRow {
        action_id: id.into(),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        action_index: 0,
        action: "suppress".into(),
        parameter_keys: Vec::new(),
        parameter_values: Vec::new(),
        decision: decision.into(),
        outcome: outcome.into(),
        event_id: format!("ev-{id}"),
        event_type: "bounced".into(),
        provider: "sendgrid".into(),
        source: "src-0".into(),
        recipient: "a@x.example".into(),
        campaign_id: String::new(),
        occurred_at: (now - 100) as u32,
        occurred_at_ms: (now - 100) * 1000,
        decided_at: (now - 99) as u32,
        decided_at_ms: (now - 99) * 1000,
        due_at: (now - 99) as u32,
        due_at_ms: (now - 99) * 1000,
        detail: String::new(),
    };
    c.insert(
        "rule_executions",
        &[
            action("a1", "hard-bounce", "executed", "applied"),
            action("a2", "hard-bounce", "executed", "scheduled"),
            action("a2", "hard-bounce", "executed", "applied"),
            action("a3", "hard-bounce", "cooled_down", "skipped"),
        ],
    )
    .await;
    let rules = c.ok(&format!("/api/rules?{range}")).await;
    assert_eq!(rules["running"], true);
    let executions: BTreeMap<String, u64> = rules["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["decision"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        executions,
        BTreeMap::from([("executed".into(), 2), ("cooled_down".into(), 1)]),
        "an action counts once whatever its outcome rows"
    );

    // Alerts: one round on these data.
    c.app.watcher.round(now_s()).await.unwrap();
    let fired = |answer: &Value, state: &str| -> BTreeSet<String> {
        answer["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == state)
            .map(|a| {
                format!(
                    "{}/{}",
                    a["name"].as_str().unwrap(),
                    a["subject"].as_str().unwrap()
                )
            })
            .collect()
    };
    let mut expected: BTreeSet<String> = BTreeSet::from([
        "dead_letters_growing/normalize".to_string(),
        format!("consumer_lag_growing/{group}"),
    ]);
    // Bounce rate per provider and campaign over the last hour, from the data.
    let mut bounce: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row.occurred_at < (now - 3_600) as u32 {
            continue;
        }
        let t = TYPES[i % TYPES.len()];
        let mut subjects = vec![format!("provider:{}", PROVIDERS[i % 3].as_str())];
        if !i.is_multiple_of(5) {
            subjects.push(format!("campaign:c{}", i % 4));
        }
        for s in subjects {
            let e = bounce.entry(s).or_default();
            match t {
                EventType::Delivered => e.0 += 1,
                EventType::Bounced => e.1 += 1,
                _ => {}
            }
        }
    }
    for (subject, (d, b)) in &bounce {
        if d + b >= 10 && *b as f64 / (d + b) as f64 > 0.05 {
            expected.insert(format!("bounce_rate_high/{subject}"));
        }
    }
    assert!(
        expected.len() > 3,
        "the data make some bounce rates high: {expected:?}"
    );
    let answer = c.ok("/api/alerts").await;
    assert_eq!(fired(&answer, "firing"), expected);
    assert!(answer["evaluated_at"].is_string());
    // Each change was posted once, signed (checked with the Standard Webhooks reference
    // library).
    let secret = settings.delivery.secrets[0].clone();
    let posted = wait_for_posts(&received, expected.len()).await;
    let mut posted_firing = BTreeSet::new();
    for (headers, body) in &posted {
        standardwebhooks::Webhook::new(&secret)
            .unwrap()
            .verify(body, headers)
            .expect("a valid signature");
        let message: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(message["type"], "alert.firing");
        let a = &message["alert"];
        posted_firing.insert(format!(
            "{}/{}",
            a["name"].as_str().unwrap(),
            a["subject"].as_str().unwrap()
        ));
    }
    assert_eq!(posted_firing, expected);

    // The group catches up: the lag alert resolves, the others keep firing.
    tokio::task::spawn_blocking(move || commit(&[(0, 10), (1, 6)]))
        .await
        .unwrap();
    c.app.watcher.round(now_s() + 1).await.unwrap();
    let answer = c.ok("/api/alerts").await;
    assert_eq!(
        fired(&answer, "resolved"),
        BTreeSet::from([format!("consumer_lag_growing/{group}")])
    );
    expected.remove(&format!("consumer_lag_growing/{group}"));
    assert_eq!(fired(&answer, "firing"), expected);
    // The first round's changes, and now the lag alert's resolution.
    let posted = wait_for_posts(&received, expected.len() + 2).await;
    let last: Value = serde_json::from_slice(&posted.last().unwrap().1).unwrap();
    assert_eq!(
        (last["type"].as_str(), last["alert"]["name"].as_str()),
        (Some("alert.resolved"), Some("consumer_lag_growing"))
    );

    // The OpenAPI document parses and names only routes that answer (not 404).
    let openapi = c.ok("/api/openapi.json").await;
    let paths = openapi["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    for path in paths.keys().filter(|p| *p != "/metrics") {
        // A templated segment (`/assets/{file}`) is asked with a file that exists.
        let path = path.replace("{file}", "app.js");
        let (status, _) = c
            .get(&format!("{path}?{range}&kind=rejection&reason=x"))
            .await;
        assert_ne!(status, 404, "{path} is documented but not served");
    }
    let (status, _) = c.get("/").await;
    assert_eq!(status, 200, "the page");
    let (status, _) = c.get("/readyz").await;
    assert_eq!(status, 200);

    c.shutdown.cancel();
    drop_clickhouse_database(&settings).await;
}
