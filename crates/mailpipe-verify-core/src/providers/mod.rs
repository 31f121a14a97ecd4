//! One module per provider, each with the same surface — `verify(request, source, context)`
//! and, for tests, `example(now)`, a correctly signed request — and one `match` from
//! provider to module, both declared from `mailpipe_model::for_each_provider!`: a new
//! provider is its file here, nothing else. The shared-secret providers (no payload
//! signature) delegate to `shared_secret::verify`; their files hold what is particular to
//! them: documentation and tests.

use mailpipe_model::Provider;

use crate::config::SourceConfig;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

/// The provider modules and the `match`es from provider to module, from the one list.
macro_rules! providers {
    ($($module:ident $variant:ident $id:literal,)*) => {
        $(pub(crate) mod $module;)*

        pub(crate) fn verify(
            request: &Request,
            source: &SourceConfig,
            context: &mut Context<'_>,
        ) -> Result<Authenticated, Rejection> {
            match source.provider() {
                $(Provider::$variant => $module::verify(request, source, context),)*
            }
        }

        /// The provider's signed example request (`crate::testing::example`).
        #[cfg(any(test, feature = "testing"))]
        pub(crate) fn example(provider: Provider, now: i64) -> crate::testing::ExampleParts {
            match provider {
                $(Provider::$variant => $module::example(now),)*
            }
        }
    };
}

mailpipe_model::for_each_provider!(providers);

/// HMAC-SHA256 of the raw body with any configured key, compared with `expected` (the
/// signature a provider sent, already decoded): MailerSend's and generic senders' scheme.
pub(crate) fn body_hmac_sha256(
    request: &Request,
    source: &SourceConfig,
    expected: &[u8],
) -> Result<Authenticated, Rejection> {
    let keys = source.hmac_keys()?;
    let index = crate::crypto::hmac_sha256_match(keys, &[&request.body], expected)
        .ok_or_else(Rejection::no_key_verifies)?;
    Ok(Authenticated::by_key(Scheme::HmacSha256, source, index))
}
