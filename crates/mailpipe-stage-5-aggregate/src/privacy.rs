//! `[privacy] hash_recipients`: the rows keep a keyed hash of the recipient with its domain
//! (`h:<hash>@example.com`, [`mailpipe_model::privacy::hashed_address`]) instead of the
//! address, the address is replaced wherever else a row's text holds it (the provider's
//! event JSON, bounce responses, URLs, parameters), and request bodies keep no excerpt.

use mailpipe_model::privacy::hashed_address;

use crate::actions::{ActionRow, SuppressionRow};
use crate::problems::{DeadLetterRow, RejectionRow};
use crate::row::EventRow;

/// Hashes recipients under one key.
#[derive(Clone)]
pub struct RecipientHasher {
    key: Vec<u8>,
}

impl RecipientHasher {
    /// `None` unless `[privacy] hash_recipients` is on.
    pub fn from_settings(privacy: &mailpipe_settings::PrivacySettings) -> Option<Self> {
        privacy.hash_recipients.then(|| RecipientHasher {
            key: privacy.hash_key.as_bytes().to_vec(),
        })
    }

    pub fn event(&self, row: &mut EventRow) {
        if row.recipient.is_empty() {
            return;
        }
        let address = std::mem::take(&mut row.recipient);
        let hashed = hashed_address(&self.key, &address);
        for text in [
            &mut row.raw_event,
            &mut row.mta_response,
            &mut row.description,
            &mut row.url,
            &mut row.message_id,
        ] {
            *text = replace_ignoring_case(text, &address, &hashed);
        }
        for value in row.metadata_values.iter_mut().chain(row.tags.iter_mut()) {
            *value = replace_ignoring_case(value, &address, &hashed);
        }
        row.recipient = hashed;
    }

    pub fn action(&self, row: &mut ActionRow) {
        if row.recipient.is_empty() {
            return;
        }
        let address = std::mem::take(&mut row.recipient);
        let hashed = hashed_address(&self.key, &address);
        for value in row.parameter_values.iter_mut() {
            *value = replace_ignoring_case(value, &address, &hashed);
        }
        row.detail = replace_ignoring_case(&row.detail, &address, &hashed);
        row.recipient = hashed;
    }

    pub fn suppression(&self, row: &mut SuppressionRow) {
        row.recipient = hashed_address(&self.key, &row.recipient);
    }

    pub fn rejection(&self, row: &mut RejectionRow) {
        row.body_excerpt.clear();
    }

    pub fn dead_letter(&self, row: &mut DeadLetterRow) {
        row.payload_excerpt.clear();
    }
}

/// `text` with every occurrence of `needle` (ASCII case ignored) replaced.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_string();
    }
    let lower = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_of_the_address_is_replaced_whatever_its_case() {
        assert_eq!(
            replace_ignoring_case(
                "550 <Ann@X.example> unknown; ann@x.example",
                "ann@x.example",
                "H"
            ),
            "550 <H> unknown; H"
        );
        assert_eq!(replace_ignoring_case("nothing", "", "H"), "nothing");
    }

    #[test]
    fn an_event_row_keeps_the_domain_and_no_address() {
        let hasher = RecipientHasher {
            key: b"0123456789abcdef".to_vec(),
        };
        let mut row = crate::row::EventRow::from_event(
            serde_json::from_value(serde_json::json!({
                "event_id": "e1", "event_type": "bounced", "provider_event": "bounce",
                "provider": "sendgrid", "source": "s", "occurred_at": 1000, "received_at": 2000,
                "recipient": "ann@x.example", "recipient_domain": "x.example", "message_id": null,
                "campaign_id": null, "tags": [], "metadata": {"to": "ANN@x.example"},
                "reject_reason": null, "bounce_class": "hard", "url": null, "user_agent": null,
                "ip": null, "geo": null, "mta_response": "550 ann@x.example unknown",
                "description": null, "raw_request_id": "r1",
                "raw_event": "{\"email\":\"ann@x.example\"}"
            }))
            .unwrap(),
        );
        hasher.event(&mut row);
        assert!(row.recipient.starts_with("h:") && row.recipient.ends_with("@x.example"));
        let all = format!("{row:?}").to_lowercase();
        assert!(!all.contains("ann@"), "{all}");
        assert_eq!(row.recipient_domain, "x.example");
    }
}
