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
    /// Webhook sources by source id.
    pub sources: BTreeMap<String, SourceSettings>,
}

/// One ESP account/tenant that posts to us.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub provider: Provider,
    /// Keys, tokens or credentials of this source; more than one while rotating. Never logged.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Client addresses allowed to post for this source; empty allows any.
    #[serde(default)]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
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
    pub librdkafka: BTreeMap<String, String>,
    pub partitions: TopicPartitions,
    pub consumer: ConsumerSettings,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    pub timeout_ms: u64,
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
