//! Small shared pieces: MAC checks in constant time, base64/hex/PEM decoding of keys and
//! signatures, and signed-timestamp checks.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::outcome::{Reason, Rejection};
use crate::request::Request;

/// Standard alphabet, padding optional and non-zero trailing bits allowed: Standard Webhooks
/// secrets are accepted the way its Python reference library accepts them.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Strict standard base64, as every provider sends signatures.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

pub(crate) fn base64_decode_lenient(text: &str) -> Option<Vec<u8>> {
    LENIENT.decode(text).ok()
}

/// DER bytes of a public key given as bare base64 DER (how SendGrid and Postal show keys)
/// or as PEM: armor lines dropped, whitespace ignored.
pub(crate) fn der_from_base64_or_pem(key: &str) -> Option<Vec<u8>> {
    let base64: String = key
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if base64.is_empty() {
        return None;
    }
    base64_decode(&base64)
}

/// The index of the first key whose HMAC-SHA256 over the concatenated `parts` equals
/// `expected`. Comparison is constant-time (`verify_slice`); a wrong-length `expected`
/// simply fails.
pub(crate) fn hmac_sha256_match(
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    expected: &[u8],
) -> Option<usize> {
    keys.iter().position(|key| {
        let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes keys of any length");
        parts.iter().for_each(|part| mac.update(part));
        mac.verify_slice(expected).is_ok()
    })
}

/// As [`hmac_sha256_match`], with HMAC-SHA1 (Mandrill).
pub(crate) fn hmac_sha1_match(keys: &[Vec<u8>], parts: &[&[u8]], expected: &[u8]) -> Option<usize> {
    keys.iter().position(|key| {
        let mut mac =
            <Hmac<sha1::Sha1>>::new_from_slice(key).expect("HMAC takes keys of any length");
        parts.iter().for_each(|part| mac.update(part));
        mac.verify_slice(expected).is_ok()
    })
}

/// SHA-256 of a shared credential. Credentials are stored and compared as digests so the
/// comparison is constant-time and does not even leak the configured length.
pub(crate) fn credential_digest(credential: &[u8]) -> [u8; 32] {
    Sha256::digest(credential).into()
}

/// Index of the configured digest equal to `presented`'s digest; every entry is compared.
pub(crate) fn credential_match(digests: &[[u8; 32]], presented: &[u8]) -> Option<usize> {
    let presented = credential_digest(presented);
    let mut found = None;
    for (index, digest) in digests.iter().enumerate() {
        if bool::from(digest.ct_eq(&presented)) && found.is_none() {
            found = Some(index);
        }
    }
    found
}

/// Unix seconds written as plain ASCII digits (no sign, no spaces, no fraction).
pub(crate) fn parse_unix_seconds(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (SNS `Timestamp`) as Unix seconds; `+00:00` is accepted
/// for `Z`. Other offsets are not: SNS always writes UTC.
pub(crate) fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let time = time.split_once('.').map_or(time, |(whole, fraction)| {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            "invalid"
        } else {
            whole
        }
    });
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        number(d.next()?, 4)?,
        number(d.next()?, 2)?,
        number(d.next()?, 2)?,
    );
    let mut t = time.split(':');
    let (hour, minute, second) = (
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
    );
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `stale_timestamp` unless `signed_at` is within `tolerance` seconds (past or future) of
/// the request's receipt.
pub(crate) fn check_fresh(
    signed_at: i64,
    request: &Request,
    tolerance: i64,
) -> Result<(), Rejection> {
    let distance = request
        .received_at_secs()
        .saturating_sub(signed_at)
        .saturating_abs();
    if distance > tolerance {
        return Err(Rejection::new(
            Reason::StaleTimestamp,
            format!("signed timestamp is {distance} s from receipt, tolerance is {tolerance} s"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2022-07-28T21:23:58.317Z"),
            Some(1_659_043_438)
        );
        assert_eq!(
            parse_rfc3339_utc("2000-02-29T12:00:00+00:00"),
            Some(951_825_600)
        );
        for bad in [
            "",
            "2022-07-28 21:23:58Z",
            "2022-07-28T21:23:58",
            "2022-13-01T00:00:00Z",
            "2022-07-28T21:23:58.Z",
            "2022-07-28T21:23:58+02:00",
            "+022-07-28T21:23:58Z",
            "2022-07-28T21:23Z",
            "2022-07-28T21:23:58:00Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn unix_seconds_are_plain_digits() {
        assert_eq!(parse_unix_seconds("1600112502"), Some(1_600_112_502));
        for bad in ["", "+5", "-5", " 5", "1.5", "timestamp", "9999999999999"] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn freshness_is_symmetric_around_receipt() {
        let request = Request {
            received_at_ms: 1_000_000,
            ..Request::default()
        };
        assert!(check_fresh(1000 - 300, &request, 300).is_ok());
        assert!(check_fresh(1000 + 300, &request, 300).is_ok());
        assert_eq!(
            check_fresh(1000 - 301, &request, 300).unwrap_err().reason,
            Reason::StaleTimestamp
        );
        assert_eq!(
            check_fresh(1000 + 301, &request, 300).unwrap_err().reason,
            Reason::StaleTimestamp
        );
        assert!(check_fresh(i64::MIN, &request, 300).is_err());
    }

    #[test]
    fn credentials_match_by_digest_only_exactly() {
        let digests = [credential_digest(b"old:pw"), credential_digest(b"new:pw")];
        assert_eq!(credential_match(&digests, b"new:pw"), Some(1));
        assert_eq!(credential_match(&digests, b"new:pw "), None);
        assert_eq!(credential_match(&[], b""), None);
    }

    #[test]
    fn keys_from_pem_or_bare_base64() {
        let bare = "AAEC";
        let pem = "-----BEGIN PUBLIC KEY-----\nAA\nEC\n-----END PUBLIC KEY-----\n";
        assert_eq!(der_from_base64_or_pem(bare), Some(vec![0, 1, 2]));
        assert_eq!(der_from_base64_or_pem(pem), Some(vec![0, 1, 2]));
        assert_eq!(
            der_from_base64_or_pem("-----BEGIN X-----\n-----END X-----"),
            None
        );
        assert_eq!(
            base64_decode_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").map(|k| k.len()),
            Some(23)
        );
    }
}
