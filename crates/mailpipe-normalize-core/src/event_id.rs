//! Event ids for providers that have no unique id of their own: a SHA-256 over the
//! provider, the source and the fields that identify the event.
//!
//! Encoding: a version tag, then every part as a presence byte, its length (u64, little
//! endian) and its bytes. Length prefixes make the encoding injective — ("ab", "c") and
//! ("a", "bc") hash differently, and so do an absent field and an empty one — so two
//! events that differ in any identifying field never share an id, while the same event
//! re-sent (a provider retry, a replay of `mail.raw`) hashes identically.
//!
//! Fields that change between retries (delivery attempt time, signature nonces) must
//! never be part of the identity; each provider file says which fields it uses.

use mailpipe_model::Provider;
use sha2::{Digest, Sha256};

/// Bumped only if the encoding changes; doing so changes every hashed id (dedupe would
/// let a replay through once), so treat it as a migration.
const VERSION: &[u8] = b"mailpipe-event-id-v1";

/// The lower-case hex SHA-256 id of an event identified by `fields`.
pub(crate) fn hashed(provider: Provider, source: &str, fields: &[Option<&str>]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(VERSION);
    part(&mut hasher, Some(provider.as_str()));
    part(&mut hasher, Some(source));
    for field in fields {
        part(&mut hasher, *field);
    }
    // Hex by hand: `hex::encode` goes through a char iterator, a noticeable share of the
    // normalizer's time for providers whose every event id is hashed.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(64);
    for byte in hasher.finalize() {
        id.push(char::from(DIGITS[usize::from(byte >> 4)]));
        id.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    id
}

fn part(hasher: &mut Sha256, value: Option<&str>) {
    match value {
        None => hasher.update([0u8]),
        Some(text) => {
            hasher.update([1u8]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_injective() {
        let id = hashed(Provider::Brevo, "main", &[Some("m1"), Some("delivered")]);
        assert_eq!(
            id,
            hashed(Provider::Brevo, "main", &[Some("m1"), Some("delivered")])
        );
        assert_eq!(id.len(), 64);
        // The encoding is fixed: changing it changes every hashed id.
        assert_eq!(
            hashed(Provider::Generic, "s", &[None, Some("")]),
            "c4c1e7ac23067660f648f2975ffc756e73339dc7bc92d5dbca266ed2c2edc27b"
        );
        let others = [
            hashed(Provider::Mailjet, "main", &[Some("m1"), Some("delivered")]),
            hashed(Provider::Brevo, "other", &[Some("m1"), Some("delivered")]),
            hashed(Provider::Brevo, "main", &[Some("m1d"), Some("elivered")]),
            hashed(
                Provider::Brevo,
                "main",
                &[Some("m1"), Some("delivered"), None],
            ),
            hashed(Provider::Brevo, "main", &[Some("m1"), None]),
            hashed(Provider::Brevo, "main", &[Some("m1"), Some("")]),
        ];
        for other in &others {
            assert_ne!(&id, other);
        }
        assert_ne!(others[4], others[5], "absent and empty differ");
    }
}
