//! One module per provider, each with the same small surface: `parse(input)` returning
//! the request's events. The single `match` below is the only place that knows the set;
//! adding a provider to `mailpipe_model::Provider` makes the compiler point here.

mod brevo;
mod generic;
mod mailersend;
mod mailgun;
mod mailjet;
mod mandrill;
mod postal;
mod postmark;
mod resend;
mod sendgrid;
mod ses;
mod sparkpost;

use mailpipe_model::{EmailEvent, Provider};

use crate::error::ParseError;
use crate::input::ParseInput;

pub(crate) fn parse(
    provider: Provider,
    input: &ParseInput<'_>,
) -> Result<Vec<EmailEvent>, ParseError> {
    match provider {
        Provider::Sendgrid => sendgrid::parse(input),
        Provider::Mailgun => mailgun::parse(input),
        Provider::Postmark => postmark::parse(input),
        Provider::Ses => ses::parse(input),
        Provider::Mandrill => mandrill::parse(input),
        Provider::Sparkpost => sparkpost::parse(input),
        Provider::Resend => resend::parse(input),
        Provider::Brevo => brevo::parse(input),
        Provider::Mailjet => mailjet::parse(input),
        Provider::Mailersend => mailersend::parse(input),
        Provider::Postal => postal::parse(input),
        Provider::Generic => generic::parse(input),
    }
}
