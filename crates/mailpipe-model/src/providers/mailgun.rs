//! The shared facts about Mailgun (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::TimestampTolerance;

/// The signature is inside the body, and is not a secret.
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &[],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};
