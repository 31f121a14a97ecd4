//! One module per provider, each with the same surface — `verify(request, source, context)`
//! — and one `match` from provider to module. Adding a provider is adding a file and an arm.
//! The shared-secret providers (no payload signature) share `shared_secret::verify`; their
//! files hold what is particular to them: documentation and tests.

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

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    context: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    match source.provider() {
        Provider::Sendgrid => sendgrid::verify(request, source, context),
        Provider::Mailgun => mailgun::verify(request, source, context),
        Provider::Ses => ses::verify(request, source, context),
        Provider::Mandrill => mandrill::verify(request, source, context),
        Provider::Resend => resend::verify(request, source, context),
        Provider::Mailersend => mailersend::verify(request, source, context),
        Provider::Postal => postal::verify(request, source, context),
        Provider::Generic => generic::verify(request, source, context),
        // No payload signature: a shared secret presented as the provider allows.
        Provider::Postmark | Provider::Sparkpost | Provider::Brevo | Provider::Mailjet => {
            crate::shared_secret::verify(request, source)
        }
    }
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
