//! Postmark: no payload signature. Webhooks carry HTTP Basic credentials embedded in the
//! webhook URL (or `HttpAuth`), and/or custom headers configured on the webhook — e.g. a
//! static secret sent as `Authorization: Bearer …` or in the source's `token_header`.
//! There is no timestamp, hence no replay protection beyond TLS; downstream dedupe counts
//! each event once.
//!
//! Verified by `shared_secret::verify` (this file holds what is particular to it).

// No payload signature: a shared secret presented as the provider allows.
#[cfg(any(test, feature = "testing"))]
pub(crate) use crate::shared_secret::example;
pub(crate) use crate::shared_secret::verify;

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;

    use crate::testing::{basic_auth, request, verify_with};
    use crate::{Reason, SourceConfig, SourceOptions};

    #[test]
    fn shared_secret_forms_rotation_and_failures() {
        crate::shared_secret::tests::check_shared_secret_provider(Provider::Postmark);
    }

    #[test]
    fn basic_auth_as_postmark_sends_it_from_the_url() {
        // https://hook:p%40ss@host/… arrives as the decoded user:password in Basic auth.
        let source = SourceConfig::new(
            Provider::Postmark,
            &["hook:p@ss:word".into()],
            SourceOptions::default(),
        );
        let ok = request(
            &[("authorization", &basic_auth("hook", "p@ss:word"))],
            b"{\"RecordType\":\"Bounce\"}",
            0,
        );
        assert!(verify_with(&source, &ok).is_ok());
        let sparkpost_header = request(
            &[("x-messagesystems-webhook-token", "hook:p@ss:word")],
            b"{}",
            0,
        );
        assert_eq!(
            verify_with(&source, &sparkpost_header).unwrap_err().reason,
            Reason::MissingSignature
        );
    }
}
