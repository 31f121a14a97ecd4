//! Bench (ignored; run by scripts/bench-rules.sh): events/s through the rules stage with 100
//! rules next to events/s through a no-op forwarder on the same consumer loop, their ratio
//! (issue 18's goal: >= 0.5), what the rules wrote, the Redis work per event, and the CPU
//! this process used per 1,000 events in each run (other builds on the machine swing the
//! rates, the stage's more than the forwarder's; the CPU figures much less). It asserts
//! nothing about timings.
//!
//! The rules ([`rules_file`]): the four default rules of `config/rules.toml` and 96 more of
//! every condition kind — event types, providers, recipient and domain regexes, tags,
//! metadata, local time windows, CEL expressions, segments and scores — with 10 thresholds
//! over recipient or domain windows (the default soft-bounce rule one of them), 3 rates
//! per campaign, cooldowns and limits, a delayed action with a guard, dry run, a disabled
//! rule and a `stop`. As in real life most rules match few events, but some act on many:
//! opens and clicks score, hard bounces, complaints and unsubscribes suppress, some clicks
//! join segments or publish to a topic of another team.
//!
//! The input ([`events`]): `RULES_BENCH_EVENTS` canonical events (default 50,000) of 5,000
//! recipients on ~300 domains over the last 20 hours, mixed types (45 % delivered, 20 %
//! opened, 8 % clicked, 5 % bounced, ...), providers, campaigns, tags and metadata, keyed
//! by recipient on 4 partitions. Each run gets a fresh topic prefix filled with the same
//! events (and the stage a fresh Redis prefix), so group join and filling are not measured.
//!
//! Both runs are in this process on the stage's consumer loop in the stage's mode (exactly
//! once by default: outputs and offsets committed in Kafka transactions). The forwarder
//! (`ForwardAll`, dedupe's baseline) writes each input's bytes to the actions topic
//! through the same emitter; the stage is `mailpipe_stage_6_rules::run`, as its binary
//! runs it (scheduler and reloader included). The clock: from the group's first committed
//! offsets to the moment its committed offsets cover the whole input (sampled every 10 ms),
//! over the inputs committed in between — the steady rate, with the join and the first
//! fetch left out for both. The two take turns over `RULES_BENCH_ROUNDS` rounds (default
//! 3); each one's figure is its median (the forwarder's runs last under a second, a few
//! transactions, so a single one swings).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider};
use mailpipe_settings::Settings;
use mailpipe_stage::{DeadLetters, Stage};
use mailpipe_stage_4_dedupe::emit::ForwardAll;
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_settings, redis_url, topic_record_count, unique_name,
    EventBuilder, Rng,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const RECIPIENTS: u64 = 5_000;
const CAMPAIGNS: u64 = 12;
const HOUR: i64 = 3_600_000;
/// Bound on a run without progress, so a stuck stage fails instead of hanging.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// The topic `publish` actions write to, under the run's prefix (in `publish_topics`).
fn published_topic(settings: &Settings) -> String {
    format!("{}bench.crm", settings.kafka.topic_prefix)
}

/// The 100 rules: the defaults and 96 written here (see the module doc).
fn rules_file(publish: &str) -> String {
    let mut f = String::from(include_str!("../../../config/rules.toml"));
    let mut rule = |text: String| {
        f.push('\n');
        f.push_str(text.trim_start());
    };

    // Thresholds over recipient or domain windows (with the default soft-bounce rule: 10).
    let thresholds = [
        (
            "domain-deferral-storm",
            "deferred",
            "[]",
            "domain",
            "1h",
            30,
            "publish",
        ),
        (
            "domain-bounce-storm",
            "bounced",
            "[]",
            "domain",
            "1h",
            25,
            "publish",
        ),
        (
            "heavy-opener",
            "opened",
            "[]",
            "recipient",
            "24h",
            4,
            "segment",
        ),
        (
            "repeat-clicker",
            "clicked",
            "[]",
            "recipient",
            "7d",
            3,
            "score",
        ),
        (
            "domain-complaints",
            "complained",
            "[]",
            "domain",
            "24h",
            3,
            "publish",
        ),
        (
            "over-mailed",
            "delivered",
            "[]",
            "recipient",
            "24h",
            8,
            "segment",
        ),
        (
            "domain-hard-bounces",
            "bounced",
            r#"["hard"]"#,
            "domain",
            "24h",
            10,
            "publish",
        ),
        (
            "unsubscribe-wave",
            "unsubscribed",
            "[]",
            "domain",
            "24h",
            3,
            "publish",
        ),
        (
            "domain-open-surge",
            "opened",
            "[]",
            "domain",
            "1h",
            150,
            "segment",
        ),
    ];
    for (id, event, classes, per, within, at_least, action) in thresholds {
        let then = match action {
            "publish" => format!(
                "action = \"publish\"\ntopic = \"{publish}\"\nkey = \"{{{{ recipient_domain }}}}\"\n\
                 value = '{{\"alert\": \"{id}\", \"domain\": {{{{ recipient_domain | tojson }}}}}}'"
            ),
            "segment" => format!("action = \"segment\"\nsegment = \"{id}\""),
            _ => "action = \"score\"\nadd = 3.0".to_string(),
        };
        let cooldown = if per == "domain" {
            format!("[rule.cooldown]\nduration = \"{within}\"\nper = \"domain\"\n")
        } else {
            String::new()
        };
        rule(format!(
            r#"
[[rule]]
id = "{id}"
priority = 60
respect_suppression = {respect}
[rule.when]
event_types = ["{event}"]
threshold = {{ events = ["{event}"], bounce_classes = {classes}, per = "{per}", within = "{within}", at_least = {at_least} }}
{cooldown}[[rule.then]]
{then}
"#,
            respect = per == "recipient",
        ));
    }

    // Rates per campaign.
    let rates = [
        ("campaign-complaint-rate", "complained", 0.3, 1000),
        ("campaign-bounce-rate", "bounced", 5.0, 500),
        ("campaign-unsubscribe-rate", "unsubscribed", 1.0, 500),
    ];
    for (id, event, percent, min) in rates {
        rule(format!(
            r#"
[[rule]]
id = "{id}"
priority = 55
respect_suppression = false
[rule.when]
event_types = ["{event}"]
rate = {{ numerator = ["{event}"], denominator = ["delivered"], per = "campaign", within = "1h", above_percent = {percent:?}, min_denominator = {min} }}
[rule.cooldown]
duration = "6h"
per = "campaign"
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ campaign_id }}}}"
value = '{{"alert": "{id}", "campaign": {{{{ campaign_id | tojson }}}}}}'
"#
        ));
    }

    // Engagement: scores, segments, and the seed's delayed re-engagement with a guard.
    rule(format!(
        r#"
[[rule]]
id = "score-open"
priority = 20
[rule.when]
event_types = ["opened"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "score-click"
priority = 20
[rule.when]
event_types = ["clicked"]
[[rule.then]]
action = "score"
add = 3.0

[[rule]]
id = "score-complaint"
priority = 20
[rule.when]
event_types = ["complained"]
[[rule.then]]
action = "score"
add = -20.0

[[rule]]
id = "champions"
priority = 15
[rule.when]
event_types = ["clicked"]
score = {{ at_least = 10.0 }}
not_in_segment = "champions"
[[rule.then]]
action = "segment"
segment = "champions"
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"champion": {{{{ recipient | tojson }}}}}}'

[[rule]]
id = "heavy-opener-click"
priority = 15
[rule.when]
event_types = ["clicked"]
in_segment = "heavy-opener"
[[rule.then]]
action = "score"
add = 2.0

[[rule]]
id = "re-engage-openers"
priority = 10
[rule.when]
event_types = ["opened"]
campaign_ids = ["c3", "c7"]
[rule.cooldown]
duration = "7d"
per = "recipient"
[[rule.then]]
action = "publish"
delay = "48h"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"reengage": {{{{ recipient | tojson }}}}, "campaign": {{{{ campaign_id | tojson }}}}}}'
[rule.then.guard]
threshold = {{ events = ["clicked"], per = "recipient", within = "48h", at_most = 0 }}
"#
    ));

    // One complaint rule per provider, for the provider's own feedback loop.
    for provider in Provider::ALL {
        let p = provider.as_str();
        rule(format!(
            r#"
[[rule]]
id = "complaint-via-{p}"
priority = 40
respect_suppression = false
[rule.when]
event_types = ["complained"]
providers = ["{p}"]
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"complaint": {{{{ recipient | tojson }}}}, "provider": "{p}", "campaign": {{{{ campaign_id | tojson }}}}}}'
"#
        ));
    }

    // Business domains by pattern: twenty rules, each matching two domains in ~300.
    for k in 1..=20 {
        rule(format!(
            r#"
[[rule]]
id = "b2b-domain-{k}"
priority = 30
[rule.when]
event_types = ["opened", "clicked"]
recipient_domain_matches = ['^dom{k}[05]\.example$', '^(corp|partner)-{k}\.example\.com$']
[[rule.then]]
action = "segment"
segment = "b2b-{k}"
"#
        ));
    }

    // Recipient patterns.
    rule(
        r#"
[[rule]]
id = "role-accounts"
priority = 95
[rule.when]
recipient_matches = ['^(postmaster|abuse|noreply)[0-9]*@']
[[rule.then]]
action = "suppress"
reason = "role account {{ recipient }}"
scope = "marketing"

[[rule]]
id = "test-accounts"
priority = 30
[rule.when]
recipient_matches = ['^(test|qa)[-_.]?[0-9]+@', '@mailinator\.com$']
[[rule.then]]
action = "segment"
segment = "test-accounts"

[[rule]]
id = "plus-addressing"
priority = 30
[rule.when]
event_types = ["clicked"]
recipient_matches = ['^[^@+]+\+[^@]+@']
[[rule.then]]
action = "segment"
segment = "plus-addressed"
"#
        .to_string(),
    );

    // Tags.
    rule(
        r#"
[[rule]]
id = "onboarding-opened"
priority = 25
[rule.when]
event_types = ["opened"]
tags = ["welcome", "onboarding"]
[[rule.then]]
action = "segment"
segment = "onboarding-openers"
"#
        .to_string(),
    );
    for k in 0..7 {
        rule(format!(
            r#"
[[rule]]
id = "promo-{k}-click"
priority = 25
[rule.when]
event_types = ["clicked"]
tags = ["promo-{k}"]
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"promo": {k}, "recipient": {{{{ recipient | tojson }}}}, "url": {{{{ url | tojson }}}}}}'
"#
        ));
    }

    // Metadata.
    for plan in ["free", "pro", "team", "enterprise"] {
        for region in ["eu", "us"] {
            rule(format!(
                r#"
[[rule]]
id = "click-{plan}-{region}"
priority = 25
[rule.when]
event_types = ["clicked"]
metadata = {{ plan = "{plan}", region = "{region}" }}
[[rule.then]]
action = "score"
add = 2.0
"#
            ));
        }
    }

    // Local time windows.
    rule(
        r#"
[[rule]]
id = "complaint-office-hours-paris"
priority = 35
respect_suppression = false
[rule.when]
event_types = ["complained"]
time_window = { zone = "Europe/Paris", from = "09:00", to = "18:00", days = ["mon", "tue", "wed", "thu", "fri"] }
[[rule.then]]
action = "webhook"
url = "https://oncall.example.com/page"
body = '{"complaint": {{ recipient | tojson }}, "at": {{ event_time }}}'

[[rule]]
id = "night-owls-new-york"
priority = 25
[rule.when]
event_types = ["clicked"]
time_window = { zone = "America/New_York", from = "23:00", to = "04:00" }
[[rule.then]]
action = "segment"
segment = "night-owls"

[[rule]]
id = "weekend-bounces-tokyo"
priority = 25
respect_suppression = false
[rule.when]
event_types = ["bounced"]
time_window = { zone = "Asia/Tokyo", from = "00:00", to = "23:59", days = ["sat", "sun"] }
[[rule.then]]
action = "segment"
segment = "weekend-bounced"

[[rule]]
id = "morning-openers-berlin"
priority = 25
[rule.when]
event_types = ["opened"]
campaign_ids = ["c1", "c2"]
time_window = { zone = "Europe/Berlin", from = "06:00", to = "09:00", days = ["mon", "tue", "wed", "thu", "fri"] }
[[rule.then]]
action = "segment"
segment = "morning-openers"

[[rule]]
id = "lunch-clicks-london"
priority = 25
[rule.when]
event_types = ["clicked"]
time_window = { zone = "Europe/London", from = "12:00", to = "13:30" }
[[rule.then]]
action = "score"
add = 0.5
"#
        .to_string(),
    );

    // CEL expressions: some alone (evaluated on every event), some behind other conditions.
    rule(format!(
        r#"
[[rule]]
id = "pricing-visitors"
priority = 25
[rule.when]
expression = 'event_type == "clicked" && url != null && url.contains("/pricing")'
[[rule.then]]
action = "segment"
segment = "pricing-visitors"

[[rule]]
id = "enterprise-at-risk"
priority = 45
respect_suppression = false
[rule.when]
expression = 'has(metadata.plan) && metadata.plan == "enterprise" && event_type in ["bounced", "complained"]'
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"account_risk": {{{{ recipient | tojson }}}}, "event": "{{{{ event_type }}}}"}}'

[[rule]]
id = "edu-recipients"
priority = 25
[rule.when]
expression = 'recipient_domain != null && recipient_domain.endsWith(".edu")'
[[rule.then]]
action = "segment"
segment = "edu"

[[rule]]
id = "german-openers"
priority = 25
[rule.when]
event_types = ["opened"]
expression = 'geo.country == "DE"'
[[rule.then]]
action = "segment"
segment = "de-openers"

[[rule]]
id = "tag-rich-clicks"
priority = 25
[rule.when]
event_types = ["clicked"]
expression = 'size(tags) >= 3'
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "ses-throttled"
priority = 25
respect_suppression = false
[rule.when]
expression = 'provider == "ses" && event_type == "deferred" && mta_response != null && mta_response.contains("421")'
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient_domain }}}}"
value = '{{"throttled": {{{{ recipient_domain | tojson }}}}}}'

[[rule]]
id = "promo-1x-clickers"
priority = 25
[rule.when]
expression = 'event_type == "clicked" && tags.exists(t, t.startsWith("promo-1"))'
[[rule.then]]
action = "segment"
segment = "promo-1x"

[[rule]]
id = "launch-delivered"
priority = 25
[rule.when]
expression = 'campaign_id != null && campaign_id.startsWith("launch-") && event_type == "delivered"'
[[rule.then]]
action = "score"
add = 0.1

[[rule]]
id = "ios-openers"
priority = 25
[rule.when]
event_types = ["opened"]
expression = 'user_agent != null && user_agent.contains("iPhone")'
[[rule.then]]
action = "segment"
segment = "ios"

[[rule]]
id = "undetermined-bounces"
priority = 25
respect_suppression = false
[rule.when]
expression = 'event_type == "bounced" && bounce_class == "undetermined"'
[[rule.then]]
action = "segment"
segment = "undetermined-bounces"
"#
    ));

    // Campaigns: clicks of six campaigns go to the CRM, at most 100 an hour each.
    for k in 0..6 {
        rule(format!(
            r#"
[[rule]]
id = "crm-click-c{k}"
priority = 25
[rule.when]
event_types = ["clicked"]
campaign_ids = ["c{k}"]
[rule.limit]
count = 100
window = "1h"
[[rule.then]]
action = "publish"
topic = "{publish}"
key = "{{{{ recipient }}}}"
value = '{{"clicked": {{{{ recipient | tojson }}}}, "campaign": "c{k}", "url": {{{{ url | tojson }}}}}}'
"#
        ));
    }

    // `any`, `at_least`, dry run, disabled, stop, and the seed's chat notification.
    rule(
        r#"
[[rule]]
id = "any-vip-signal"
priority = 25
[rule.when]
match = "any"
tags = ["vip"]
metadata = { tier = "gold" }
[[rule.then]]
action = "segment"
segment = "vip"

[[rule]]
id = "two-of-three-ses-autumn"
priority = 25
[rule.when]
at_least = 2
event_types = ["delivered"]
providers = ["ses"]
campaign_ids = ["c11"]
[[rule.then]]
action = "score"
add = 0.2

[[rule]]
id = "trial-soft-bounce-suppress"
priority = 80
dry_run = true
[rule.when]
event_types = ["bounced", "deferred"]
threshold = { events = ["bounced", "deferred"], bounce_classes = ["soft"], per = "recipient", within = "24h", at_least = 2 }
[[rule.then]]
action = "suppress"
reason = "2 soft bounces within 24h"
scope = "marketing"

[[rule]]
id = "switched-off"
enabled = false
[rule.when]
event_types = ["delivered"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "seed-list-stop"
priority = 200
stop = true
[rule.when]
recipient_matches = ['^seed[0-9]+@']
[[rule.then]]
action = "segment"
segment = "seed-list"

[[rule]]
id = "complaint-to-chat"
priority = 40
respect_suppression = false
[rule.when]
event_types = ["complained"]
[rule.limit]
count = 20
window = "1h"
[[rule.then]]
action = "webhook"
url = "https://chat.example.com/hooks/T000/B000"
body = '{"text": "Complaint from {{ recipient }} on campaign {{ campaign_id or "none" }} ({{ provider }}/{{ source }})"}'
"#
        .to_string(),
    );
    f
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` events of `RECIPIENTS` recipients over the 20 hours before `end_ms`, seeded.
fn events(n: usize, end_ms: i64) -> Vec<EmailEvent> {
    let mut rng = Rng::new(18);
    let start = end_ms - 20 * HOUR;
    let step = (20 * HOUR) / n.max(1) as i64;
    let types: [(EventType, u64); 12] = [
        (EventType::Delivered, 450),
        (EventType::Sent, 60),
        (EventType::Queued, 20),
        (EventType::Opened, 200),
        (EventType::Clicked, 80),
        (EventType::Deferred, 50),
        (EventType::Bounced, 50),
        (EventType::Complained, 5),
        (EventType::Unsubscribed, 10),
        (EventType::Rejected, 10),
        (EventType::Autoresponded, 10),
        (EventType::Subscribed, 55),
    ];
    let total: u64 = types.iter().map(|(_, w)| w).sum();
    (0..n)
        .map(|seq| {
            let mut pick = rng.below(total);
            let event_type = types
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(EventType::Delivered, |(t, _)| *t);
            let r = rng.below(RECIPIENTS);
            let local = match r {
                r if r % 500 == 7 => format!("noreply{r}"),
                r if r % 700 == 3 => format!("seed{r}"),
                r if r % 40 == 1 => format!("user{r}+news"),
                r => format!("user{r}"),
            };
            let domain = match r % 10 {
                0 => "gmail.com".to_string(),
                1 => "yahoo.com".to_string(),
                2 => "outlook.com".to_string(),
                _ if r % 97 == 5 => format!("uni{}.edu", r % 13),
                _ => format!("dom{}.example", r % 300),
            };
            let provider = Provider::ALL[(r % Provider::ALL.len() as u64) as usize];
            let campaign = rng.below(CAMPAIGNS);
            let mut builder = EventBuilder::new(format!("bench-{seq:07}"))
                .event_type(event_type)
                .provider(provider)
                .at(start + seq as i64 * step)
                .received_at(start + seq as i64 * step + 1500)
                .recipient(format!("{local}@{domain}"))
                .message_id(format!("msg-{}", rng.hex(12)))
                .campaign_id(format!("c{campaign}"))
                .tag("newsletter")
                .metadata(
                    "plan",
                    ["free", "pro", "team", "enterprise"][(r % 4) as usize],
                )
                .metadata("region", if r.is_multiple_of(3) { "us" } else { "eu" })
                .raw_request_id(format!("req-{seq}"))
                .raw_event(format!(
                    "{{\"event\":\"{}\",\"sg_event_id\":\"bench-{seq}\"}}",
                    event_type.as_str()
                ));
            if rng.chance(0.3) {
                builder = builder.tag(format!("promo-{}", rng.below(20)));
            }
            if rng.chance(0.1) {
                builder = builder.tag("welcome");
            }
            if rng.chance(0.02) {
                builder = builder.tag("vip");
            }
            if matches!(event_type, EventType::Opened | EventType::Clicked) {
                let agent = if rng.chance(0.3) {
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
                } else {
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
                };
                builder = builder.user_agent(agent).ip("192.0.2.1");
            }
            if event_type == EventType::Clicked {
                let path =
                    ["/pricing", "/blog/post", "/product/42", "/account"][rng.below(4) as usize];
                builder = builder.url(format!("https://shop.example.com{path}?c={campaign}"));
            }
            if matches!(event_type, EventType::Bounced | EventType::Deferred) {
                builder = builder.mta_response(if rng.chance(0.5) {
                    "421 4.7.0 Try again later"
                } else {
                    "550 5.1.1 User unknown"
                });
            }
            let mut event = builder.build();
            if event_type == EventType::Bounced {
                event.bounce_class = Some(match rng.below(10) {
                    0..=3 => BounceClass::Hard,
                    4..=8 => BounceClass::Soft,
                    _ => BounceClass::Undetermined,
                });
            }
            if matches!(event_type, EventType::Opened | EventType::Clicked) {
                let country = ["DE", "FR", "US", "GB", "JP"][rng.below(5) as usize];
                event.geo = Some(Geo {
                    country: Some(country.into()),
                    region: None,
                    city: None,
                });
            }
            event
        })
        .collect()
}

/// A fresh topic prefix and Redis prefix whose input topic holds `events`.
async fn filled(events: &[EmailEvent]) -> Settings {
    let mut settings = dev_settings();
    let id = unique_name("rlbench");
    settings.kafka.topic_prefix = format!("{id}.");
    settings.kafka.instance_id = "bench".into();
    settings.rules.redis_prefix = format!("{id}:rules:");
    settings.redis.key_prefix = format!("{id}:");
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    create_topic(&names.name(Topic::EventsUnique), PARTITIONS).await;
    create_topic(&names.name(Topic::Actions), 2).await;
    create_topic(&names.name(Topic::Suppressions), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    create_topic(&published_topic(&settings), 1).await;
    settings.rules.publish_topics = vec![published_topic(&settings)];
    let topic = names.name(Topic::EventsUnique);
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&topic, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    // Filling is not measured: wait as long as it takes.
    let mut fill = settings.kafka.clone();
    fill.message_timeout_ms = 600_000;
    let producer = mailpipe_kafka::create_producer(&fill).unwrap();
    let mut pending = Vec::with_capacity(events.len());
    for e in events {
        let payload = schema.encode(e, 512).unwrap();
        let key = e.recipient.clone().unwrap_or_default();
        loop {
            let r = FutureRecord::to(&topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            match producer.send_result(r) {
                Ok(d) => break pending.push(d),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    settings
}

/// The sum of `group`'s committed offsets on `topic`.
fn committed(consumer: &BaseConsumer, topic: &str) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|offsets| {
            offsets
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// What one run measured: the inputs committed after the first commit, the seconds from
/// the first commit to the last, and the CPU seconds this process used meanwhile (the
/// stage or forwarder, its Kafka clients and the probe: a figure the machine's other load
/// does not change much, unlike the rate).
struct Clock {
    inputs: i64,
    secs: f64,
    cpu_secs: f64,
}

impl Clock {
    fn rate(&self) -> f64 {
        self.inputs as f64 / self.secs
    }

    /// CPU milliseconds of this process per 1,000 inputs.
    fn cpu_ms_per_1000(&self) -> f64 {
        self.cpu_secs * 1e6 / self.inputs as f64
    }
}

/// CPU seconds (user + system, every thread) this process has used so far: fields 14 and
/// 15 of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's fixed USER_HZ).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name: field 3 is index 0, so fields 14 and 15 are indexes 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Samples the group's committed offsets every 10 ms (a thread of its own) until they
/// cover all `n` inputs; panics after `STALL_LIMIT` without progress.
fn commit_clock(settings: &Settings, n: i64) -> Clock {
    let group = Stage::Rules.group_id(settings);
    let topic = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::EventsUnique);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", &group)
        // Only offsets are read; they are the transactions' committed ones.
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut first: Option<(Instant, i64, f64)> = None;
    let (mut last, mut progress_at) = (0, Instant::now());
    loop {
        let c = committed(&consumer, &topic);
        let now = Instant::now();
        if c > 0 && first.is_none() {
            first = Some((now, c, process_cpu_secs()));
        }
        if c >= n {
            let cpu = process_cpu_secs();
            let (t0, c0, cpu0) = first.unwrap_or((now, 0, cpu));
            // A run whose first commit covered everything has no interval to time.
            let secs = (now - t0).as_secs_f64().max(0.001);
            return Clock {
                inputs: (n - c0).max(1),
                secs,
                cpu_secs: cpu - cpu0,
            };
        }
        if c != last {
            (last, progress_at) = (c, now);
        } else if progress_at.elapsed() > STALL_LIMIT {
            panic!("stalled at {c} of {n} inputs committed on {topic}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Times `run` (already started, consuming `settings`' input) until the whole input is
/// committed, then stops it.
async fn time_run<E: std::fmt::Debug>(
    settings: &Settings,
    n: usize,
    mut run: JoinHandle<Result<(), E>>,
    shutdown: CancellationToken,
) -> Clock {
    let probe = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || commit_clock(&settings, n as i64))
    };
    let clock = tokio::select! {
        clock = probe => clock.expect("the commit clock"),
        ended = &mut run => panic!("the run ended before its input was committed: {ended:?}"),
    };
    shutdown.cancel();
    run.await.unwrap().unwrap();
    clock
}

/// Redis' own counters: (commands processed, CPU seconds used).
async fn redis_counters() -> (u64, f64) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut connection)
        .await
        .unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        field("total_commands_processed") as u64,
        field("used_cpu_user") + field("used_cpu_sys"),
    )
}

#[derive(Deserialize)]
struct ActionRecord {
    decision: String,
    outcome: String,
}

/// Records on `topic`, read `read_committed`.
async fn count(topic: &str) -> i64 {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || topic_record_count(&topic))
        .await
        .unwrap()
}

/// One run of the no-op forwarder over a fresh copy of `input`.
async fn forwarder_run(input: &[EmailEvent]) -> Clock {
    let settings = filled(input).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let dead_letters = DeadLetters::new(Stage::Rules, &settings, &codec)
        .await
        .unwrap();
    let emitter = mailpipe_stage::emitter(Stage::Rules, &settings, dead_letters).unwrap();
    let topic = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::Actions);
    let forwarder = ForwardAll { emitter, topic };
    let shutdown = CancellationToken::new();
    let run = {
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        tokio::spawn(async move {
            mailpipe_stage::run_consumer(Stage::Rules, &settings, forwarder, shutdown).await
        })
    };
    time_run(&settings, input.len(), run, shutdown).await
}

/// What a run of the rules stage measured and wrote.
struct StageRun {
    clock: Clock,
    settings: Settings,
    rules: usize,
    enabled: usize,
    round_trips: u64,
    redis_commands: u64,
    redis_cpu_secs: f64,
}

/// One run of the rules stage, with the bench's rules, over a fresh copy of `input`.
async fn stage_run(input: &[EmailEvent]) -> StageRun {
    let mut settings = filled(input).await;
    let dir = std::env::temp_dir().join(unique_name("rlbench"));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("rules.toml");
    std::fs::write(&file, rules_file(&published_topic(&settings))).unwrap();
    let rules = mailpipe_stage_6_rules::shared::load_file(&file)
        .unwrap_or_else(|errors| panic!("the bench's rules do not load:\n{}", errors.join("\n")));
    settings.rules.file = file;
    let trips_before = mailpipe_stage_6_rules::state::round_trips();
    let (commands_before, cpu_before) = redis_counters().await;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(mailpipe_stage_6_rules::run(
        settings.clone(),
        shutdown.clone(),
    ));
    let clock = time_run(&settings, input.len(), run, shutdown).await;
    let (commands_after, cpu_after) = redis_counters().await;
    std::fs::remove_dir_all(&dir).ok();
    StageRun {
        clock,
        rules: rules.len(),
        enabled: rules.rules().iter().filter(|r| r.enabled).count(),
        settings,
        round_trips: mailpipe_stage_6_rules::state::round_trips() - trips_before,
        redis_commands: commands_after - commands_before,
        redis_cpu_secs: cpu_after - cpu_before,
    }
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn rates(runs: &[f64]) -> String {
    let rates: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    rates.join(", ")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "bench: run by scripts/bench-rules.sh"]
async fn bench_rules_against_a_forwarder() {
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env("RULES_BENCH_EVENTS", 50_000);
    let rounds = env("RULES_BENCH_ROUNDS", 3).max(1);
    let input = events(n, now_ms());

    // The two take turns, round by round, so a drift of the machine's load favours neither.
    let (mut forwarder, mut stage) = (Vec::new(), Vec::new());
    let (mut forwarder_cpu, mut stage_cpu) = (Vec::new(), Vec::new());
    let mut last = None;
    for round in 0..rounds {
        if round % 2 == 0 {
            let clock = forwarder_run(&input).await;
            forwarder.push(clock.rate());
            forwarder_cpu.push(clock.cpu_ms_per_1000());
            let run = stage_run(&input).await;
            stage.push(run.clock.rate());
            stage_cpu.push(run.clock.cpu_ms_per_1000());
            last = Some(run);
        } else {
            let run = stage_run(&input).await;
            stage.push(run.clock.rate());
            stage_cpu.push(run.clock.cpu_ms_per_1000());
            last = Some(run);
            let clock = forwarder_run(&input).await;
            forwarder.push(clock.rate());
            forwarder_cpu.push(clock.cpu_ms_per_1000());
        }
    }
    let last = last.expect("at least one round");

    // What the last run wrote (every run writes the same).
    let names = TopicNames::new(&last.settings.kafka.topic_prefix);
    let actions_topic = names.name(Topic::Actions);
    let actions = count(&actions_topic).await;
    let suppressions = count(&names.name(Topic::Suppressions)).await;
    let published = count(&published_topic(&last.settings)).await;
    let dead_letters = count(&names.name(Topic::Dlq)).await;
    let codec = AvroCodec::new(&last.settings.schema_registry.url).unwrap();
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for (_, payload) in consume_exactly(&actions_topic, actions as usize).await {
        let record: ActionRecord = codec.decode(&payload).await.unwrap();
        *decisions
            .entry(format!("{}/{}", record.decision, record.outcome))
            .or_default() += 1;
    }

    let (fwd_rate, stage_rate) = (median(forwarder.clone()), median(stage.clone()));
    println!(
        "inputs: {n} events, {} rules ({} enabled), {rounds} rounds, medians",
        last.rules, last.enabled
    );
    println!(
        "no-op forwarder: {fwd_rate:.0} events/s (rounds: {})",
        rates(&forwarder)
    );
    println!(
        "rules stage:     {stage_rate:.0} events/s (rounds: {})",
        rates(&stage)
    );
    println!("ratio:           {:.2}", stage_rate / fwd_rate);
    println!(
        "process CPU per 1,000 events (this process: stage or forwarder, Kafka clients), medians: forwarder {:.0} ms, rules stage {:.0} ms (rounds: {})",
        median(forwarder_cpu.clone()),
        median(stage_cpu.clone()),
        rates(&stage_cpu)
    );
    println!(
        "written by a run: {actions} actions, {suppressions} suppressions, {published} published records, {dead_letters} dead letters"
    );
    let decisions: Vec<String> = decisions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("actions by decision/outcome: {}", decisions.join(", "));
    println!(
        "redis, a run: {:.4} round trips per event ({}), {:.2} commands per event, {:.2} s redis CPU",
        last.round_trips as f64 / n as f64,
        last.round_trips,
        last.redis_commands as f64 / n as f64,
        last.redis_cpu_secs
    );
}
