//! Standard Webhooks signing (<https://www.standardwebhooks.com>, spec 1.0.0, symmetric
//! scheme): every request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` entries over
//! `{id}.{timestamp}.{body}`, one per active secret. Several entries at once is how a secret
//! is rotated without downtime: the receiver accepts any entry that verifies.
//!
//! The id is the delivery's idempotency key and stays the same on every retry; the timestamp
//! is the attempt's, so each retry is signed afresh (the spec's replay protection).
//!
//! Invariant: the key bytes of a [`SigningSecret`] never leave this module except into the
//! HMAC: not in `Debug`, not in errors.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DeliveryError;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";

/// The spec asks for random secrets of at least 24 bytes (192 bits). A shorter one is more
/// likely a truncated paste than a choice, so it is refused rather than used.
pub const MIN_SECRET_BYTES: usize = 24;

/// The longest webhook id accepted. Ours are built from a rule id, an event id and an action
/// index; anything much longer is a bug upstream, and header lines have limits.
pub const MAX_WEBHOOK_ID_LEN: usize = 256;

/// Secrets as the reference libraries accept them: standard alphabet, `=` padding optional,
/// so a secret pasted without its padding still works.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One HMAC key, parsed from its `whsec_<base64>` form.
///
/// Invariant: holds at least [`MIN_SECRET_BYTES`] bytes.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl SigningSecret {
    /// Parses `whsec_<base64>` (surrounding whitespace ignored, as a secret read from a file
    /// often ends with a newline). The error says what is wrong, never what was given.
    pub fn parse(text: &str) -> Result<SigningSecret, DeliveryError> {
        let invalid = |reason| DeliveryError::InvalidSigningSecret { reason };
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(invalid("it does not start with `whsec_`"))?;
        // The decoder's own error names the offending byte: not repeated, it is secret.
        let key = SECRET_BASE64
            .decode(encoded)
            .map_err(|_| invalid("the text after `whsec_` is not base64"))?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(invalid(
                "it decodes to fewer than 24 bytes (the Standard Webhooks minimum)",
            ));
        }
        Ok(SigningSecret { key })
    }

    /// `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp_secs}.{body}">`.
    fn signature_entry(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl FromStr for SigningSecret {
    type Err = DeliveryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SigningSecret::parse(text)
    }
}

/// Redacted: a secret in a log line or a panic message is a leaked secret.
impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(redacted)")
    }
}

/// The `webhook-signature` header value: one `v1,<base64>` entry per secret, in the order
/// given, separated by single spaces. No secrets gives an empty string; [`headers`] refuses
/// that case, so prefer it.
///
/// `msg_id` must not contain `.` (the field separator of the signed content); [`headers`]
/// checks it.
pub fn sign(secrets: &[SigningSecret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.signature_entry(msg_id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three headers of one attempt. Values are plain visible ASCII, valid in any HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

impl WebhookHeaders {
    /// `(name, value)` pairs in the spec's order, for handing to an HTTP client.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_ID, &self.webhook_id),
            (HEADER_TIMESTAMP, &self.webhook_timestamp),
            (HEADER_SIGNATURE, &self.webhook_signature),
        ]
    }
}

/// The headers for one attempt at sending `body` as message `msg_id` at `timestamp_secs`
/// (the attempt's time, Unix seconds). Refuses to sign without a secret, and a `msg_id` that
/// is empty, too long, holds a `.` (the signed content would be ambiguous: the spec asks
/// that ids never contain one) or anything but visible ASCII (not a safe header value).
pub fn headers(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<WebhookHeaders, DeliveryError> {
    if secrets.is_empty() {
        return Err(DeliveryError::NoSigningSecret);
    }
    check_webhook_id(msg_id)?;
    Ok(WebhookHeaders {
        webhook_id: msg_id.to_string(),
        webhook_timestamp: timestamp_secs.to_string(),
        webhook_signature: sign(secrets, msg_id, timestamp_secs, body),
    })
}

fn check_webhook_id(id: &str) -> Result<(), DeliveryError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_WEBHOOK_ID_LEN {
        "it is longer than 256 characters"
    } else if id.contains('.') {
        "it contains `.`, the separator of the signed fields"
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) {
        "it contains a character other than visible ASCII"
    } else {
        return Ok(());
    };
    Err(DeliveryError::InvalidWebhookId {
        id: id.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SigningSecret {
        SigningSecret::parse(text).unwrap()
    }

    /// The two vectors the Standard Webhooks reference libraries test against (the spec text
    /// itself shows a signature but not the secret behind it). SW-1: `libraries/rust`
    /// `test_sign`; SW-2: the Go and Python suites and Svix's docs. The same vectors are in
    /// `mailpipe-verify-core/tests/vectors/resend/published.toml`, on the receiving side.
    #[test]
    fn reproduces_the_reference_libraries_vectors() {
        let cases = [
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        for (whsec, id, timestamp, body, expected) in cases {
            assert_eq!(
                sign(&[secret(whsec)], id, timestamp, body.as_bytes()),
                expected,
                "{id}"
            );
        }
    }

    /// Computed independently with Python's standard library:
    /// ```text
    /// python3 -c 'import hmac,hashlib,base64
    /// k1=bytes(range(32)); k2=b"rotated-secret-for-mailpipe-tests"
    /// msg=b"msg_01JDELIVERYTEST.1767225600.{\"event\":\"bounce\",\"n\":1}"
    /// for k in (k1,k2): print("v1,"+base64.b64encode(hmac.new(k,msg,hashlib.sha256).digest()).decode())'
    /// ```
    /// (`whsec_` + `base64.b64encode(k)` gives the two secrets below.)
    const SECRET_1: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const SECRET_2: &str = "whsec_cm90YXRlZC1zZWNyZXQtZm9yLW1haWxwaXBlLXRlc3Rz";
    const SIGNATURE_1: &str = "v1,uVntSz1dxMLP2zPz5yfJQyk0EaVXpRHhyOIGZH+Jc6U=";
    const SIGNATURE_2: &str = "v1,DBKgw0QKoy5U2GurEWR42VFjS5+N5ym5Ui+V0ejpAko=";
    const ID: &str = "msg_01JDELIVERYTEST";
    const TIMESTAMP: i64 = 1_767_225_600;
    const BODY: &[u8] = br#"{"event":"bounce","n":1}"#;

    #[test]
    fn matches_an_independent_python_computation() {
        assert_eq!(sign(&[secret(SECRET_1)], ID, TIMESTAMP, BODY), SIGNATURE_1);
        assert_eq!(sign(&[secret(SECRET_2)], ID, TIMESTAMP, BODY), SIGNATURE_2);
        // Empty body, timestamp 0: `k1` over b"msg_empty.0.", same one-liner.
        assert_eq!(
            sign(&[secret(SECRET_1)], "msg_empty", 0, b""),
            "v1,rj/XH3Tm6G/SToL6tT4Lkb4ZUYp8+qMAMWu3q7fMFes="
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_in_order() {
        let both = [secret(SECRET_1), secret(SECRET_2)];
        assert_eq!(
            sign(&both, ID, TIMESTAMP, BODY),
            format!("{SIGNATURE_1} {SIGNATURE_2}")
        );
        let reversed = [secret(SECRET_2), secret(SECRET_1)];
        assert_eq!(
            sign(&reversed, ID, TIMESTAMP, BODY),
            format!("{SIGNATURE_2} {SIGNATURE_1}")
        );
        assert_eq!(sign(&[], ID, TIMESTAMP, BODY), "");
    }

    #[test]
    fn every_signed_field_changes_the_signature() {
        let key = [secret(SECRET_1)];
        let base = sign(&key, ID, TIMESTAMP, BODY);
        assert_ne!(sign(&key, "msg_other", TIMESTAMP, BODY), base);
        assert_ne!(sign(&key, ID, TIMESTAMP + 1, BODY), base);
        assert_ne!(sign(&key, ID, TIMESTAMP, b"{}"), base);
    }

    #[test]
    fn secrets_accept_padding_or_not_and_surrounding_whitespace() {
        // 25 bytes: base64 needs two `=` of padding.
        let padded = "whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ubw==";
        let unpadded = "whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ubw";
        let signed = |text| sign(&[secret(text)], ID, TIMESTAMP, BODY);
        assert_eq!(signed(padded), signed(unpadded));
        assert_eq!(signed(&format!("  {SECRET_1}\n")), SIGNATURE_1);
    }

    #[test]
    fn bad_secrets_are_refused_without_being_echoed() {
        let cases = [
            ("", "it does not start with `whsec_`"),
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "it does not start with `whsec_`",
            ),
            (
                "WHSEC_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "it does not start with `whsec_`",
            ),
            (
                "whsec_topsecret!value#not$base64",
                "the text after `whsec_` is not base64",
            ),
            (
                "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-",
                "the text after `whsec_` is not base64",
            ),
            (
                "whsec_",
                "it decodes to fewer than 24 bytes (the Standard Webhooks minimum)",
            ),
            (
                "whsec_c2hvcnRzZWNyZXQ=",
                "it decodes to fewer than 24 bytes (the Standard Webhooks minimum)",
            ),
        ];
        for (text, reason) in cases {
            let error = SigningSecret::parse(text).unwrap_err();
            assert_eq!(
                error,
                DeliveryError::InvalidSigningSecret { reason },
                "{text}"
            );
            let shown = format!("{error} {error:?}");
            if let Some(encoded) = text.strip_prefix("whsec_").filter(|e| !e.is_empty()) {
                assert!(!shown.contains(encoded), "{shown}");
            }
            assert!(!shown.contains("topsecret"), "{shown}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", [secret(SECRET_1), secret(SECRET_2)]);
        assert_eq!(shown, "[SigningSecret(redacted), SigningSecret(redacted)]");
        let parsed: SigningSecret = SECRET_2.parse().unwrap();
        assert!(!format!("{parsed:?}").contains("cm90"));
    }

    #[test]
    fn headers_name_and_fill_the_three_fields() {
        let headers = headers(&[secret(SECRET_1), secret(SECRET_2)], ID, TIMESTAMP, BODY).unwrap();
        assert_eq!(
            headers.pairs(),
            [
                ("webhook-id", ID),
                ("webhook-timestamp", "1767225600"),
                (
                    "webhook-signature",
                    format!("{SIGNATURE_1} {SIGNATURE_2}").as_str()
                ),
            ]
        );
    }

    #[test]
    fn headers_refuse_unsigned_or_ambiguous_requests() {
        let key = [secret(SECRET_1)];
        assert_eq!(
            headers(&[], ID, TIMESTAMP, BODY),
            Err(DeliveryError::NoSigningSecret)
        );
        let long = "a".repeat(MAX_WEBHOOK_ID_LEN + 1);
        let cases = [
            ("", "it is empty"),
            (long.as_str(), "it is longer than 256 characters"),
            (
                "rule.v2:evt-1:0",
                "it contains `.`, the separator of the signed fields",
            ),
            ("msg 1", "it contains a character other than visible ASCII"),
            (
                "msg\r\nx-evil: 1",
                "it contains a character other than visible ASCII",
            ),
            ("msg_é", "it contains a character other than visible ASCII"),
        ];
        for (id, reason) in cases {
            assert_eq!(
                headers(&key, id, TIMESTAMP, BODY),
                Err(DeliveryError::InvalidWebhookId {
                    id: id.to_string(),
                    reason
                }),
                "{id:?}"
            );
        }
        let longest = "a".repeat(MAX_WEBHOOK_ID_LEN);
        assert!(headers(&key, &longest, TIMESTAMP, BODY).is_ok());
        assert!(headers(&key, "rule_v2:evt-1:0", TIMESTAMP, BODY).is_ok());
    }
}
