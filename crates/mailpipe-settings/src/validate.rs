//! Semantic checks that serde cannot express. All problems are collected, not just the
//! first, so an operator fixes a config file in one pass.

use mailpipe_model::{SecretKind, SourceOption};

use crate::{Provider, Settings};

const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

impl Settings {
    /// Every problem found, each naming its key; empty when the settings are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, why: String| {
            if !ok {
                problems.push(format!("{key}: {why}"));
            }
        };
        let privacy = &self.privacy;
        check(
            privacy.hash_key.is_empty() || privacy.hash_key.len() >= crate::MIN_HASH_KEY_BYTES,
            "privacy.hash_key",
            format!(
                "must be at least {} bytes (or empty)",
                crate::MIN_HASH_KEY_BYTES
            ),
        );
        check(
            !privacy.hash_recipients || !privacy.hash_key.is_empty(),
            "privacy.hash_recipients",
            "needs privacy.hash_key".into(),
        );
        let insight = &self.insight;
        check(
            insight.time_zone.parse::<chrono_tz::Tz>().is_ok(),
            "insight.time_zone",
            format!("{:?} is not an IANA time zone", insight.time_zone),
        );
        check(
            insight.history_days > 0,
            "insight.history_days",
            "must be at least 1".into(),
        );
        check(
            insight.history_cache_entries > 0,
            "insight.history_cache_entries",
            "must be at least 1".into(),
        );
        // enrichment.geoip_database is opened (and checked) by the normalize stage at start,
        // not here: one configuration serves every binary, and the file may be mounted only
        // where the normalize stage runs.
        let alerts = &self.console.alerts;
        check(
            alerts.interval_seconds > 0,
            "console.alerts.interval_seconds",
            "must be at least 1".into(),
        );
        check(
            (0.0..=1.0).contains(&alerts.volume_fraction),
            "console.alerts.volume_fraction",
            format!("must be between 0 and 1, got {}", alerts.volume_fraction),
        );
        check(
            alerts.webhook_url.is_empty()
                || alerts.webhook_url.starts_with("https://")
                || alerts.webhook_url.starts_with("http://"),
            "console.alerts.webhook_url",
            "must be an http(s) URL or empty".into(),
        );
        check(
            self.console.max_rows > 0,
            "console.max_rows",
            "must be at least 1".into(),
        );
        let kafka = &self.kafka;
        check(
            kafka.brokers.split(',').all(|b| is_host_port(b.trim())),
            "kafka.brokers",
            format!("expected host:port[,host:port...], got {:?}", kafka.brokers),
        );
        check(
            kafka
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "kafka.topic_prefix",
            format!(
                "only letters, digits, '.', '_' and '-' are allowed in topic names, got {:?}",
                kafka.topic_prefix
            ),
        );
        check(
            !kafka.client_id.is_empty(),
            "kafka.client_id",
            "must not be empty".into(),
        );
        check(
            (6000..=3_600_000).contains(&kafka.session_timeout_ms),
            "kafka.session_timeout_ms",
            format!("must be 6000..=3600000, got {}", kafka.session_timeout_ms),
        );
        check(
            kafka.message_timeout_ms >= 1000,
            "kafka.message_timeout_ms",
            format!("must be at least 1000, got {}", kafka.message_timeout_ms),
        );
        check(
            kafka.linger_ms <= 1000,
            "kafka.linger_ms",
            format!("must be at most 1000, got {}", kafka.linger_ms),
        );
        check(
            COMPRESSIONS.contains(&kafka.compression.as_str()),
            "kafka.compression",
            format!(
                "expected one of {COMPRESSIONS:?}, got {:?}",
                kafka.compression
            ),
        );
        check(
            kafka.replication_factor >= 1,
            "kafka.replication_factor",
            format!("must be at least 1, got {}", kafka.replication_factor),
        );
        let p = &kafka.partitions;
        for (name, count) in [
            ("raw", p.raw),
            ("verified", p.verified),
            ("rejected", p.rejected),
            ("events", p.events),
            ("dlq", p.dlq),
            ("events_unique", p.events_unique),
            ("actions", p.actions),
            ("suppressions", p.suppressions),
            ("deliveries", p.deliveries),
        ] {
            check(
                (1..=10_000).contains(&count),
                &format!("kafka.partitions.{name}"),
                format!("must be 1..=10000, got {count}"),
            );
        }
        let t = &kafka.transactions;
        check(
            t.max_records >= 1,
            "kafka.transactions.max_records",
            "must be at least 1".into(),
        );
        check(
            (1..=60_000).contains(&t.interval_ms),
            "kafka.transactions.interval_ms",
            format!("must be 1..=60000, got {}", t.interval_ms),
        );
        // 15 min is the broker's default transaction.max.timeout.ms.
        check(
            (1000..=900_000).contains(&t.timeout_ms),
            "kafka.transactions.timeout_ms",
            format!("must be 1000..=900000, got {}", t.timeout_ms),
        );
        check(
            kafka
                .instance_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "kafka.instance_id",
            format!(
                "only letters, digits, '.', '_' and '-' are allowed, got {:?}",
                kafka.instance_id
            ),
        );
        let c = &kafka.consumer;
        for (name, value) in [
            (
                "max_in_flight_per_partition",
                c.max_in_flight_per_partition as u64,
            ),
            ("max_batch", c.max_batch as u64),
            ("commit_interval_ms", c.commit_interval_ms),
        ] {
            check(
                value >= 1,
                &format!("kafka.consumer.{name}"),
                "must be at least 1".into(),
            );
        }
        check(
            is_url(&self.schema_registry.url, &["http", "https"]),
            "schema_registry.url",
            format!(
                "expected an http(s) URL, got {:?}",
                self.schema_registry.url
            ),
        );
        check(
            is_url(&self.clickhouse.url, &["http", "https"]),
            "clickhouse.url",
            format!("expected an http(s) URL, got {:?}", self.clickhouse.url),
        );
        check(
            !self.clickhouse.database.is_empty()
                && self
                    .clickhouse
                    .database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "clickhouse.database",
            format!(
                "expected letters, digits and '_', got {:?}",
                self.clickhouse.database
            ),
        );
        check(
            self.clickhouse.timeout_ms >= 100,
            "clickhouse.timeout_ms",
            format!("must be at least 100, got {}", self.clickhouse.timeout_ms),
        );
        check(
            is_url(&self.redis.url, &["redis", "rediss", "redis+unix", "unix"]),
            "redis.url",
            "expected a redis:// or rediss:// URL".into(),
        );
        // At least an hour (ESP retries come minutes to days later), at most a year.
        check(
            (3600..=31_536_000).contains(&self.dedupe.ttl_seconds),
            "dedupe.ttl_seconds",
            format!("must be 3600..=31536000, got {}", self.dedupe.ttl_seconds),
        );
        check(
            (10..=60_000).contains(&self.dedupe.redis_timeout_ms),
            "dedupe.redis_timeout_ms",
            format!("must be 10..=60000, got {}", self.dedupe.redis_timeout_ms),
        );
        let delivery = &self.delivery;
        check(
            delivery.timeout_ms >= delivery.connect_timeout_ms && delivery.connect_timeout_ms > 0,
            "delivery.timeout_ms",
            "must be at least delivery.connect_timeout_ms, which must be > 0".into(),
        );
        check(
            delivery.lease_ms > delivery.timeout_ms,
            "delivery.lease_ms",
            format!(
                "must be longer than delivery.timeout_ms ({}), got {}",
                delivery.timeout_ms, delivery.lease_ms
            ),
        );
        check(
            delivery.target_concurrency >= 1 && delivery.target_rate_per_second > 0.0,
            "delivery.target_concurrency",
            "target_concurrency must be >= 1 and target_rate_per_second > 0".into(),
        );
        check(
            delivery
                .secrets
                .iter()
                .all(|s| s.trim_start().starts_with("whsec_")),
            "delivery.secrets",
            "every secret must be a Standard Webhooks secret, whsec_ + base64".into(),
        );
        let rules = &self.rules;
        check(
            !rules.file.as_os_str().is_empty(),
            "rules.file",
            "must name the rules file".into(),
        );
        check(
            (100..=600_000).contains(&rules.reload_check_ms),
            "rules.reload_check_ms",
            format!("must be 100..=600000, got {}", rules.reload_check_ms),
        );
        check(
            (1..=3650).contains(&rules.score_window_days),
            "rules.score_window_days",
            format!("must be 1..=3650, got {}", rules.score_window_days),
        );
        check(
            (10..=60_000).contains(&rules.redis_timeout_ms),
            "rules.redis_timeout_ms",
            format!("must be 10..=60000, got {}", rules.redis_timeout_ms),
        );
        check(
            rules.publish_topics.iter().all(|t| !t.trim().is_empty()),
            "rules.publish_topics",
            "must not hold an empty topic name".into(),
        );
        let aggregate = &self.aggregate;
        check(
            (1..=1_000_000).contains(&aggregate.max_rows),
            "aggregate.max_rows",
            format!("must be 1..=1000000, got {}", aggregate.max_rows),
        );
        check(
            (1024..=1 << 30).contains(&aggregate.max_bytes),
            "aggregate.max_bytes",
            format!("must be 1024..=1073741824, got {}", aggregate.max_bytes),
        );
        check(
            (1..=600_000).contains(&aggregate.max_wait_ms),
            "aggregate.max_wait_ms",
            format!("must be 1..=600000, got {}", aggregate.max_wait_ms),
        );
        check(
            aggregate.allowed_lateness_seconds <= 86_400,
            "aggregate.allowed_lateness_seconds",
            format!(
                "must be at most 86400, got {}",
                aggregate.allowed_lateness_seconds
            ),
        );
        check(
            aggregate.retention_months <= 1200,
            "aggregate.retention_months",
            format!("must be 0..=1200, got {}", aggregate.retention_months),
        );
        check(
            aggregate.retention_interval_seconds >= 60,
            "aggregate.retention_interval_seconds",
            format!(
                "must be at least 60, got {}",
                aggregate.retention_interval_seconds
            ),
        );
        for id in self.sources.keys() {
            check(
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)),
                &format!("sources.{id}"),
                "source ids use lower-case letters, digits, '_' and '-' (they appear in URLs)"
                    .into(),
            );
        }
        // Sections with checks of their own; `check` above borrows `problems` until here.
        problems.extend(self.validate_librdkafka_overrides());
        problems.extend(self.validate_receiver());
        problems.extend(self.validate_verify());
        problems
    }
}

/// librdkafka properties mailpipe's guarantees rest on. The pass-through maps are applied
/// after our own settings, so an entry here would silently replace ours: refused at start.
/// Names as librdkafka's CONFIGURATION.md lists them, aliases included.
const PRODUCER_GUARANTEES: &[(&str, &str)] = &[
    ("acks", ACKS),
    ("request.required.acks", ACKS), // librdkafka's own name; `acks` is its alias
    (
        "enable.idempotence",
        "mailpipe's producers are idempotent (enable.idempotence=true): a retried batch is \
         neither written twice nor reordered",
    ),
    (
        "transactional.id",
        "a stage's transactional id is <consumer group>.<kafka.instance_id>: set \
         kafka.instance_id instead",
    ),
    (
        "transaction.timeout.ms",
        "set kafka.transactions.timeout_ms instead",
    ),
];
const ACKS: &str = "mailpipe's producers use acks=all: a record counts as written (the \
    receiver answers 2xx, a stage completes its input) only once every in-sync replica has it";

const CONSUMER_GUARANTEES: &[(&str, &str)] = &[
    ("enable.auto.commit", AUTO_COMMIT),
    // The legacy (simple consumer) name, which librdkafka still accepts.
    ("auto.commit.enable", AUTO_COMMIT),
    (
        "enable.auto.offset.store",
        "the consumer loop commits only the contiguous prefix of offsets a stage has \
         completed (enable.auto.offset.store=false); the automatic store marks every message \
         handed to the stage as consumed, processed or not, for any commit without explicit \
         offsets",
    ),
    (
        "offset.store.method",
        "offsets are committed to the group coordinator (librdkafka's default `broker`); \
         this deprecated property would move them elsewhere",
    ),
    (
        "isolation.level",
        "consumers read only committed records (librdkafka's default read_committed); \
         read_uncommitted would pass on records of aborted transactions",
    ),
];
const AUTO_COMMIT: &str = "the consumer loop commits only the contiguous prefix of offsets \
    a stage has completed (enable.auto.commit=false); auto commit would commit messages not \
    yet processed, which a crash then loses";

impl Settings {
    /// Refuses overrides of the properties above in the maps that reach the clients they
    /// matter to: producer ones in `[kafka.librdkafka]` and `[kafka.producer_librdkafka]`,
    /// consumer ones in `[kafka.librdkafka]` and `[kafka.consumer_librdkafka]`. In the other
    /// role's map a property has no effect (librdkafka only warns), so it is left alone.
    /// Names are compared ignoring case and surrounding spaces, to be safe.
    fn validate_librdkafka_overrides(&self) -> Vec<String> {
        let kafka = &self.kafka;
        let maps = [
            ("librdkafka", &kafka.librdkafka, true, true),
            (
                "producer_librdkafka",
                &kafka.producer_librdkafka,
                true,
                false,
            ),
            (
                "consumer_librdkafka",
                &kafka.consumer_librdkafka,
                false,
                true,
            ),
        ];
        let mut problems = Vec::new();
        for (map, properties, producers, consumers) in maps {
            for key in properties.keys() {
                let name = key.trim().to_ascii_lowercase();
                let guarded = PRODUCER_GUARANTEES
                    .iter()
                    .filter(|_| producers)
                    .chain(CONSUMER_GUARANTEES.iter().filter(|_| consumers))
                    .find(|(guarded, _)| *guarded == name);
                if let Some((_, why)) = guarded {
                    problems.push(format!(
                        "kafka.{map}.\"{key}\": refused: {why}; an entry here is applied \
                         after mailpipe's own client settings and would silently change that. \
                         Remove the key"
                    ));
                }
            }
        }
        problems
    }
}

impl Settings {
    /// Checks of `[receiver]`; ranges keep every limit meaningful (and hyper's own minimums).
    fn validate_receiver(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let r = &self.receiver;
        let mut in_range = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!(
                    "receiver.{key}: must be {min}..={max}, got {value}"
                ));
            }
        };
        // librdkafka refuses records over 1e9 bytes; a body must fit in one record.
        in_range("max_body_bytes", r.max_body_bytes, 1, 512 * 1024 * 1024);
        in_range("produce_timeout_ms", r.produce_timeout_ms, 100, 120_000);
        in_range("retry_after_secs", r.retry_after_secs.into(), 1, 3600);
        in_range(
            "max_concurrent_requests",
            r.max_concurrent_requests as u64,
            1,
            1_000_000,
        );
        in_range("max_connections", r.max_connections as u64, 1, 1_000_000);
        in_range("max_headers", r.max_headers as u64, 1, 10_000);
        in_range(
            "max_header_bytes",
            r.max_header_bytes as u64,
            1024,
            1024 * 1024,
        );
        in_range(
            "header_read_timeout_ms",
            r.header_read_timeout_ms,
            100,
            600_000,
        );
        in_range(
            "body_read_timeout_ms",
            r.body_read_timeout_ms,
            100,
            3_600_000,
        );
        in_range("shutdown_timeout_ms", r.shutdown_timeout_ms, 0, 600_000);
        in_range(
            "readiness_interval_ms",
            r.readiness_interval_ms,
            100,
            600_000,
        );
        let rl = &r.rate_limit;
        in_range(
            "rate_limit.per_source_burst",
            rl.per_source_burst.into(),
            1,
            10_000_000,
        );
        in_range(
            "rate_limit.per_ip_burst",
            rl.per_ip_burst.into(),
            1,
            10_000_000,
        );
        in_range(
            "rate_limit.max_tracked_keys",
            rl.max_tracked_keys as u64,
            100,
            100_000_000,
        );
        in_range(
            "rate_limit.redis_timeout_ms",
            rl.redis_timeout_ms,
            1,
            10_000,
        );
        for (key, rate) in [
            ("per_source_per_second", rl.per_source_per_second),
            ("per_ip_per_second", rl.per_ip_per_second),
        ] {
            if !(rate.is_finite() && (0.0..=10_000_000.0).contains(&rate)) {
                problems.push(format!(
                    "receiver.rate_limit.{key}: must be 0 (no limit) ..= 10000000, got {rate}"
                ));
            }
        }
        problems
    }
}

impl Settings {
    /// Checks of `[verify]` and of the provider-specific keys of each source. A missing
    /// secret, webhook URL or TopicArn is not an error here: such a source fails closed at
    /// verification (`no_usable_key`), so a half-configured development source still loads.
    fn validate_verify(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let v = &self.verify;
        let max_tolerance = 7 * 24 * 3600;
        if !(1..=max_tolerance).contains(&v.timestamp_tolerance_seconds) {
            problems.push(format!(
                "verify.timestamp_tolerance_seconds: must be 1..={max_tolerance}, got {}",
                v.timestamp_tolerance_seconds
            ));
        }
        if !(1..=60_000).contains(&v.redis_timeout_ms) {
            problems.push("verify.redis_timeout_ms: must be 1..=60000".into());
        }
        if !(1..=10_000).contains(&v.certificate_cache_entries) {
            problems.push("verify.certificate_cache_entries: must be 1..=10000".into());
        }
        if !(1..=600_000).contains(&v.certificate_fetch_budget_ms) {
            problems.push("verify.certificate_fetch_budget_ms: must be 1..=600000".into());
        }
        if !(1..=86_400).contains(&v.certificate_failure_cache_seconds) {
            problems.push("verify.certificate_failure_cache_seconds: must be 1..=86400".into());
        }
        for (id, source) in &self.sources {
            let mut check = |ok: bool, key: &str, why: &str| {
                if !ok {
                    problems.push(format!("sources.{id}.{key}: {why}"));
                }
            };
            let provider = source.provider;
            if let Some(t) = source.timestamp_tolerance_seconds {
                check(
                    (1..=max_tolerance).contains(&t),
                    "timestamp_tolerance_seconds",
                    "must be 1..=604800",
                );
            }
            let spec = provider.spec();
            let takes = |option| spec.takes(option);
            check(
                source.timestamp_tolerance_seconds.is_none()
                    || takes(SourceOption::TimestampTolerance),
                "timestamp_tolerance_seconds",
                "not used by ses (SNS retries keep their Timestamp, so no age is checked by \
                 default); set sns_max_age_seconds to limit the age",
            );
            if let Some(age) = source.sns_max_age_seconds {
                check(
                    (1..=max_tolerance).contains(&age),
                    "sns_max_age_seconds",
                    "must be 1..=604800",
                );
            }
            check(
                source.webhook_url.is_none() || takes(SourceOption::WebhookUrl),
                "webhook_url",
                &only_used_by(SourceOption::WebhookUrl),
            );
            if let Some(url) = &source.webhook_url {
                check(
                    is_url(url, &["http", "https"]),
                    "webhook_url",
                    "expected an http(s) URL",
                );
            }
            let sns_only = only_used_by(SourceOption::Sns);
            let sns = takes(SourceOption::Sns);
            check(
                source.sns_topic_arns.is_empty() || sns,
                "sns_topic_arns",
                &sns_only,
            );
            check(
                source.sns_certificate_hosts.is_empty() || sns,
                "sns_certificate_hosts",
                &sns_only,
            );
            check(
                !source.sns_insecure_loopback || sns,
                "sns_insecure_loopback",
                &sns_only,
            );
            check(
                source.sns_max_age_seconds.is_none() || sns,
                "sns_max_age_seconds",
                &sns_only,
            );
            check(source.secrets.is_empty() || spec.secrets != SecretKind::AmazonCertificate, "secrets", "ses sources take no secrets: SNS messages are signed by Amazon; list sns_topic_arns");
            for arn in &source.sns_topic_arns {
                check(
                    arn.starts_with("arn:") && arn.contains(":sns:"),
                    "sns_topic_arns",
                    "expected SNS topic ARNs (arn:aws:sns:<region>:<account>:<topic>)",
                );
            }
            for host in &source.sns_certificate_hosts {
                check(
                    is_host_pattern(host),
                    "sns_certificate_hosts",
                    "expected lower-case host names; `*` may stand for one whole label",
                );
            }
            let signature_options = source.signature_header.is_some()
                || source.signature_encoding != crate::SignatureEncoding::Hex;
            check(
                !signature_options || takes(SourceOption::SignatureHeader),
                "signature_header",
                &format!(
                    "signature_header and signature_encoding are {}",
                    only_used_by(SourceOption::SignatureHeader)
                ),
            );
            check(
                source.token_header.is_none() || takes(SourceOption::TokenHeader),
                "token_header",
                &only_used_by(SourceOption::TokenHeader),
            );
            for (key, name) in [
                ("signature_header", &source.signature_header),
                ("token_header", &source.token_header),
            ] {
                if let Some(name) = name {
                    check(is_header_name(name), key, "expected an HTTP header name");
                }
            }
        }
        problems
    }
}

/// "only used by mandrill", "only used by postmark, sparkpost, brevo and mailjet": the
/// providers whose spec takes `option`, in `Provider::ALL` order.
fn only_used_by(option: SourceOption) -> String {
    let users: Vec<&str> = Provider::taking(option).map(Provider::as_str).collect();
    let list = match users.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "no provider".to_string(),
    };
    format!("only used by {list}")
}

/// A host name, or a pattern whose `*` labels each match one DNS label.
fn is_host_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            label == "*"
                || (!label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        })
}

/// An RFC 9110 token, as header names are.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn is_url(s: &str, schemes: &[&str]) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => schemes.contains(&scheme) && !rest.is_empty(),
        None => false,
    }
}
