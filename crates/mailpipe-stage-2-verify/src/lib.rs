//! The verify stage: decode each raw request, find its configured source, check its
//! authenticity with the pure library (`mailpipe_verify_core::verify`), and forward it to
//! `mail.verified` (credentials stripped; SNS protocol messages as control records) or to
//! `mail.rejected` with a reason from the closed set. Both outputs are keyed by request id.
//! A record that cannot even be decoded becomes one `mail.dlq` record. The stage is a
//! [`MessageHandler`] on the stage kit's per-message frame, which decodes, dead-letters,
//! emits and holds the deferred SNS messages (see [`VerifyHandler`]).
//!
//! Invariant: every input message yields exactly one output (verified, rejected or dead
//! letter) and is completed only after that output is acknowledged.
//!
//! Invariant: no secret or header value is logged; outputs carry no credentials. The only
//! outbound HTTP is to URLs the library vetted (SNS certificates, SubscribeURLs).
//!
//! Invariant: a certificate fetch holds the stage for at most one fetch budget per batch
//! (`[verify] certificate_fetch_budget_ms`): the batch's other messages go first, missing
//! certificates are fetched concurrently, and a URL that failed is refused at once for a
//! while. Mailgun tokens are recorded in Redis; while it is down the stage holds.

pub mod control;
pub mod fetch;
pub mod records;
pub mod replay;
pub mod tokens;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mailpipe_avro::records::RawRecord;
use mailpipe_kafka::Topic;
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_stage::{
    now_ms, MessageHandler, Origin, OutRecord, Output, Pass, PerMessage, Processed, Stage,
    StageError, StageKit,
};
use mailpipe_telemetry::names;
use mailpipe_verify_core::{
    required_certificate, CertificateCache, CertificateUrl, Context, Reason, Rejected, Rejection,
    Request, SnsControl, SourceConfig, StrippedRequest, Verified,
};
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

pub use crate::control::ControlAction;
use crate::fetch::{FetchFailure, Fetcher, Purpose, RecentFailures};
use crate::records::{Envelope, Outcome};
use crate::tokens::UsedTokens;

/// Bound on each certificate or SubscribeURL GET (connect, headers and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest certificate or SubscribeURL answer read (SNS certificates are about 2 KiB).
pub const FETCH_MAX_BYTES: usize = 64 * 1024;
/// Certificate URLs whose failure is remembered at most (the soonest to expire go first).
pub const FAILED_URLS_REMEMBERED: usize = 10_000;

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    mailpipe_stage::kit::run::<PerMessage<VerifyHandler>>(Stage::Verify, &settings, shutdown).await
}

/// Verifies raw requests. Owns the process's SNS certificate cache and its connection to
/// the Mailgun tokens every instance shares in Redis.
///
/// Messages are forwarded in batch order, except SNS messages whose certificate is
/// neither cached nor known to fail: the frame holds them aside (their acks held, so their
/// partition's commit waits for them) while the certificate is fetched in the background,
/// within the fetch budget, and completes them as soon as it is known: at the next batch
/// or the next idle tick. So a certificate URL that never answers holds nothing but the
/// messages that need it, for one budget at most, and a URL that just failed is refused at
/// once. At shutdown their fetches are awaited (each within the budget), or made now.
pub struct VerifyHandler {
    verified: Output,
    rejected: Output,
    sources: Sources,
    verifier: Verifier,
    tokens: UsedTokens,
}

impl MessageHandler for VerifyHandler {
    type Input = RawRecord;

    /// Each input's record is emitted at once, so a slow subscription confirmation for a
    /// later input does not hold back the outputs of earlier ones.
    const EMIT_EACH: bool = true;

    /// Parses every source's keys (logging their problems), registers the output schemas
    /// and creates the HTTP client; Redis connects lazily.
    async fn new(kit: &StageKit) -> anyhow::Result<VerifyHandler> {
        let settings = kit.settings();
        Ok(VerifyHandler {
            sources: Sources::new(settings),
            verified: kit.output(Topic::Verified).await?,
            rejected: kit.output(Topic::Rejected).await?,
            verifier: Verifier::new(settings)?,
            tokens: UsedTokens::new(
                &settings.redis.url,
                &settings.redis.key_prefix,
                Duration::from_millis(settings.verify.redis_timeout_ms),
            )?,
        })
    }

    fn origin(raw: &RawRecord) -> Origin<'_> {
        Origin {
            raw_request_id: Some(&raw.request_id),
            provider: Some(&raw.provider),
            source: Some(&raw.source),
        }
    }

    /// The verified or rejected record of a raw request; deferred while the SNS
    /// certificate it needs is fetched (its URL is noted for [`Verifier::start_wanted`]),
    /// except at shutdown, when it is fetched now. A record that cannot even be decoded is
    /// the frame's: kept whole on `mail.dlq`, never on `mail.rejected` (which needs the
    /// request's fields).
    async fn process(
        &mut self,
        _kit: &StageKit,
        _message: &OwnedMessage,
        raw: RawRecord,
        pass: Pass,
    ) -> Result<Processed, StageError> {
        let fetch = match pass {
            Pass::Normal => Fetch::Later,
            Pass::Final => Fetch::Now,
        };
        let (request, envelope) = records::split(raw);
        Ok(match self.output_of(request, envelope, fetch).await? {
            Some(record) => Processed::Records(vec![record]),
            None => Processed::Deferred,
        })
    }

    /// Takes in the certificate fetches that ended; the deferred messages are tried again
    /// only when one did.
    fn deferred_ready(&mut self) -> bool {
        self.verifier.collect_fetched()
    }

    fn after_batch(&mut self) {
        self.verifier.start_wanted();
    }

    async fn before_finish(&mut self) {
        self.verifier.start_wanted();
        self.verifier.await_fetches().await;
    }
}

impl VerifyHandler {
    /// The verified or rejected record of a decoded request (`None`: deferred until its
    /// certificate is fetched).
    async fn output_of(
        &mut self,
        request: Request,
        envelope: Envelope,
        fetch: Fetch,
    ) -> Result<Option<OutRecord>, StageError> {
        let key = Some(request.request_id.as_bytes().to_vec());
        let Some((source_id, source)) = self.sources.find(&envelope) else {
            let rejection = Rejection::unknown_source(format!(
                "no source {:?} of provider {:?} is configured",
                clip(&envelope.source),
                clip(&envelope.provider)
            ));
            let request = StrippedRequest::of_unknown_source(request);
            let provider = envelope.provider.parse::<Provider>().ok();
            let labels = Labels {
                provider: provider.map_or("unknown", Provider::as_str),
                source: "unknown".into(),
            };
            return self
                .rejected(request, envelope, &rejection, &labels, key)
                .map(Some);
        };
        let labels = Labels {
            provider: source.provider().as_str(),
            source: source_id.to_string(),
        };
        let result = match self.verifier.verify(request, source, fetch).await {
            Checked::Deferred => return Ok(None),
            Checked::Done(Ok(verified)) => self.tokens.accept(labels.provider, verified).await,
            Checked::Done(Err(rejected)) => Err(rejected),
        };
        match result {
            Ok(verified) => {
                let outcome = self.verifier.act_on(&verified, &labels).await;
                let key_index = verified
                    .key_index()
                    .map_or_else(|| "none".to_string(), |i| i.to_string());
                let record = records::verified_record(verified, envelope, &outcome, now_ms());
                let kind = match outcome {
                    Outcome::Events => "events",
                    Outcome::Control { .. } => "control",
                };
                metrics::counter!(names::VERIFY_VERIFIED, "provider" => labels.provider,
                    "source" => labels.source, "kind" => kind, "key_index" => key_index)
                .increment(1);
                let size_hint = record.body.len() + 512;
                self.verified.record(key, &record, size_hint).map(Some)
            }
            Err(Rejected { rejection, request }) => self
                .rejected(request, envelope, &rejection, &labels, key)
                .map(Some),
        }
    }

    fn rejected(
        &self,
        request: StrippedRequest,
        envelope: Envelope,
        rejection: &Rejection,
        labels: &Labels,
        key: Option<Vec<u8>>,
    ) -> Result<OutRecord, StageError> {
        metrics::counter!(names::VERIFY_REJECTED, "provider" => labels.provider,
            "source" => labels.source.clone(), "reason" => rejection.reason.as_str())
        .increment(1);
        tracing::info!(request_id = %request.request().request_id, provider = labels.provider,
            source = %labels.source, reason = rejection.reason.as_str(),
            detail = %rejection.detail, "request rejected");
        let record = records::rejected_record(request, envelope, rejection, now_ms());
        let size_hint = record.body.len() + 512;
        self.rejected.record(key, &record, size_hint)
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
        Sources {
            settings: settings.clone(),
            configs,
        }
    }

    /// The source a record names, if it is configured for the record's provider.
    fn find(&self, envelope: &Envelope) -> Option<(&str, &SourceConfig)> {
        let provider = envelope.provider.parse::<Provider>().ok()?;
        let (id, _) = self.settings.source(provider, Some(&envelope.source))?;
        self.configs.get(id).map(|config| (id, config))
    }
}

/// Verification state of the process: certificates fetched so far, certificate URLs that
/// failed recently, and the HTTP client that fetches certificates and confirms
/// subscriptions.
struct Verifier {
    certificates: CertificateCache,
    failures: RecentFailures<Rejection>,
    /// Certificate URLs that deferred messages wait for, not fetched yet.
    wanted: Vec<CertificateUrl>,
    /// Fetches under way, in the background, and their URLs.
    fetches: tokio::task::JoinSet<(CertificateUrl, Result<Vec<u8>, FetchFailure>)>,
    fetching: std::collections::HashSet<CertificateUrl>,
    fetcher: Fetcher,
    /// Time spent at most on one certificate URL or SubscribeURL.
    budget: Duration,
}

/// Whether verifying may fetch a missing certificate now, or defers the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Later,
    Now,
}

/// What [`Verifier::verify`] came to.
// One per request, moved once: boxing the variant that carries the request buys nothing.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Done(Result<Verified, Rejected>),
    /// The certificate is neither cached nor known to fail: fetch it, then verify again.
    Deferred,
}

impl Verifier {
    fn new(settings: &Settings) -> anyhow::Result<Verifier> {
        let verify = &settings.verify;
        Ok(Verifier {
            certificates: CertificateCache::new(verify.certificate_cache_entries),
            failures: RecentFailures::new(
                Duration::from_secs(verify.certificate_failure_cache_seconds),
                FAILED_URLS_REMEMBERED,
            ),
            wanted: Vec::new(),
            fetches: tokio::task::JoinSet::new(),
            fetching: std::collections::HashSet::new(),
            fetcher: Fetcher::new(FETCH_TIMEOUT, FETCH_MAX_BYTES)?,
            budget: Duration::from_millis(verify.certificate_fetch_budget_ms),
        })
    }

    /// Verifies, once the SNS certificate the request needs is at hand: cached, or a
    /// rejection remembered for its URL, or (with [`Fetch::Now`]) fetched within the
    /// budget; with [`Fetch::Later`] a missing one defers the request.
    async fn verify(&mut self, request: Request, source: &SourceConfig, fetch: Fetch) -> Checked {
        let rejected = |request, rejection| {
            Checked::Done(Err(Rejected {
                rejection,
                request: StrippedRequest::new(source, request),
            }))
        };
        let url = match required_certificate(&request, source) {
            Ok(url) => url,
            Err(rejection) => return rejected(request, rejection),
        };
        if let Some(url) = url.filter(|url| !self.certificates.contains(url)) {
            if let Some(rejection) = self.failures.get(url.as_str(), Instant::now()) {
                metrics::counter!(names::VERIFY_FETCH_FAILURES_REMEMBERED).increment(1);
                return rejected(request, rejection);
            }
            match fetch {
                Fetch::Later => {
                    if !self.wanted.contains(&url) {
                        self.wanted.push(url);
                    }
                    return Checked::Deferred;
                }
                Fetch::Now => {
                    let fetched = self
                        .fetcher
                        .get_within(url.as_str(), Purpose::Certificate, self.budget)
                        .await;
                    if let Err(rejection) = self.keep(url, fetched) {
                        return rejected(request, rejection);
                    }
                }
            }
        }
        Checked::Done(mailpipe_verify_core::verify(
            request,
            source,
            &mut Context {
                certificates: &self.certificates,
            },
        ))
    }

    /// Starts a background fetch, within the budget, of every wanted certificate not
    /// being fetched already.
    fn start_wanted(&mut self) {
        for url in std::mem::take(&mut self.wanted) {
            if !self.fetching.insert(url.clone()) {
                continue;
            }
            let (fetcher, budget) = (self.fetcher.clone(), self.budget);
            self.fetches.spawn(async move {
                let fetched = fetcher
                    .get_within(url.as_str(), Purpose::Certificate, budget)
                    .await;
                (url, fetched)
            });
        }
    }

    /// Takes in the fetches that have ended (into the cache, or their failure into the
    /// remembered ones), without waiting; whether any had.
    fn collect_fetched(&mut self) -> bool {
        let mut any = false;
        while let Some(joined) = self.fetches.try_join_next() {
            self.take_fetched(joined);
            any = true;
        }
        any
    }

    /// Waits for every fetch under way (shutdown).
    async fn await_fetches(&mut self) {
        while let Some(joined) = self.fetches.join_next().await {
            self.take_fetched(joined);
        }
    }

    fn take_fetched(
        &mut self,
        joined: Result<(CertificateUrl, Result<Vec<u8>, FetchFailure>), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((url, fetched)) => {
                self.fetching.remove(&url);
                let _ = self.keep(url, fetched);
            }
            // A fetch task cannot panic in practice; its messages are deferred again and
            // their URL fetched anew.
            Err(e) => {
                tracing::error!(error = %e, "certificate fetch task failed");
                self.fetching.clear();
            }
        }
    }

    /// Caches a fetched certificate, or remembers why its URL cannot be used.
    fn keep(
        &mut self,
        url: CertificateUrl,
        fetched: Result<Vec<u8>, FetchFailure>,
    ) -> Result<(), Rejection> {
        let result = match fetched {
            Ok(pem) => self.certificates.insert_pem(url.clone(), &pem),
            Err(FetchFailure::Permanent(why)) => Err(Rejection::new(
                Reason::UntrustedCertificate,
                format!("SigningCertURL {why}"),
            )),
            Err(FetchFailure::OutOfTime(why)) => Err(Rejection::new(
                Reason::CertificateUnavailable,
                format!(
                    "SigningCertURL could not be fetched within {} ms: {why}",
                    self.budget.as_millis()
                ),
            )),
        };
        if let Err(rejection) = &result {
            self.failures
                .insert(url.as_str(), rejection.clone(), Instant::now());
        }
        result
    }

    /// What a verified request is: events, or an SNS control message, confirmed here.
    async fn act_on(&self, verified: &Verified, labels: &Labels) -> Outcome {
        let action = match verified.control() {
            None => return Outcome::Events,
            Some(SnsControl::ConfirmSubscription {
                topic_arn,
                subscribe_url,
            }) => {
                match self
                    .fetcher
                    .get_within(
                        subscribe_url,
                        Purpose::SubscriptionConfirmation,
                        self.budget,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(source = %labels.source, topic_arn = %topic_arn,
                            "SNS subscription confirmed");
                        ControlAction::SubscriptionConfirmed
                    }
                    Err(why) => {
                        tracing::warn!(source = %labels.source, topic_arn = %topic_arn, why = ?why,
                            "SNS subscription could not be confirmed");
                        ControlAction::SubscriptionConfirmationFailed
                    }
                }
            }
            Some(SnsControl::Unsubscribed { topic_arn }) => {
                tracing::info!(source = %labels.source, topic_arn = %topic_arn,
                    "SNS unsubscribe confirmation received");
                ControlAction::UnsubscribeConfirmed
            }
        };
        metrics::counter!(names::VERIFY_CONTROL, "source" => labels.source.clone(), "action" => action.as_str())
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
mod tests;
