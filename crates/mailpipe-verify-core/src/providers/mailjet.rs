//! Mailjet: no payload signature. Mailjet's documented protection is HTTPS plus Basic
//! credentials in the event-callback URL; a bearer token or the source's `token_header`
//! is accepted too for deployments that inject one at a proxy. No timestamp: replay
//! protection is downstream dedupe.
//!
//! Verified by `shared_secret::verify` (this file holds what is particular to it).

// No payload signature: a shared secret presented as the provider allows.
#[cfg(any(test, feature = "testing"))]
pub(crate) use crate::shared_secret::example;
pub(crate) use crate::shared_secret::verify;

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;

    #[test]
    fn shared_secret_forms_rotation_and_failures() {
        crate::shared_secret::tests::check_shared_secret_provider(Provider::Mailjet);
    }
}
