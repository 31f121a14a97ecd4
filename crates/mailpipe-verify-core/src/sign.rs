//! Signing exactly as each provider does: the other half of every check in `providers/`.
//! Built with the `signing` feature (which `testing` enables) for the development sample
//! sender (`mailpipe-samples`), and in this crate's tests.
//!
//! Only the documented signature algorithms live here: no key generation, no fixtures,
//! nothing random. They are independent re-implementations of the providers' algorithms,
//! not calls into the verifier, so a test that signs here and verifies there compares two
//! implementations.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use rsa::pkcs1v15::SigningKey;
use rsa::RsaPrivateKey;
use sha2::Sha256;

pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `Authorization` value for HTTP Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("any key length");
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(key).expect("any key length");
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().to_vec()
}

/// `X-Twilio-Email-Event-Webhook-Signature`: base64 DER ECDSA over timestamp ‖ body.
/// Deterministic (RFC 6979 nonces): the same input always gives the same signature.
pub fn sendgrid_signature(key: &p256::ecdsa::SigningKey, timestamp: &str, body: &[u8]) -> String {
    let signed = [timestamp.as_bytes(), body].concat();
    let signature: p256::ecdsa::Signature = key.sign(&signed);
    base64(signature.to_der().as_bytes())
}

/// Mailgun's hex HMAC-SHA256 of timestamp ‖ token.
pub fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    hex::encode(hmac_sha256(
        key.as_bytes(),
        &[timestamp.as_bytes(), token.as_bytes()],
    ))
}

/// Mandrill's base64 HMAC-SHA1 of URL ‖ form fields sorted by key (key ‖ value each).
pub fn mandrill_signature(key: &str, url: &str, fields: &[(&str, &str)]) -> String {
    let mut fields = fields.to_vec();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut signed = url.to_string();
    for (k, v) in fields {
        signed.push_str(k);
        signed.push_str(v);
    }
    base64(&hmac_sha1(key.as_bytes(), &[signed.as_bytes()]))
}

/// A Standard Webhooks `v1,<base64>` entry for the raw key bytes behind a `whsec_` secret.
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", base64(&mac))
}

/// Base64 RSA PKCS#1 v1.5 / SHA-256 signature (Postal `X-Postal-Signature-256`, SNS v2).
pub fn rsa_sha256_signature(key: &RsaPrivateKey, message: &[u8]) -> String {
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    base64(
        &SigningKey::<Sha256>::new(key.clone())
            .sign(message)
            .to_bytes(),
    )
}

/// Base64 RSA PKCS#1 v1.5 / SHA-1 signature (Postal `X-Postal-Signature`, SNS v1).
pub fn rsa_sha1_signature(key: &RsaPrivateKey, message: &[u8]) -> String {
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    base64(
        &SigningKey::<sha1::Sha1>::new(key.clone())
            .sign(message)
            .to_bytes(),
    )
}

/// The string SNS signs for a message with these (name, value) fields: `Name\nvalue\n` for
/// each field of the message type's list that is present, in that (alphabetical) order.
pub fn sns_canonical_string(fields: &[(&str, &str)]) -> String {
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let order: &[&str] = if get("Type") == Some("Notification") {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut canonical = String::new();
    for name in order {
        if let Some(value) = get(name) {
            canonical.push_str(&format!("{name}\n{value}\n"));
        }
    }
    canonical
}

/// SNS `Signature` of a message with these fields: `SignatureVersion` 1 is SHA-1, any other
/// SHA-256.
pub fn sns_signature(key: &RsaPrivateKey, version: u8, fields: &[(&str, &str)]) -> String {
    let canonical = sns_canonical_string(fields);
    match version {
        1 => rsa_sha1_signature(key, canonical.as_bytes()),
        _ => rsa_sha256_signature(key, canonical.as_bytes()),
    }
}

/// An SNS message body: `fields` (name, value) plus `SignatureVersion`, `Signature` and
/// `SigningCertURL`, signed with `key` over the canonical string of its type.
pub fn sns_message(
    key: &RsaPrivateKey,
    version: u8,
    certificate_url: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let signature = sns_signature(key, version, fields);
    let mut object = serde_json::Map::new();
    for (name, value) in fields {
        object.insert(
            name.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    object.insert("SignatureVersion".into(), version.to_string().into());
    object.insert("Signature".into(), signature.into());
    object.insert("SigningCertURL".into(), certificate_url.into());
    serde_json::to_vec(&object).expect("JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_canonical_string_follows_the_type_and_skips_absent_fields() {
        let notification = [
            ("Type", "Notification"),
            ("TopicArn", "arn:t"),
            ("Message", "m"),
            ("MessageId", "id"),
            ("Timestamp", "ts"),
            ("UnsubscribeURL", "not signed"),
        ];
        assert_eq!(
            sns_canonical_string(&notification),
            "Message\nm\nMessageId\nid\nTimestamp\nts\nTopicArn\narn:t\nType\nNotification\n"
        );
        let confirmation = [("Type", "SubscriptionConfirmation"), ("Token", "tok")];
        assert_eq!(
            sns_canonical_string(&confirmation),
            "Token\ntok\nType\nSubscriptionConfirmation\n"
        );
    }

    #[test]
    fn mandrill_fields_are_sorted_before_signing() {
        let a = mandrill_signature("k", "https://h/", &[("b", "2"), ("a", "1")]);
        let b = mandrill_signature("k", "https://h/", &[("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_eq!(
            a,
            base64(&hmac_sha1(b"k", &[b"https://h/a1b2"])),
            "URL then key ‖ value of each field"
        );
    }
}
