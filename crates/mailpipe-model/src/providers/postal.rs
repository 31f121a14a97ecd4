//! The shared facts about Postal (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::TimestampTolerance;

/// The key id header stays: it is not a secret.
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::RsaPublicKey,
    credential_headers: &["x-postal-signature", "x-postal-signature-256"],
    options: &[TimestampTolerance],
    signs_timestamp: false,
};
