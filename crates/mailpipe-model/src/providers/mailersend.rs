//! The shared facts about MailerSend (see `crate::spec`).

use crate::spec::{ProviderSpec, SecretKind, SourceOption};
use SourceOption::TimestampTolerance;

pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &["signature"],
    options: &[TimestampTolerance],
    signs_timestamp: false,
};
