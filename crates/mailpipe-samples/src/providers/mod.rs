//! One module per provider, each with the same surface, its [`Sampler`]: `KINDS` (the event
//! types it sends and their canonical types), `SHAPE` (how it batches), `ids` (its id
//! formats) and `render` (body and headers, signed as it signs). The modules and the one
//! `match` from provider to module are declared from `mailpipe_model::for_each_provider!`.
//!
//! Bodies follow each provider's documented format and the shapes
//! `mailpipe-normalize` reads (its fixtures under `tests/fixtures/` are the reference).

use mailpipe_model::Provider;
use mailpipe_settings::SignatureEncoding;
use rsa::RsaPrivateKey;

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

/// What the sender needs of one provider; each module has one, `SAMPLER`.
pub(crate) struct Sampler {
    /// The event types it sends and their canonical types.
    pub kinds: &'static [Kind],
    pub shape: Shape,
    /// A fresh (event id, message id) in its formats.
    pub ids: fn(&mut Rng) -> (String, String),
    /// A fresh id of the request itself, where it has one.
    pub request_id: fn(&mut Rng) -> String,
    pub render: Render,
}

impl Sampler {
    pub(crate) const fn new(
        kinds: &'static [Kind],
        shape: Shape,
        ids: fn(&mut Rng) -> (String, String),
        request_id: fn(&mut Rng) -> String,
        render: Render,
    ) -> Sampler {
        Sampler {
            kinds,
            shape,
            ids,
            request_id,
            render,
        }
    }
}

/// How a provider renders a request (body and headers, signed as it signs), by the kind of
/// signing material it takes (`keys::Secret`); [`render`] hands each the material.
pub(crate) enum Render {
    Ecdsa(fn(&Batch, &p256::ecdsa::SigningKey, &Signing) -> Rendered),
    Rsa(fn(&Batch, &RsaPrivateKey, &Signing) -> Rendered),
    StandardWebhooks(fn(&Batch, &[u8], &Signing) -> Rendered),
    Hmac(fn(&Batch, &str, &Signing) -> Rendered),
    /// HMAC over the signed webhook URL too (Mandrill).
    HmacWithUrl(fn(&Batch, &str, &str, &Signing) -> Rendered),
    /// HMAC in a configured header and encoding (generic).
    HmacInHeader(fn(&Batch, &str, &str, SignatureEncoding, &Signing) -> Rendered),
    /// SNS: key, TopicArn, certificate URL.
    Sns(fn(&Batch, &RsaPrivateKey, &str, &str, &Signing) -> Rendered),
    /// Shared secret: the JSON body, and headers of its own after the credential.
    Credentials(fn(&Batch) -> Vec<u8>, fn(&Batch) -> Vec<(String, String)>),
}

/// For providers whose requests carry no id of their own.
pub(crate) fn no_request_id(_: &mut Rng) -> String {
    String::new()
}

/// The provider modules and the `match` from provider to module, from the one list.
macro_rules! providers {
    ($($module:ident $variant:ident $id:literal,)*) => {
        $(mod $module;)*

        fn sampler(provider: Provider) -> &'static Sampler {
            match provider {
                $(Provider::$variant => &$module::SAMPLER,)*
            }
        }
    };
}

mailpipe_model::for_each_provider!(providers);

pub(crate) fn kinds(provider: Provider) -> &'static [Kind] {
    sampler(provider).kinds
}

pub(crate) fn shape(provider: Provider) -> &'static Shape {
    &sampler(provider).shape
}

/// Whether verify rejects a request whose signed timestamp is old, by default (so a stale
/// request can be made). SES signs one too, but verify checks no SNS age unless a source
/// sets `sns_max_age_seconds` (SNS retries keep their Timestamp).
pub(crate) fn signs_timestamp(provider: Provider) -> bool {
    provider.spec().signs_timestamp
}

/// A fresh (event id, message id) in the provider's formats.
pub(crate) fn ids(provider: Provider, rng: &mut Rng) -> (String, String) {
    (sampler(provider).ids)(rng)
}

/// A fresh id of the request itself, where the provider has one.
pub(crate) fn request_id(provider: Provider, rng: &mut Rng) -> String {
    (sampler(provider).request_id)(rng)
}

pub(crate) fn render(
    batch: &Batch,
    secret: &Secret,
    signing: &Signing,
) -> Result<Rendered, SampleError> {
    Ok(match (&sampler(batch.provider).render, secret) {
        (Render::Ecdsa(render), Secret::Ecdsa(key)) => render(batch, key, signing),
        (Render::Rsa(render), Secret::Rsa(key)) => render(batch, key, signing),
        (Render::StandardWebhooks(render), Secret::StandardWebhooks(key)) => {
            render(batch, key, signing)
        }
        (Render::Hmac(render), Secret::Hmac { key, .. }) => render(batch, key, signing),
        (
            Render::HmacWithUrl(render),
            Secret::Hmac {
                key,
                webhook_url: Some(url),
                ..
            },
        ) => render(batch, key, url, signing),
        (
            Render::HmacInHeader(render),
            Secret::Hmac {
                key,
                signature: Some((header, encoding)),
                ..
            },
        ) => render(batch, key, header, *encoding, signing),
        (
            Render::Sns(render),
            Secret::Sns {
                key,
                topic_arn,
                certificate_url,
            },
        ) => render(batch, key, topic_arn, certificate_url, signing),
        (Render::Credentials(body, extra_headers), Secret::Credentials(credential)) => {
            let body = body(batch);
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
            headers.extend(extra_headers(batch));
            Rendered { headers, body }
        }
        _ => {
            return Err(SampleError::Source {
                source_id: batch.provider.to_string(),
                problem: "holds keys of another provider".into(),
            })
        }
    })
}

/// For shared-secret providers that send no header of their own.
pub(crate) fn no_extra_headers(_: &Batch) -> Vec<(String, String)> {
    Vec::new()
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
