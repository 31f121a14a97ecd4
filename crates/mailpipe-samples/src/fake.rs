//! Plausible contents for sample events: recipients on reserved example domains, subjects,
//! links, user agents, documentation IP ranges, SMTP replies, and the time formats
//! providers write. Nothing here resembles real people or real networks.

use chrono::{DateTime, FixedOffset, Utc};

use crate::rng::Rng;

const FIRST: &[&str] = &[
    "ann", "bruno", "chen", "dara", "emil", "fatima", "goran", "hana", "ines", "jonas", "kofi",
    "lena", "marta", "nils", "olu", "priya", "quentin", "rosa", "sami", "tomas", "uma", "vera",
    "wei", "yara", "zoe",
];
const LAST: &[&str] = &[
    "adler", "baker", "costa", "dubois", "eriksen", "fischer", "garcia", "haddad", "ito", "jensen",
    "kim", "larsen", "moreau", "nakamura", "okafor", "petrov", "quinn", "rossi", "silva", "tanaka",
    "ueda", "varga", "weber", "yilmaz", "zhang",
];
/// RFC 2606 / 6761 names only.
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "inbox.example.org",
    "corp.example.net",
];
const SUBJECTS: &[&str] = &[
    "Your order has shipped",
    "Welcome aboard",
    "Reset your password",
    "Your weekly digest",
    "Invoice available",
    "Your booking is confirmed",
    "Spring sale: 20% off",
];
const LINKS: &[&str] = &[
    "https://shop.example.com/orders/track",
    "https://www.example.com/welcome",
    "https://app.example.org/reset-password",
    "https://news.example.net/digest/latest",
    "https://shop.example.com/sale?utm_source=email",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
];
/// Campaigns; `None` entries make transactional mail (no campaign) common.
pub const CAMPAIGNS: &[Option<&str>] = &[
    Some("spring-sale"),
    Some("onboarding"),
    Some("weekly-digest"),
    None,
    None,
];
pub const TAGS: &[&str] = &[
    "transactional",
    "welcome",
    "billing",
    "newsletter",
    "security",
];
pub const COUNTRIES: &[(&str, &str, &str)] = &[
    ("US", "CA", "San Francisco"),
    ("DE", "BE", "Berlin"),
    ("FR", "IDF", "Paris"),
    ("JP", "13", "Tokyo"),
    ("BR", "SP", "Sao Paulo"),
];

/// A recipient address, sometimes with capitals (providers pass case through).
pub fn recipient(rng: &mut Rng) -> String {
    let address = format!(
        "{}.{}{}@{}",
        rng.pick(FIRST),
        rng.pick(LAST),
        rng.below(1000),
        rng.pick(DOMAINS)
    );
    if rng.chance(0.2) {
        let mut chars: Vec<char> = address.chars().collect();
        chars[0] = chars[0].to_ascii_uppercase();
        chars.into_iter().collect()
    } else {
        address
    }
}

pub fn subject(rng: &mut Rng) -> &'static str {
    rng.pick(SUBJECTS)
}

pub fn link(rng: &mut Rng) -> &'static str {
    rng.pick(LINKS)
}

pub fn user_agent(rng: &mut Rng) -> &'static str {
    rng.pick(USER_AGENTS)
}

pub fn tag(rng: &mut Rng) -> &'static str {
    rng.pick(TAGS)
}

/// An address in the documentation ranges (RFC 5737).
pub fn ip(rng: &mut Rng) -> String {
    let net = rng.pick(&["192.0.2", "198.51.100", "203.0.113"]);
    format!("{net}.{}", rng.between(1, 254))
}

pub fn sender_domain() -> &'static str {
    "mail.example.com"
}

pub const SMTP_OK: &str = "250 2.0.0 OK: queued as 4Tz9Qm1vBcz";
pub const SMTP_UNKNOWN_USER: &str =
    "550 5.1.1 The email account that you tried to reach does not exist";
pub const SMTP_MAILBOX_FULL: &str = "452 4.2.2 The recipient's mailbox is full";
pub const SMTP_TRY_LATER: &str = "421 4.7.0 Try again later, closing connection";
pub const SMTP_BLOCKED: &str = "554 5.7.1 Service unavailable; client host blocked";

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-26T18:25:23.123Z` (SES, SNS, Resend).
pub fn rfc3339_millis(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2026-11-26T18:25:23.123456Z` (MailerSend).
pub fn rfc3339_micros(ms: i64, extra_micros: u64) -> String {
    format!(
        "{}.{:03}{:03}Z",
        utc(ms).format("%Y-%m-%dT%H:%M:%S"),
        ms.rem_euclid(1000),
        extra_micros % 1000
    )
}

/// Postmark's style: seven fraction digits and a US-Eastern offset,
/// `2026-11-26T13:25:23.1234567-05:00`.
pub fn postmark_time(ms: i64, extra: u64) -> String {
    let eastern = FixedOffset::west_opt(5 * 3600).expect("valid offset");
    let local = utc(ms).with_timezone(&eastern);
    format!(
        "{}.{:03}{:04}-05:00",
        local.format("%Y-%m-%dT%H:%M:%S"),
        ms.rem_euclid(1000),
        extra % 10_000
    )
}

/// Unix seconds with a fraction of microseconds, as a JSON number (Mailgun, Postal).
pub fn float_seconds(ms: i64, extra_micros: u64) -> serde_json::Value {
    let micros = ms * 1000 + (extra_micros % 1000) as i64;
    serde_json::Number::from_f64(micros as f64 / 1e6)
        .map(serde_json::Value::Number)
        .unwrap_or_default()
}

/// `2026-11-26 13:25:23` in the account's time zone (Brevo's `date`).
pub fn brevo_date(ms: i64) -> String {
    let paris = FixedOffset::east_opt(3600).expect("valid offset");
    utc(ms)
        .with_timezone(&paris)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        let ms = 1_764_181_523_123; // 2025-11-26T18:25:23.123Z
        assert_eq!(rfc3339_millis(ms), "2025-11-26T18:25:23.123Z");
        assert_eq!(rfc3339_micros(ms, 456), "2025-11-26T18:25:23.123456Z");
        assert_eq!(postmark_time(ms, 4567), "2025-11-26T13:25:23.1234567-05:00");
        assert_eq!(float_seconds(ms, 456).to_string(), "1764181523.123456");
        assert_eq!(brevo_date(ms), "2025-11-26 19:25:23");
    }

    #[test]
    fn recipients_are_on_example_domains() {
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let r = recipient(&mut rng);
            let domain = r.rsplit_once('@').unwrap().1;
            assert!(DOMAINS.contains(&domain), "{r}");
        }
    }
}
