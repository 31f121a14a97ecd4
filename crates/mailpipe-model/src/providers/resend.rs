//! The shared facts about Resend (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::TimestampTolerance;

/// Ids and timestamps stay: they are dedupe keys, not secrets.
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::StandardWebhooksSecret,
    credential_headers: &["svix-signature", "webhook-signature"],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};
