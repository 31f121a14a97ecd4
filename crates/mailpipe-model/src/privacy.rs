//! Keyed hashes of recipients, for deployments that must not hold addresses (`[privacy]
//! hash_recipients`) and for remembering an erased recipient's suppression without the
//! address. Pure.
//!
//! The hash is HMAC-SHA256 under the deployment's `[privacy] hash_key` of the lower-cased,
//! trimmed address, its first 16 bytes in hex: stable for one key (so counts, joins and
//! lookups still work), useless without it (no dictionary of addresses reverses it).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `h:<32 hex>`: the keyed hash of `recipient`.
pub fn recipient_hash(key: &[u8], recipient: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(recipient.trim().to_lowercase().as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("h:{}", hex::encode(&digest[..16]))
}

/// What analytics tables store for `recipient` when hashing: the keyed hash with the
/// domain kept (`h:<32 hex>@example.com`), so per-domain figures stay exact. An address
/// without `@` keeps no domain.
pub fn hashed_address(key: &[u8], recipient: &str) -> String {
    let hash = recipient_hash(key, recipient);
    match recipient.trim().rsplit_once('@') {
        Some((_, domain)) => format!("{hash}@{}", domain.to_lowercase()),
        None => hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_keyed_stable_and_case_blind() {
        let a = recipient_hash(b"key-one-0123456789", "Ann@Example.com ");
        assert_eq!(a, recipient_hash(b"key-one-0123456789", "ann@example.com"));
        assert_ne!(a, recipient_hash(b"key-two-0123456789", "ann@example.com"));
        assert!(a.starts_with("h:") && a.len() == 34, "{a}");
        assert!(!a.contains("ann"));
    }

    #[test]
    fn the_hashed_address_keeps_the_domain_only() {
        let h = hashed_address(b"k", "Bob@Mail.Example.org");
        assert!(h.ends_with("@mail.example.org"), "{h}");
        assert!(!h.to_lowercase().contains("bob"));
        assert_eq!(
            hashed_address(b"k", "no-at-sign"),
            recipient_hash(b"k", "no-at-sign")
        );
    }
}
