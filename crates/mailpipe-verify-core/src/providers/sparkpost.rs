//! SparkPost (Bird): no payload signature. `auth_type` basic sends `Authorization: Basic`;
//! a static bearer token (or a custom header, the source's `token_header`) can be sent with
//! `custom_headers`; the deprecated `auth_token` arrives in `X-MessageSystems-Webhook-Token`.
//! OAuth2 client-credentials would need a token endpoint of ours and is not supported.
//!
//! Verified by `shared_secret::verify`; the legacy header is among SparkPost's
//! `credential_headers` in its spec (`mailpipe_model`).

// No payload signature: a shared secret presented as the provider allows.
#[cfg(any(test, feature = "testing"))]
pub(crate) use crate::shared_secret::example;
pub(crate) use crate::shared_secret::verify;

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;

    use crate::testing::{request, verify_with};
    use crate::{Reason, Scheme, SourceConfig, SourceOptions};

    #[test]
    fn shared_secret_forms_rotation_and_failures() {
        crate::shared_secret::tests::check_shared_secret_provider(Provider::Sparkpost);
    }

    #[test]
    fn legacy_auth_token_header() {
        let source = SourceConfig::new(
            Provider::Sparkpost,
            &["legacy-token".into()],
            SourceOptions::default(),
        );
        let ping = |token: &str| {
            request(
                &[("x-messagesystems-webhook-token", token)],
                b"[{\"msys\":{}}]",
                0,
            )
        };
        assert_eq!(
            verify_with(&source, &ping("legacy-token"))
                .unwrap()
                .scheme(),
            Scheme::HeaderToken
        );
        assert_eq!(
            verify_with(&source, &ping("legacy-tokem"))
                .unwrap_err()
                .reason,
            Reason::BadSignature
        );
    }
}
