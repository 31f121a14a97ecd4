//! Brevo (Sendinblue): no payload signature. Webhooks carry Basic credentials embedded in
//! the URL, or a bearer token configured at creation (`"auth": {"type": "bearer", …}`, sent
//! as `Authorization: Bearer …`), or custom headers (the source's `token_header`). No
//! timestamp: replay protection is downstream dedupe.
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
        crate::shared_secret::tests::check_shared_secret_provider(Provider::Brevo);
    }
}
