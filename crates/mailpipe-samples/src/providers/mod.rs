//! One module per provider, each with the same surface: `KINDS` (the event types it sends
//! and their canonical types), `SHAPE` (how it batches), `ids` (its id formats) and
//! `render` (body and headers, signed as it signs). One `match` from provider to module.
//!
//! Bodies follow each provider's documented format and the shapes
//! `mailpipe-normalize` reads (its fixtures under `tests/fixtures/` are the reference).

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

use mailpipe_model::Provider;

use crate::error::SampleError;
use crate::keys::Secret;
use crate::plan::{Batch, Kind};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

/// How a provider groups events into requests.
pub(crate) struct Shape {
    /// Largest batch when it sends an array.
    pub max_batch: usize,
    /// Probability that a request is an array: 1 for providers that always send one, 0 for
    /// one event per request, in between for those that can do both (Brevo, Mailjet…).
    pub array_chance: f64,
    /// SES: kinds whose message may name several recipients (one event each).
    pub fan_out: &'static [&'static str],
}

pub(crate) const SINGLE: Shape = Shape {
    max_batch: 1,
    array_chance: 0.0,
    fan_out: &[],
};

pub(crate) fn kinds(provider: Provider) -> &'static [Kind] {
    match provider {
        Provider::Sendgrid => sendgrid::KINDS,
        Provider::Mailgun => mailgun::KINDS,
        Provider::Postmark => postmark::KINDS,
        Provider::Ses => ses::KINDS,
        Provider::Mandrill => mandrill::KINDS,
        Provider::Sparkpost => sparkpost::KINDS,
        Provider::Resend => resend::KINDS,
        Provider::Brevo => brevo::KINDS,
        Provider::Mailjet => mailjet::KINDS,
        Provider::Mailersend => mailersend::KINDS,
        Provider::Postal => postal::KINDS,
        Provider::Generic => generic::KINDS,
    }
}

pub(crate) fn shape(provider: Provider) -> Shape {
    match provider {
        Provider::Sendgrid => sendgrid::SHAPE,
        Provider::Mandrill => mandrill::SHAPE,
        Provider::Sparkpost => sparkpost::SHAPE,
        Provider::Brevo => brevo::SHAPE,
        Provider::Mailjet => mailjet::SHAPE,
        Provider::Generic => generic::SHAPE,
        Provider::Ses => ses::SHAPE,
        Provider::Mailgun
        | Provider::Postmark
        | Provider::Resend
        | Provider::Mailersend
        | Provider::Postal => SINGLE,
    }
}

/// Whether verify rejects a request whose signed timestamp is old, by default (so a stale
/// request can be made). SES signs one too, but verify checks no SNS age unless a source
/// sets `sns_max_age_seconds` (SNS retries keep their Timestamp).
pub(crate) fn signs_timestamp(provider: Provider) -> bool {
    matches!(
        provider,
        Provider::Sendgrid | Provider::Mailgun | Provider::Resend
    )
}

/// A fresh (event id, message id) in the provider's formats.
pub(crate) fn ids(provider: Provider, rng: &mut Rng) -> (String, String) {
    match provider {
        Provider::Sendgrid => sendgrid::ids(rng),
        Provider::Mailgun => mailgun::ids(rng),
        Provider::Postmark => postmark::ids(rng),
        Provider::Ses => ses::ids(rng),
        Provider::Mandrill => mandrill::ids(rng),
        Provider::Sparkpost => sparkpost::ids(rng),
        Provider::Resend => resend::ids(rng),
        Provider::Brevo => brevo::ids(rng),
        Provider::Mailjet => mailjet::ids(rng),
        Provider::Mailersend => mailersend::ids(rng),
        Provider::Postal => postal::ids(rng),
        Provider::Generic => generic::ids(rng),
    }
}

/// A fresh id of the request itself, where the provider has one.
pub(crate) fn request_id(provider: Provider, rng: &mut Rng) -> String {
    match provider {
        Provider::Ses => rng.uuid(),
        Provider::Mailgun => rng.hex(50),
        Provider::Sparkpost => rng.uuid(),
        _ => String::new(),
    }
}

pub(crate) fn render(
    batch: &Batch,
    secret: &Secret,
    signing: &Signing,
) -> Result<Rendered, SampleError> {
    let mismatch = || SampleError::Source {
        source_id: batch.provider.to_string(),
        problem: "holds keys of another provider".into(),
    };
    Ok(match (batch.provider, secret) {
        (Provider::Sendgrid, Secret::Sendgrid(key)) => sendgrid::render(batch, key, signing),
        (Provider::Mailgun, Secret::Mailgun(key)) => mailgun::render(batch, key, signing),
        (
            Provider::Ses,
            Secret::Ses {
                key,
                topic_arn,
                certificate_url,
            },
        ) => ses::render(batch, key, topic_arn, certificate_url, signing),
        (Provider::Mandrill, Secret::Mandrill { key, webhook_url }) => {
            mandrill::render(batch, key, webhook_url, signing)
        }
        (Provider::Resend, Secret::Resend(key)) => resend::render(batch, key, signing),
        (Provider::Mailersend, Secret::Mailersend(key)) => mailersend::render(batch, key, signing),
        (Provider::Postal, Secret::Postal(key)) => postal::render(batch, key, signing),
        (
            Provider::Generic,
            Secret::Generic {
                key,
                header,
                encoding,
            },
        ) => generic::render(batch, key, header, *encoding, signing),
        (provider, Secret::Credentials(credential)) => {
            let body = match provider {
                Provider::Postmark => postmark::body(batch),
                Provider::Sparkpost => sparkpost::body(batch),
                Provider::Brevo => brevo::body(batch),
                Provider::Mailjet => mailjet::body(batch),
                _ => return Err(mismatch()),
            };
            let body = if signing.malformed {
                truncated(&body)
            } else {
                body
            };
            let mut headers = json_headers();
            headers.push((
                "authorization".into(),
                credential.authorization(signing.forged),
            ));
            if provider == Provider::Sparkpost {
                headers.push(("x-messagesystems-batch-id".into(), batch.request_id.clone()));
            }
            Rendered { headers, body }
        }
        _ => return Err(mismatch()),
    })
}

pub(crate) fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// The first half of a JSON body: still bytes a provider could have sent (a cut
/// connection), never parsable (the outermost bracket is not closed).
pub(crate) fn truncated(body: &[u8]) -> Vec<u8> {
    body[..body.len() / 2].to_vec()
}

/// The first half of a text, cut on a character boundary.
pub(crate) fn first_half(text: &str) -> &str {
    let mut end = text.len() / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A JSON array of `events`, or the single object when the batch is not an array.
pub(crate) fn json_body(batch: &Batch, events: Vec<serde_json::Value>) -> Vec<u8> {
    let value = if batch.array {
        serde_json::Value::Array(events)
    } else {
        events.into_iter().next().unwrap_or_default()
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// Base64 RSA PKCS#1 v1.5 signature of `message` (SHA-256 or SHA-1), or, forged, 256 random
/// bytes that no key verifies.
pub(crate) fn rsa_signature(
    key: &rsa::RsaPrivateKey,
    message: &[u8],
    sha256: bool,
    forged: bool,
    rng: &mut Rng,
) -> String {
    use mailpipe_verify_core::sign;
    if forged {
        sign::base64(&rng.bytes(256))
    } else if sha256 {
        sign::rsa_sha256_signature(key, message)
    } else {
        sign::rsa_sha1_signature(key, message)
    }
}

/// An HMAC key that is not the source's.
pub(crate) fn forged_key(key: &str) -> String {
    format!("forged-{key}")
}
