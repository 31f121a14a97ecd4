//! One module per provider, each with the same surface — its [`Implementation`]: `verify`
//! and a signed `example` for tests — and one `match` from provider to module. Adding a
//! provider is adding a file and an arm. The shared-secret providers (no payload
//! signature) share `shared_secret`; their files hold what is particular to them.

pub(crate) mod brevo;
pub(crate) mod generic;
pub(crate) mod mailersend;
pub(crate) mod mailgun;
pub(crate) mod mailjet;
pub(crate) mod mandrill;
pub(crate) mod postal;
pub(crate) mod postmark;
pub(crate) mod resend;
pub(crate) mod sendgrid;
pub(crate) mod ses;
pub(crate) mod sparkpost;

use mailpipe_model::Provider;

use crate::config::SourceConfig;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

/// What this crate has of one provider; each module has one, `IMPLEMENTATION`.
pub(crate) struct Implementation {
    pub verify: fn(&Request, &SourceConfig, &mut Context<'_>) -> Result<Authenticated, Rejection>,
    /// A signed request of the provider and the source that accepts it, for tests.
    #[cfg(any(test, feature = "testing"))]
    pub example: fn(i64) -> crate::testing::Example,
}

pub(crate) fn implementation(provider: Provider) -> &'static Implementation {
    match provider {
        Provider::Sendgrid => &sendgrid::IMPLEMENTATION,
        Provider::Mailgun => &mailgun::IMPLEMENTATION,
        Provider::Postmark => &postmark::IMPLEMENTATION,
        Provider::Ses => &ses::IMPLEMENTATION,
        Provider::Mandrill => &mandrill::IMPLEMENTATION,
        Provider::Sparkpost => &sparkpost::IMPLEMENTATION,
        Provider::Resend => &resend::IMPLEMENTATION,
        Provider::Brevo => &brevo::IMPLEMENTATION,
        Provider::Mailjet => &mailjet::IMPLEMENTATION,
        Provider::Mailersend => &mailersend::IMPLEMENTATION,
        Provider::Postal => &postal::IMPLEMENTATION,
        Provider::Generic => &generic::IMPLEMENTATION,
    }
}

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    context: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    (implementation(source.provider()).verify)(request, source, context)
}

/// HMAC-SHA256 of the raw body with any configured key, compared with `expected` (the
/// signature a provider sent, already decoded): MailerSend's and generic senders' scheme.
pub(crate) fn body_hmac_sha256(
    request: &Request,
    source: &SourceConfig,
    expected: &[u8],
) -> Result<Authenticated, Rejection> {
    let keys = source.hmac_keys()?;
    let index = crate::crypto::hmac_sha256_match(keys, &[&request.body], expected)
        .ok_or_else(Rejection::no_key_verifies)?;
    Ok(Authenticated::by_key(Scheme::HmacSha256, source, index))
}
