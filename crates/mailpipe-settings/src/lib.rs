//! Settings of every mailpipe binary: built-in defaults (`defaults.toml`), then the user's
//! TOML file (`MAILPIPE_CONFIG`, default `config/mailpipe.toml`), then `MAILPIPE_*` env vars.
//!
//! Invariant: a binary either starts with settings that passed [`Settings::validate`], or
//! fails at start with every problem listed, each naming its key.

mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
pub use mailpipe_model::Provider;
use serde::{Deserialize, Serialize};

/// The built-in defaults: every key, commented.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");
/// Env var naming the config file.
pub const CONFIG_ENV: &str = "MAILPIPE_CONFIG";
/// Config file used when `MAILPIPE_CONFIG` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "config/mailpipe.toml";
/// Prefix of env overrides, `MAILPIPE_<SECTION>__<KEY>`; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "MAILPIPE_";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path} does not exist (set {CONFIG_ENV} to a readable file)")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub schema_registry: SchemaRegistrySettings,
    pub clickhouse: ClickHouseSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub receiver: ReceiverSettings,
    pub verify: VerifySettings,
    pub dedupe: DedupeSettings,
    pub aggregate: AggregateSettings,
    pub rules: RulesSettings,
    pub delivery: DeliverySettings,
    pub console: ConsoleSettings,
    pub privacy: PrivacySettings,
    pub enrichment: EnrichmentSettings,
    pub insight: InsightSettings,
    /// Webhook sources by source id.
    pub sources: BTreeMap<String, SourceSettings>,
}

/// One ESP account/tenant that posts to us. `Debug` shows how many secrets, never them.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub provider: Provider,
    /// Keys, tokens or credentials of this source; more than one while rotating. Never logged.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Client addresses allowed to post for this source; empty allows any.
    #[serde(default)]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// Overrides `[verify] timestamp_tolerance_seconds` for this source (e.g. SendGrid
    /// retries that reuse an old signed timestamp). Not used by ses: see `sns_max_age_seconds`.
    #[serde(default)]
    pub timestamp_tolerance_seconds: Option<u64>,
    /// SES: largest accepted age of an SNS message's signed `Timestamp` at receipt. None (the
    /// default) checks no age: SNS keeps a message's Timestamp across retries for up to
    /// hours, and a replayed signed message only repeats events that dedupe drops.
    #[serde(default)]
    pub sns_max_age_seconds: Option<u64>,
    /// Mandrill: the webhook URL exactly as entered in Mandrill; it is part of what is signed.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// SES: TopicArns whose SNS messages are accepted; empty accepts none (fails closed).
    #[serde(default)]
    pub sns_topic_arns: Vec<String>,
    /// SES: hosts SNS certificate and subscribe URLs may point at; `*` stands for one DNS
    /// label. Empty means `sns.*.amazonaws.com` and `sns.*.amazonaws.com.cn`.
    #[serde(default)]
    pub sns_certificate_hosts: Vec<String>,
    /// SES, tests only: also accept `http://` certificate URLs on loopback addresses.
    #[serde(default)]
    pub sns_insecure_loopback: bool,
    /// Generic: header carrying the body's HMAC-SHA256; default `x-signature`.
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Generic: how that header encodes the HMAC.
    #[serde(default)]
    pub signature_encoding: SignatureEncoding,
    /// Postmark, SparkPost, Brevo, Mailjet: a custom header whose value must be one of
    /// `secrets` (besides Basic and Bearer `Authorization`).
    #[serde(default)]
    pub token_header: Option<String>,
}

impl std::fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSettings")
            .field("provider", &self.provider)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field(
                "timestamp_tolerance_seconds",
                &self.timestamp_tolerance_seconds,
            )
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "<set>"))
            .field("sns_topic_arns", &self.sns_topic_arns)
            .field("sns_certificate_hosts", &self.sns_certificate_hosts)
            .field("sns_insecure_loopback", &self.sns_insecure_loopback)
            .field("sns_max_age_seconds", &self.sns_max_age_seconds)
            .field("signature_header", &self.signature_header)
            .field("signature_encoding", &self.signature_encoding)
            .field("token_header", &self.token_header)
            .finish()
    }
}

/// How the generic provider's signature header encodes the MAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// The verify stage (`mailpipe-verify`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// Largest accepted distance between a signed timestamp and the time of receipt.
    pub timestamp_tolerance_seconds: u64,
    /// Bound on one Redis call (connect or reply) recording a Mailgun token; on timeout or
    /// error the call is retried with backoff and the stage holds.
    pub redis_timeout_ms: u64,
    /// SNS signing certificates kept in memory, by URL.
    pub certificate_cache_entries: usize,
    /// Time spent at most on fetching one SNS certificate URL, retries included.
    pub certificate_fetch_budget_ms: u64,
    /// How long a certificate URL whose fetch failed is refused without a new fetch.
    pub certificate_failure_cache_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic_prefix: String,
    pub client_id: String,
    pub session_timeout_ms: u32,
    pub message_timeout_ms: u32,
    pub linger_ms: u32,
    pub compression: String,
    pub replication_factor: i32,
    /// librdkafka properties for every client (producers, consumers, admin).
    pub librdkafka: BTreeMap<String, String>,
    /// librdkafka properties for producers only, applied after `librdkafka`.
    pub producer_librdkafka: BTreeMap<String, String>,
    /// librdkafka properties for consumers only, applied after `librdkafka`.
    pub consumer_librdkafka: BTreeMap<String, String>,
    pub partitions: TopicPartitions,
    pub consumer: ConsumerSettings,
    /// Stages that read and write topics commit their outputs and input offsets in Kafka
    /// transactions (read_committed readers see each output once); off: at-least-once.
    pub exactly_once: bool,
    /// This process's name among the instances of its stage; empty: `<hostname>-<pid>`.
    /// The transactional id is `<group id>.<instance_id>`.
    pub instance_id: String,
    pub transactions: TransactionSettings,
}

/// Bounds of one transaction of a stage in exactly-once mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionSettings {
    pub max_records: usize,
    pub interval_ms: u64,
    pub timeout_ms: u32,
}

/// Partition count of each topic (see `mailpipe_kafka::Topic`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPartitions {
    pub raw: i32,
    pub verified: i32,
    pub rejected: i32,
    pub events: i32,
    pub dlq: i32,
    pub events_unique: i32,
    pub actions: i32,
    pub suppressions: i32,
    pub deliveries: i32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub max_in_flight_per_partition: usize,
    pub max_batch: usize,
    pub batch_wait_ms: u64,
    pub commit_interval_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySettings {
    pub url: String,
}

/// `Debug` leaves the password out.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for ClickHouseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSettings")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The dedupe stage (`mailpipe-dedupe`): seen event ids in Redis.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeSettings {
    /// How long an event id is remembered; a copy arriving later passes as new.
    pub ttl_seconds: u64,
    /// Bound on one pipelined Redis call (connect or reply) before it is retried.
    pub redis_timeout_ms: u64,
}

/// The rules stage (`mailpipe-rules`): the rules file and the rules' state in Redis.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    /// The rules file (TOML); checked at start and reloaded when it changes.
    pub file: PathBuf,
    /// How often the file is checked for a change.
    pub reload_check_ms: u64,
    /// A recipient's engagement score is the sum of its contributions over this window.
    pub score_window_days: u64,
    /// Prefix of every Redis key of the rules' state.
    pub redis_prefix: String,
    /// Bound on one pipelined Redis call before the batch is retried.
    pub redis_timeout_ms: u64,
    /// Topics `publish` actions may write to; a publish to another is skipped, on record.
    pub publish_topics: Vec<String>,
}

/// Outbound webhook delivery (`mailpipe-deliver`). `Debug` shows how many secrets, never
/// them.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Standard Webhooks signing secrets (`whsec_…`); all sign every request.
    pub secrets: Vec<String>,
    /// Targets allowed to resolve to internal addresses (`host[:port]` or CIDR).
    pub allow_targets: Vec<String>,
    /// Waits between attempts (`5s`, `2m`, `1h`…).
    pub schedule: Vec<String>,
    /// Each wait varies by ± this fraction.
    pub jitter: f64,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    pub retry_after_max_seconds: u64,
    pub target_concurrency: usize,
    pub target_rate_per_second: f64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub breaker_max_cooldown_ms: u64,
    pub redis_prefix: String,
    pub redis_timeout_ms: u64,
    pub lease_ms: u64,
    /// Per target (`scheme://host:port`): its own schedule and limits.
    #[serde(default)]
    pub targets: BTreeMap<String, DeliveryTargetSettings>,
}

/// What one target may set differently from `[delivery]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTargetSettings {
    pub schedule: Option<Vec<String>>,
    pub target_concurrency: Option<usize>,
    pub target_rate_per_second: Option<f64>,
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySettings")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("allow_targets", &self.allow_targets)
            .field("schedule", &self.schedule)
            .field("jitter", &self.jitter)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("retry_after_max_seconds", &self.retry_after_max_seconds)
            .field("target_concurrency", &self.target_concurrency)
            .field("target_rate_per_second", &self.target_rate_per_second)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("breaker_max_cooldown_ms", &self.breaker_max_cooldown_ms)
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("lease_ms", &self.lease_ms)
            .field("targets", &self.targets)
            .finish()
    }
}

/// Privacy: keyed hashes of recipients (`mailpipe erase`, `hash_recipients`).
/// `Debug` never shows the key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    /// The HMAC key of recipient hashes (16+ bytes). Needed by `mailpipe erase` and by
    /// `hash_recipients`; keep it secret and stable (a new key makes old hashes unmatched).
    pub hash_key: String,
    /// Store a keyed hash of each recipient (domain kept) in the analytics tables instead
    /// of the address, and no request-body excerpts.
    pub hash_recipients: bool,
}

impl std::fmt::Debug for PrivacySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacySettings")
            .field(
                "hash_key",
                &if self.hash_key.is_empty() {
                    "(none)"
                } else {
                    "(redacted)"
                },
            )
            .field("hash_recipients", &self.hash_recipients)
            .finish()
    }
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("interval_seconds", &self.interval_seconds)
            .field("latency_p99_seconds", &self.latency_p99_seconds)
            .field("window_seconds", &self.window_seconds)
            .field("volume_fraction", &self.volume_fraction)
            .field("volume_min_days", &self.volume_min_days)
            .field("dead_letters_per_window", &self.dead_letters_per_window)
            .field("rejections_per_window", &self.rejections_per_window)
            .field("lag_min", &self.lag_min)
            .field("lag_for_seconds", &self.lag_for_seconds)
            .field("bounce_rate_max", &self.bounce_rate_max)
            .field("complaint_rate_max", &self.complaint_rate_max)
            .field("rate_min_events", &self.rate_min_events)
            .field(
                "webhook_url",
                &if self.webhook_url.is_empty() {
                    "(none)"
                } else {
                    "(redacted)"
                },
            )
            .finish()
    }
}

/// The smallest `[privacy] hash_key` accepted, in bytes.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// The normalize stage's enrichment of engagement events (`mailpipe_enrich`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentSettings {
    /// Client, OS, device class and machine opens from the user agent.
    pub user_agents: bool,
    /// A MaxMind-format (.mmdb, City layout) file to geolocate IPs of engagement events the
    /// provider did not locate; empty: no lookups. Read once at start; never a network call.
    pub geoip_database: String,
}

/// Engagement history and predictions (`mailpipe_insight`): the console API, `mailpipe
/// predict` and the rules' `history` condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InsightSettings {
    /// IANA zone the hours of the week of send-time predictions are counted in.
    pub time_zone: String,
    /// How many days of history a prediction reads.
    pub history_days: u32,
    /// Rules stage: how long one recipient's or domain's history is reused before it is
    /// read again from ClickHouse.
    pub history_cache_seconds: u64,
    /// Rules stage: most histories kept in that cache.
    pub history_cache_entries: usize,
    /// Bound on one history or prediction query.
    pub query_timeout_ms: u64,
}

/// The console (`mailpipe-console`): the web page, its JSON API and the alerts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    pub listen: std::net::SocketAddr,
    /// Bound on one ClickHouse or Kafka query of the API.
    pub query_timeout_ms: u64,
    /// Bound on the rows of one list in an answer.
    pub max_rows: u32,
    pub alerts: AlertSettings,
}

/// The console's alerts: each is evaluated every `interval_seconds`; thresholds below.
/// `Debug` never shows `webhook_url` (it may carry a token).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub interval_seconds: u64,
    /// `processing_latency`: p99 of received → queryable over the last `window_seconds`.
    pub latency_p99_seconds: f64,
    /// The window of the latency, dead-letter and rejection alerts.
    pub window_seconds: u64,
    /// `volume_low`: a source's last hour under this fraction of the median of the same
    /// hour on the previous 7 days (only with `volume_min_days` days of history).
    pub volume_fraction: f64,
    pub volume_min_days: u32,
    /// `dead_letters_growing` / `rejections_growing`: at least this many in the window.
    pub dead_letters_per_window: u64,
    pub rejections_per_window: u64,
    /// `consumer_lag_growing`: a group's lag at least `lag_min` and not shrinking for
    /// `lag_for_seconds`.
    pub lag_min: u64,
    pub lag_for_seconds: u64,
    /// `bounce_rate_high` / `complaint_rate_high`, per provider and per campaign over the
    /// last hour, once `rate_min_events` events count.
    pub bounce_rate_max: f64,
    pub complaint_rate_max: f64,
    pub rate_min_events: u64,
    /// Where alert changes are posted (JSON, signed like outbound webhooks with the
    /// `[delivery] secrets`); empty: not sent.
    pub webhook_url: String,
}

/// The aggregate stage (`mailpipe-aggregate`): batched loads into ClickHouse.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSettings {
    /// A load is sent when it holds this many rows…
    pub max_rows: usize,
    /// …or this many bytes of row data…
    pub max_bytes: usize,
    /// …or its first row waited this long.
    pub max_wait_ms: u64,
    /// How far behind the newest event time of a partition an event may be and still count
    /// as on time; older ones are counted as late (a correction of their window).
    pub allowed_lateness_seconds: u64,
    /// Whole months kept in ClickHouse; older monthly partitions are dropped by
    /// `mailpipe retention` and by the stage every `retention_interval_seconds`. 0 keeps all.
    pub retention_months: u32,
    pub retention_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_filter: String,
    /// A consumer stage with inputs in flight and none completed for this long answers
    /// `/readyz` with 503 (its store is down, or it is stuck).
    pub ready_stall_seconds: u64,
    pub metrics_listen: StageMetricsListen,
}

/// Prometheus listen address of each consumer stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageMetricsListen {
    pub verify: std::net::SocketAddr,
    pub normalize: std::net::SocketAddr,
    pub dedupe: std::net::SocketAddr,
    pub aggregate: std::net::SocketAddr,
    pub rules: std::net::SocketAddr,
    pub deliver: std::net::SocketAddr,
}

/// The edge receiver (`mailpipe-receiver`): listener, limits and guards.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSettings {
    pub listen: std::net::SocketAddr,
    pub max_body_bytes: u64,
    pub produce_timeout_ms: u64,
    pub retry_after_secs: u32,
    pub max_concurrent_requests: usize,
    pub max_connections: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub readiness_interval_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, ingress).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limit: RateLimitSettings,
}

impl ReceiverSettings {
    /// The largest Kafka record a raw request can make: the largest body allowed, its
    /// headers, and 64 KiB for the Avro framing and record headers; within 1 MB..1 GB.
    /// Producers that write bodies and the topics that carry them (`mailpipe
    /// create-topics`: `max.message.bytes`) must allow this much.
    pub fn max_record_bytes(&self) -> u64 {
        let needed = self.max_body_bytes + self.max_header_bytes as u64 + 64 * 1024;
        needed.clamp(1_000_000, 1_000_000_000)
    }

    /// The largest record a stage writes from a raw request: [`Self::max_record_bytes`]
    /// plus [`DERIVED_RECORD_MARGIN_BYTES`]. The stages' producers and the topics of verified,
    /// rejected and dead-lettered requests must allow this much, so whatever the receiver
    /// accepted can be forwarded.
    pub fn max_derived_record_bytes(&self) -> u64 {
        with_derived_record_margin(self.max_record_bytes())
    }
}

/// Room a stage's record may take beyond the raw record it copies: verify adds a reason
/// and a detail to the request's fields, a dead letter adds the stage, reason, detail,
/// the input's coordinates and ids around a copy of the input. Those are short texts (a
/// few hundred bytes); 64 KiB leaves ample room.
pub const DERIVED_RECORD_MARGIN_BYTES: u64 = 64 * 1024;

/// `max_record_bytes` plus [`DERIVED_RECORD_MARGIN_BYTES`], at most 1 GB (librdkafka's
/// largest `message.max.bytes`).
pub fn with_derived_record_margin(max_record_bytes: u64) -> u64 {
    (max_record_bytes + DERIVED_RECORD_MARGIN_BYTES).min(1_000_000_000)
}

/// Token buckets per source and per client IP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub backend: RateLimitBackend,
    /// Sustained requests per second per source; 0 turns the per-source limit off.
    pub per_source_per_second: f64,
    pub per_source_burst: u32,
    /// Sustained requests per second per client IP; 0 turns the per-IP limit off.
    pub per_ip_per_second: f64,
    pub per_ip_burst: u32,
    pub max_tracked_keys: usize,
    pub redis_timeout_ms: u64,
}

/// Where rate-limit buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// In this process: each receiver replica has its own buckets.
    Memory,
    /// In Redis (`[redis]`): replicas share the buckets.
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The source a request to `/webhooks/{provider}[/{source}]` belongs to, if configured
    /// for that provider. Without a source segment the source id is the provider's name.
    pub fn source(
        &self,
        provider: Provider,
        source: Option<&str>,
    ) -> Option<(&str, &SourceSettings)> {
        let id = source.unwrap_or(provider.as_str());
        self.sources
            .get_key_value(id)
            .filter(|(_, s)| s.provider == provider)
            .map(|(id, s)| (id.as_str(), s))
    }

    /// Loads from `MAILPIPE_CONFIG` (or `config/mailpipe.toml` when unset and present) and
    /// the process environment, then validates.
    pub fn load() -> Result<Settings, SettingsError> {
        let path = match std::env::var_os(CONFIG_ENV) {
            Some(explicit) => Some(PathBuf::from(explicit)),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        Settings::load_from(path.as_deref())
    }

    /// Loads defaults, then `path` (which must exist when given), then env overrides.
    pub fn load_from(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(path) = path {
            if !path.is_file() {
                return Err(SettingsError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only MAILPIPE_<SECTION>__<KEY> variables are config overrides: every setting
        // lives in a section, so variables without `__` (MAILPIPE_CONFIG,
        // MAILPIPE_RUN_DIR of the scripts, ...) are other tools' and are left alone.
        let figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        Settings::from_figment(&figment)
    }

    /// Extracts and validates; every extraction and validation error is reported.
    pub fn from_figment(figment: &Figment) -> Result<Settings, SettingsError> {
        let settings: Settings = figment.extract().map_err(|err| {
            SettingsError::Invalid(err.into_iter().map(describe_figment_error).collect())
        })?;
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }
}

/// One line per error, naming the key and where its value came from.
fn describe_figment_error(err: figment::Error) -> String {
    let key = if err.path.is_empty() {
        None
    } else {
        Some(err.path.join("."))
    };
    let origin = err
        .metadata
        .as_ref()
        .map(|meta| match &meta.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", meta.name),
        })
        .unwrap_or_default();
    match key {
        Some(key) => format!("{key}: {}{origin}", err.kind),
        None => format!("{}{origin}", err.kind),
    }
}

#[cfg(test)]
mod tests;
