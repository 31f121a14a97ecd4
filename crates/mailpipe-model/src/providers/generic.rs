//! The shared facts about a generic HMAC sender (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::{SignatureHeader, TimestampTolerance};

/// Its signature header is configured (`signature_header`).
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &[],
    options: &[TimestampTolerance, SignatureHeader],
    signs_timestamp: false,
};
