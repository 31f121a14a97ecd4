//! One module per provider, each with the same surface — `verify(request, source, context)`
//! — and one `match` from provider to module. Adding a provider is adding a file and an arm.

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
use crate::outcome::{Rejection, Verified};
use crate::request::Request;
use crate::Context;

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    context: &mut Context<'_>,
) -> Result<Verified, Rejection> {
    match source.provider() {
        Provider::Sendgrid => sendgrid::verify(request, source, context),
        Provider::Mailgun => mailgun::verify(request, source, context),
        Provider::Postmark => postmark::verify(request, source, context),
        Provider::Ses => ses::verify(request, source, context),
        Provider::Mandrill => mandrill::verify(request, source, context),
        Provider::Sparkpost => sparkpost::verify(request, source, context),
        Provider::Resend => resend::verify(request, source, context),
        Provider::Brevo => brevo::verify(request, source, context),
        Provider::Mailjet => mailjet::verify(request, source, context),
        Provider::Mailersend => mailersend::verify(request, source, context),
        Provider::Postal => postal::verify(request, source, context),
        Provider::Generic => generic::verify(request, source, context),
    }
}

/// The keys of `source` as the kind `pick` extracts; any other kind is a programming error
/// surfaced as `no_usable_key` rather than a panic.
pub(crate) fn keys_of<'a, T>(
    source: &'a SourceConfig,
    pick: impl FnOnce(&'a crate::config::Keys) -> Option<&'a [T]>,
) -> Result<&'a [T], Rejection> {
    pick(&source.keys)
        .filter(|keys| !keys.is_empty())
        .ok_or_else(|| {
            Rejection::new(
                crate::Reason::NoUsableKey,
                "source has no usable key of the kind this provider needs",
            )
        })
}
