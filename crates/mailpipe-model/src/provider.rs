//! The email service providers mailpipe accepts webhooks from, declared once: the list
//! below makes the enum, [`Provider::ALL`], the ids and the link to each provider's
//! [`ProviderSpec`], so none of them can disagree with another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::ProviderSpec;

/// The providers, listed once: `module Variant "id",` per provider. Adding a provider is
/// one line here plus its own files (`src/providers/<module>.rs` in this crate, in
/// `mailpipe-verify-core`, `mailpipe-normalize-core` and `mailpipe-samples`, and its
/// fixtures): each of those crates declares its modules and its one dispatching `match`
/// from this list, so none keeps a list of its own.
///
/// `for_each_provider!(callback)` expands to `callback! { <the list> }`, `callback` being
/// a `macro_rules!` macro in scope where this is called.
#[macro_export]
macro_rules! for_each_provider {
    ($callback:ident) => {
        $callback! {
            sendgrid Sendgrid "sendgrid",
            mailgun Mailgun "mailgun",
            postmark Postmark "postmark",
            ses Ses "ses",
            mandrill Mandrill "mandrill",
            sparkpost Sparkpost "sparkpost",
            resend Resend "resend",
            brevo Brevo "brevo",
            mailjet Mailjet "mailjet",
            mailersend Mailersend "mailersend",
            postal Postal "postal",
            generic Generic "generic",
        }
    };
}

/// Declares `Provider` from the list, each variant linked to its [`ProviderSpec`] (in
/// `src/providers/`). Not a registry: the set stays a closed enum, and every `match` on it
/// still has to handle a new variant.
macro_rules! providers {
    ($($module:ident $variant:ident $id:literal,)*) => {
        /// An ESP, by the id used in paths (`/webhooks/{provider}`), config and records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Provider {
            $(#[serde(rename = $id)] $variant,)*
        }

        impl Provider {
            /// Every provider, in declaration order.
            pub const ALL: [Provider; [$($id),*].len()] = [$(Provider::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Provider::$variant => $id,)*
                }
            }

            /// What the rest of the code needs to know about this provider.
            pub const fn spec(self) -> &'static ProviderSpec {
                match self {
                    $(Provider::$variant => &crate::providers::$module::SPEC,)*
                }
            }
        }
    };
}

for_each_provider!(providers);

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider id that is not one of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider(pub String);

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown provider {:?}", self.0)
    }
}

impl std::error::Error for UnknownProvider {}

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_str_and_serde() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
            let json = format!("\"{p}\"");
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), p);
        }
        assert!("SendGrid".parse::<Provider>().is_err());
    }

    #[test]
    fn all_is_in_declaration_order_without_gaps() {
        for (i, p) in Provider::ALL.into_iter().enumerate() {
            assert_eq!(p as usize, i);
        }
    }
}
