//! The shared facts about SendGrid (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::TimestampTolerance;

pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::EcdsaP256PublicKey,
    // Its timestamp header stays: it is not a secret.
    credential_headers: &["x-twilio-email-event-webhook-signature"],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};
