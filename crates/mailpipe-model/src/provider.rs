//! The email service providers mailpipe accepts webhooks from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ESP, by the id used in paths (`/webhooks/{provider}`), config and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Sendgrid,
    Mailgun,
    Postmark,
    Ses,
    Mandrill,
    Sparkpost,
    Resend,
    Brevo,
    Mailjet,
    Mailersend,
    Postal,
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 12] = [
        Provider::Sendgrid,
        Provider::Mailgun,
        Provider::Postmark,
        Provider::Ses,
        Provider::Mandrill,
        Provider::Sparkpost,
        Provider::Resend,
        Provider::Brevo,
        Provider::Mailjet,
        Provider::Mailersend,
        Provider::Postal,
        Provider::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Postmark => "postmark",
            Provider::Ses => "ses",
            Provider::Mandrill => "mandrill",
            Provider::Sparkpost => "sparkpost",
            Provider::Resend => "resend",
            Provider::Brevo => "brevo",
            Provider::Mailjet => "mailjet",
            Provider::Mailersend => "mailersend",
            Provider::Postal => "postal",
            Provider::Generic => "generic",
        }
    }
}

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
    fn ids_round_trip_through_str() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!("SendGrid".parse::<Provider>().is_err());
    }
}
