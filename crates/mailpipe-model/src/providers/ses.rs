//! The shared facts about Amazon SES (through SNS) (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::Sns;

/// The signature is inside the body, and is not a secret.
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::AmazonCertificate,
    credential_headers: &[],
    options: &[Sns],
    signs_timestamp: false,
};
