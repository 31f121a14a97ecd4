//! The shared facts about SparkPost (see `crate::spec`).

use crate::spec::{ProviderSpec, SHARED_SECRET};

/// The legacy `auth_token` header is a credential.
pub(crate) const SPEC: ProviderSpec = ProviderSpec {
    credential_headers: &["x-messagesystems-webhook-token"],
    ..SHARED_SECRET
};
