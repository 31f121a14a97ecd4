//! The verify stage: decode each raw request, find its configured source, check its
//! authenticity with the pure library (`mailpipe_verify::verify`), and forward it to
//! `mail.verified` (credentials stripped; SNS protocol messages as control records) or to
//! `mail.rejected` with a reason from the closed set. Both outputs are keyed by request id.
//! A record that cannot even be decoded becomes one `mail.dlq` record.
//!
//! Invariant: every input message yields exactly one output (verified, rejected or dead
//! letter) and is completed only after that output is acknowledged.
//!
//! Invariant: no secret or header value is logged; outputs carry no credentials. The only
//! outbound HTTP is to URLs the library vetted (SNS certificates, SubscribeURLs).

pub mod fetch;
pub mod records;
pub mod tokens;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use mailpipe_avro::records::RawRecord;
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_stage::{decode_retrying, forward, now_ms, DeadLetters, Origin, OutRecord, Stage};
use mailpipe_telemetry::names;
use mailpipe_verify::{
    required_certificate, strip_credentials, CertificateCache, Context, Reason, Rejection, Request,
    SnsControl, SourceConfig, SourceOptions, Verified,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::fetch::{Fetcher, Purpose};
use crate::records::{Envelope, Outcome};
use crate::tokens::UsedTokens;

/// Bound on each certificate or SubscribeURL GET (connect, headers and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest certificate or SubscribeURL answer read (SNS certificates are about 2 KiB).
pub const FETCH_MAX_BYTES: usize = 64 * 1024;

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = VerifyHandler::new(&settings).await?;
    mailpipe_stage::run_consumer(Stage::Verify, &settings, handler, shutdown).await
}

/// Verifies raw requests. Owns the process's SNS certificate cache and its connection to
/// the Mailgun tokens every instance shares in Redis.
pub struct VerifyHandler {
    codec: AvroCodec,
    producer: FutureProducer,
    verified_topic: String,
    verified_schema: RegisteredSchema,
    rejected_topic: String,
    rejected_schema: RegisteredSchema,
    dead_letters: DeadLetters,
    sources: Sources,
    verifier: Verifier,
    tokens: UsedTokens,
}

impl VerifyHandler {
    /// Parses every source's keys (logging their problems), registers the output schemas
    /// and creates the producer and the HTTP client; Redis connects lazily.
    pub async fn new(settings: &Settings) -> anyhow::Result<VerifyHandler> {
        let sources = Sources::new(settings);
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let register = |topic: String, schema: &'static str, what: &'static str| {
            let codec = &codec;
            async move {
                let registered = codec
                    .register(&TopicSchema::new(&topic, schema)?)
                    .await
                    .with_context(|| format!("registering the {what} schema"))?;
                anyhow::Ok((topic, registered))
            }
        };
        let (verified_topic, verified_schema) = register(
            names.name(Topic::Verified),
            mailpipe_avro::VERIFIED_REQUEST_SCHEMA,
            "verified request",
        )
        .await?;
        let (rejected_topic, rejected_schema) = register(
            names.name(Topic::Rejected),
            mailpipe_avro::REJECTED_REQUEST_SCHEMA,
            "rejected request",
        )
        .await?;
        let dead_letters = DeadLetters::new(Stage::Verify, settings, &codec).await?;
        Ok(VerifyHandler {
            codec,
            producer: mailpipe_kafka::create_producer(&settings.kafka)?,
            verified_topic,
            verified_schema,
            rejected_topic,
            rejected_schema,
            dead_letters,
            sources,
            verifier: Verifier {
                certificates: CertificateCache::new(settings.verify.certificate_cache_entries),
                fetcher: Fetcher::new(FETCH_TIMEOUT, FETCH_MAX_BYTES)?,
            },
            tokens: UsedTokens::new(
                &settings.redis.url,
                &settings.redis.key_prefix,
                Duration::from_millis(settings.verify.redis_timeout_ms),
            )?,
        })
    }

    /// The one record an input message becomes.
    async fn output(&mut self, message: &OwnedMessage) -> Result<OutRecord, HandlerError> {
        let payload = message.payload().unwrap_or_default();
        let raw: RawRecord = match decode_retrying(&self.codec, payload).await {
            Ok(raw) => raw,
            Err(detail) => return self.dead_letter(message, detail),
        };
        let (mut request, envelope) = records::split(raw);
        let key = Some(request.request_id.as_bytes().to_vec());
        let Some((source_id, source)) = self.sources.find(&envelope) else {
            let rejection = Rejection::unknown_source(format!(
                "no source {:?} of provider {:?} is configured",
                clip(&envelope.source),
                clip(&envelope.provider)
            ));
            self.sources.strip_all(&mut request.headers);
            let provider = envelope.provider.parse::<Provider>().ok();
            let labels = Labels {
                provider: provider.map_or("unknown", Provider::as_str),
                source: "unknown".into(),
            };
            return self.rejected(request, envelope, &rejection, &labels, key);
        };
        let labels = Labels {
            provider: source.provider().as_str(),
            source: source_id.to_string(),
        };
        let result = match self.verifier.verify(&request, source).await {
            Ok(verified) => {
                self.tokens
                    .accept(&request, labels.provider, verified)
                    .await
            }
            Err(rejection) => Err(rejection),
        };
        strip_credentials(source, &mut request.headers);
        match result {
            Ok(verified) => {
                let outcome = self.verifier.act_on(&verified, &labels).await;
                let record =
                    records::verified_record(request, envelope, &verified, &outcome, now_ms());
                let kind = match outcome {
                    Outcome::Events => "events",
                    Outcome::Control { .. } => "control",
                };
                let key_index = verified
                    .key_index
                    .map_or_else(|| "none".to_string(), |i| i.to_string());
                metrics::counter!(names::VERIFY_VERIFIED, "provider" => labels.provider,
                    "source" => labels.source, "kind" => kind, "key_index" => key_index)
                .increment(1);
                let payload = self
                    .verified_schema
                    .encode(&record, record.body.len() + 512)
                    .map_err(|e| format!("encoding a verified record: {e}"))?;
                Ok(OutRecord {
                    topic: self.verified_topic.clone(),
                    key,
                    payload,
                })
            }
            Err(rejection) => self.rejected(request, envelope, &rejection, &labels, key),
        }
    }

    fn rejected(
        &self,
        request: Request,
        envelope: Envelope,
        rejection: &Rejection,
        labels: &Labels,
        key: Option<Vec<u8>>,
    ) -> Result<OutRecord, HandlerError> {
        metrics::counter!(names::VERIFY_REJECTED, "provider" => labels.provider,
            "source" => labels.source.clone(), "reason" => rejection.reason.as_str())
        .increment(1);
        tracing::info!(request_id = %request.request_id, provider = labels.provider,
            source = %labels.source, reason = rejection.reason.as_str(),
            detail = %rejection.detail, "request rejected");
        let record = records::rejected_record(request, envelope, rejection, now_ms());
        let payload = self
            .rejected_schema
            .encode(&record, record.body.len() + 512)
            .map_err(|e| format!("encoding a rejected record: {e}"))?;
        Ok(OutRecord {
            topic: self.rejected_topic.clone(),
            key,
            payload,
        })
    }

    /// A record that cannot be read at all: kept whole on `mail.dlq`, never on
    /// `mail.rejected` (which needs the request's fields).
    fn dead_letter(
        &self,
        message: &OwnedMessage,
        detail: String,
    ) -> Result<OutRecord, HandlerError> {
        self.dead_letters
            .record(message, "undecodable", detail, Origin::default())
    }
}

impl Handler for VerifyHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for delivery in batch {
            let output = self.output(&delivery.message).await?;
            forward(&self.producer, vec![output], delivery.ack);
        }
        Ok(())
    }
}

/// Metric labels of one request: configured ids or "unknown", never text as sent.
struct Labels {
    provider: &'static str,
    source: String,
}

/// The configured sources, parsed once.
struct Sources {
    settings: Settings,
    configs: HashMap<String, SourceConfig>,
    /// One empty source per provider: stripping with all of them removes every provider's
    /// credential headers, for requests whose source is unknown.
    every_provider: Vec<SourceConfig>,
}

impl Sources {
    fn new(settings: &Settings) -> Sources {
        let mut configs = HashMap::new();
        for (id, source) in &settings.sources {
            let config = SourceConfig::from_settings(source, &settings.verify);
            for problem in config.problems() {
                tracing::warn!(source = %id, provider = %config.provider(), problem = %problem,
                    "source configuration problem");
            }
            if !config.is_usable() {
                tracing::warn!(source = %id, provider = %config.provider(),
                    "source has no usable key: every request is rejected as no_usable_key");
            }
            configs.insert(id.clone(), config);
        }
        tracing::info!(sources = configs.len(), "sources loaded");
        let every_provider = Provider::ALL
            .iter()
            .map(|p| SourceConfig::new(*p, &[], SourceOptions::default()))
            .collect();
        Sources {
            settings: settings.clone(),
            configs,
            every_provider,
        }
    }

    /// The source a record names, if it is configured for the record's provider.
    fn find(&self, envelope: &Envelope) -> Option<(&str, &SourceConfig)> {
        let provider = envelope.provider.parse::<Provider>().ok()?;
        let (id, _) = self.settings.source(provider, Some(&envelope.source))?;
        self.configs.get(id).map(|config| (id, config))
    }

    fn strip_all(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        for config in &self.every_provider {
            strip_credentials(config, headers);
        }
    }
}

/// Verification state of the process: certificates fetched so far, and the HTTP client
/// that fetches certificates and confirms subscriptions.
struct Verifier {
    certificates: CertificateCache,
    fetcher: Fetcher,
}

impl Verifier {
    /// Fetches the SNS certificate the request needs (once per URL; transient failures are
    /// retried, never turned into a rejection), then verifies.
    async fn verify(
        &mut self,
        request: &Request,
        source: &SourceConfig,
    ) -> Result<Verified, Rejection> {
        if let Some(url) = required_certificate(request, source)? {
            if !self.certificates.contains(&url) {
                let pem = self
                    .fetcher
                    .get_retrying(url.as_str(), Purpose::Certificate)
                    .await
                    .map_err(|why| {
                        Rejection::new(
                            Reason::UntrustedCertificate,
                            format!("SigningCertURL {why}"),
                        )
                    })?;
                self.certificates.insert_pem(url, &pem)?;
            }
        }
        mailpipe_verify::verify(
            request,
            source,
            &mut Context {
                certificates: &self.certificates,
            },
        )
    }

    /// What a verified request is: events, or an SNS control message, confirmed here.
    async fn act_on(&self, verified: &Verified, labels: &Labels) -> Outcome {
        let action = match &verified.control {
            None => return Outcome::Events,
            Some(SnsControl::ConfirmSubscription {
                topic_arn,
                subscribe_url,
            }) => {
                match self
                    .fetcher
                    .get_retrying(subscribe_url, Purpose::SubscriptionConfirmation)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(source = %labels.source, topic_arn = %topic_arn,
                            "SNS subscription confirmed");
                        records::SNS_SUBSCRIPTION_CONFIRMED
                    }
                    Err(why) => {
                        tracing::warn!(source = %labels.source, topic_arn = %topic_arn, why = %why,
                            "SNS subscription could not be confirmed");
                        records::SNS_SUBSCRIPTION_CONFIRMATION_FAILED
                    }
                }
            }
            Some(SnsControl::Unsubscribed { topic_arn }) => {
                tracing::info!(source = %labels.source, topic_arn = %topic_arn,
                    "SNS unsubscribe confirmation received");
                records::SNS_UNSUBSCRIBE_CONFIRMED
            }
        };
        metrics::counter!(names::VERIFY_CONTROL, "source" => labels.source.clone(), "action" => action)
            .increment(1);
        Outcome::Control { action }
    }
}

/// At most 64 characters of a field as sent, for a rejection detail.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_avro::records::VerifiedKind;
    use mailpipe_verify::testing;

    fn settings_with(sources: &[(&str, Provider)]) -> Settings {
        let mut settings = Settings::load_from(None).unwrap();
        for (id, provider) in sources {
            let source = serde_json::json!({"provider": provider.as_str(), "secrets": ["k"]});
            settings
                .sources
                .insert(id.to_string(), serde_json::from_value(source).unwrap());
        }
        settings
    }

    fn envelope(provider: &str, source: &str) -> Envelope {
        Envelope {
            provider: provider.into(),
            source: source.into(),
            remote_addr: None,
        }
    }

    #[test]
    fn a_source_is_found_only_under_its_own_provider() {
        let sources = Sources::new(&settings_with(&[
            ("acme", Provider::Mailgun),
            ("generic", Provider::Generic),
        ]));
        let found = |p: &str, s: &str| sources.find(&envelope(p, s)).map(|(id, _)| id.to_string());
        assert_eq!(found("mailgun", "acme").as_deref(), Some("acme"));
        assert_eq!(found("generic", "generic").as_deref(), Some("generic"));
        assert_eq!(found("sendgrid", "acme"), None, "provider mismatch");
        assert_eq!(found("mailgun", "other"), None, "not configured");
        assert_eq!(found("nosuch", "acme"), None, "unknown provider");
    }

    #[test]
    fn unknown_sources_lose_every_providers_credential_headers() {
        let sources = Sources::new(&settings_with(&[]));
        let mut headers: Vec<(String, Vec<u8>)> = [
            "authorization",
            "x-twilio-email-event-webhook-signature",
            "svix-signature",
            "x-postal-signature-256",
            "x-mandrill-signature",
            "signature",
            "x-signature",
            "content-type",
        ]
        .iter()
        .map(|n| (n.to_string(), b"secret".to_vec()))
        .collect();
        sources.strip_all(&mut headers);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type"]);
    }

    /// Every provider's signed example verifies through the stage's verifier (SES with its
    /// certificate already cached: no fetch), and its verified record carries no credential.
    #[tokio::test]
    async fn signed_examples_verify_and_leave_no_credentials() {
        let now = 1_764_000_000;
        for provider in Provider::ALL {
            let example = testing::example(provider, now);
            let mut verifier = Verifier {
                certificates: example.certificates.clone(),
                fetcher: Fetcher::new(Duration::from_secs(1), 1024).unwrap(),
            };
            let mut request = example.request.clone();
            let verified = verifier
                .verify(&request, &example.source)
                .await
                .unwrap_or_else(|e| panic!("{provider}: {e}"));
            strip_credentials(&example.source, &mut request.headers);
            let labels = Labels {
                provider: provider.as_str(),
                source: "s".into(),
            };
            let outcome = verifier.act_on(&verified, &labels).await;
            assert_eq!(outcome, Outcome::Events, "{provider}");
            let record = records::verified_record(
                request,
                envelope(provider.as_str(), "s"),
                &verified,
                &outcome,
                now * 1000,
            );
            assert_eq!(record.kind, VerifiedKind::Events);
            for header in &record.headers {
                let value = String::from_utf8_lossy(&header.value);
                assert!(
                    !header.name.contains("signature") && header.name != "authorization",
                    "{provider}: {} kept",
                    header.name
                );
                for secret in testing::EXAMPLE_SECRETS {
                    assert!(
                        !value.contains(secret),
                        "{provider}: secret in {}",
                        header.name
                    );
                }
            }
        }
    }

    #[test]
    fn clip_keeps_at_most_64_characters_on_a_char_boundary() {
        assert_eq!(clip("acme"), "acme");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 64);
    }
}
