//! Authenticity of ESP webhooks, provider by provider: signatures, shared credentials,
//! signed timestamps and one-time tokens. The verify stage calls [`verify`] for each
//! `mail.raw` record; what passes goes on as a [`Verified`], what fails as a [`Rejected`]
//! with a [`Reason`] from a closed set. Both hold the request already stripped of
//! credentials ([`StrippedRequest`]), which no code outside this crate can make otherwise:
//! a caller cannot forward a request it forgot to strip.
//!
//! Invariant: pure. No Kafka, HTTP, Redis, filesystem or clock inside: the request carries
//! its receipt time, SNS certificates come through a [`CertificateStore`] the caller fills
//! (after [`required_certificate`] vetted the URL), and a Mailgun one-time token is handed
//! back in [`Verified::one_time_token`] for the caller to record (the stage keeps them in
//! Redis). So every path is unit-tested and fuzzed.
//!
//! Invariant: fail closed. A source without a usable key rejects everything
//! (`no_usable_key`); secrets are compared in constant time and never appear in a
//! rejection, a `Debug` of a verdict, or a log line written here (there are none).

mod certificates;
mod config;
mod crypto;
mod outcome;
mod providers;
mod request;
mod shared_secret;
#[cfg(any(test, feature = "signing"))]
pub mod sign;
mod strip;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use certificates::{
    CertificateCache, CertificateStore, CertificateUrl, SigningCertificate, DEFAULT_SNS_HOSTS,
};
pub use config::{SourceConfig, SourceOptions, DEFAULT_SIGNATURE_HEADER};
pub use mailpipe_model::Provider;
pub use mailpipe_settings::SignatureEncoding;
pub use outcome::{OneTimeToken, Reason, Rejected, Rejection, Scheme, SnsControl, Verified};
pub use request::Request;
pub use strip::StrippedRequest;

/// The state verification reads besides the request: SNS certificates fetched by the
/// caller.
pub struct Context<'a> {
    pub certificates: &'a dyn CertificateStore,
}

/// Checks that `request` really comes from `source`'s provider account, and strips its
/// credentials either way.
///
/// Time: signed timestamps are judged against `request.received_at_ms`, the receiver's
/// clock at receipt, so a verify stage that lags or replays `mail.raw` stays correct.
// Both outcomes carry the request they were given (moved, not copied); boxing the rejected
// one would only add an allocation per rejection.
#[allow(clippy::result_large_err)]
pub fn verify(
    request: Request,
    source: &SourceConfig,
    context: &mut Context<'_>,
) -> Result<Verified, Rejected> {
    let checked = if source.is_usable() {
        providers::verify(&request, source, context)
    } else {
        Err(Rejection::new(
            Reason::NoUsableKey,
            format!(
                "source of provider {} has no usable key or required setting",
                source.provider()
            ),
        ))
    };
    let request = StrippedRequest::new(source, request);
    match checked {
        Ok(how) => Ok(Verified { how, request }),
        Err(rejection) => Err(Rejected { rejection, request }),
    }
}

/// The SNS certificate `verify` will need for this request, if any: `Some` only for SES,
/// and only once the URL passed the source's policy (https, allowed host, `.pem`) and the
/// TopicArn is allowed, so nothing else is ever fetched. The caller fetches it unless its
/// store has it, then calls [`verify`].
pub fn required_certificate(
    request: &Request,
    source: &SourceConfig,
) -> Result<Option<CertificateUrl>, Rejection> {
    match source.provider() {
        Provider::Ses if source.is_usable() => {
            providers::ses::required_certificate(request, source).map(Some)
        }
        _ => Ok(None),
    }
}
