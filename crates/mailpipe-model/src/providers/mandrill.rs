//! The shared facts about Mandrill (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::{TimestampTolerance, WebhookUrl};

pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &["x-mandrill-signature"],
    options: &[TimestampTolerance, WebhookUrl],
    signs_timestamp: false,
};
