//! Machine opens: was an open (or click) made by a person reading the message, or by a
//! machine fetching it on delivery?
//!
//! Rules, first match wins:
//!
//! 1. The provider said so. SendGrid's `sg_machine_open`, Mailgun's client-info bot flag
//!    and Brevo's proxy-open flag are trusted both ways: `true` is a machine
//!    ([`MachineReason::ProviderFlag`]), `false` is a person. The provider saw the whole
//!    request (every header, the connecting address and its reputation, the time since
//!    delivery) and keeps its own lists of prefetching networks; we see a lossy summary
//!    of it. Overruling its `false` with our weaker guesses would also make our counts
//!    disagree with the provider's dashboard for no better answer.
//! 2. The bare user agent `Mozilla/5.0`: Apple Mail Privacy Protection's prefetch
//!    ([`MachineReason::AppleMailPrivacy`]).
//! 3. An address in Apple's 17.0.0.0/8 with an Apple-Mail-like or empty user agent: also
//!    Mail Privacy Protection, which fetches from Apple's own network.
//! 4. A security gateway or link prefetcher of our table (Barracuda, Mimecast,
//!    Proofpoint, BingPreview): [`MachineReason::SecurityScanner`].
//! 5. A user agent that declares itself a crawler or an HTTP library (Googlebot, curl,
//!    python-urllib, per woothee): [`MachineReason::Bot`].
//! 6. Everything else is a person, with no reason. That includes Gmail's and Yahoo's image
//!    proxies: they fetch when the reader opens the message (then cache), so the first
//!    proxied open is a real open, only the device is hidden.
//!
//! Where this is weak:
//!
//! - Mail Privacy Protection is recognised by user agent and address only. Apple does not
//!   label its prefetches; a reader on Apple Mail at home behind Apple's network, or a
//!   future change of the prefetch's user agent, will be misjudged. Apple's own prefetch
//!   lists (and the provider flags of rule 1) are better when available.
//! - Scanners that copy a real browser's user agent and fetch from cloud networks are not
//!   recognised; timing (a click seconds after delivery, every link at once) would catch
//!   them but needs state this pure function does not have.
//! - These rules are about opens. For clicks only rules 1, 4 and 5 are meaningful: Mail
//!   Privacy Protection does not follow links.

use crate::ip::{is_apple_v4, parse_ip};
use crate::user_agent::{classify, Classified, MailProxy, UserAgentInfo};

/// Why an open was judged to be a machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineReason {
    /// The email provider flagged the event as a machine open.
    ProviderFlag,
    /// Apple Mail Privacy Protection's prefetch (user agent, or Apple address).
    AppleMailPrivacy,
    /// A security gateway or link prefetcher fetched the message's links or images.
    SecurityScanner,
    /// The user agent declares a crawler or an HTTP library.
    Bot,
}

impl MachineReason {
    /// The stable lower-case name stored with the event: "provider_flag",
    /// "apple_mail_privacy", "security_scanner" or "bot".
    pub fn as_str(self) -> &'static str {
        match self {
            MachineReason::ProviderFlag => "provider_flag",
            MachineReason::AppleMailPrivacy => "apple_mail_privacy",
            MachineReason::SecurityScanner => "security_scanner",
            MachineReason::Bot => "bot",
        }
    }
}

/// Whether an open was a machine's, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineVerdict {
    /// `true` for a machine, `false` for a person (or when nothing says otherwise).
    pub machine: bool,
    /// Why it is a machine; always `None` when `machine` is `false`.
    pub reason: Option<MachineReason>,
}

impl MachineVerdict {
    /// A person opened the message (or nothing says otherwise).
    pub const HUMAN: MachineVerdict = MachineVerdict {
        machine: false,
        reason: None,
    };

    /// A machine opened the message, for `reason`.
    pub fn machine(reason: MachineReason) -> MachineVerdict {
        MachineVerdict {
            machine: true,
            reason: Some(reason),
        }
    }
}

/// Judges one open. `user_agent` and `ip` are the event's, as the provider sent them
/// (`None` when absent; an unparsable address counts as absent).
///
/// `provider_flag`: what the ESP said (SendGrid `sg_machine_open`, Mailgun client-info
/// bot, Brevo `proxy_open`), `None` if it said nothing. See the module docs for the rules
/// and where they are weak.
pub fn machine_open(
    user_agent: Option<&str>,
    ip: Option<&str>,
    provider_flag: Option<bool>,
) -> MachineVerdict {
    match provider_flag {
        Some(flag) => flag_verdict(flag),
        None => {
            let ua = user_agent.unwrap_or("");
            verdict(&classify(ua), ua, ip)
        }
    }
}

/// An open's user-agent facts and its verdict, the user agent classified once (what the
/// normalize stage needs for every open): [`crate::classify_user_agent`] and
/// [`machine_open`] in one.
pub fn classify_open(
    user_agent: Option<&str>,
    ip: Option<&str>,
    provider_flag: Option<bool>,
) -> (UserAgentInfo, MachineVerdict) {
    let ua = user_agent.unwrap_or("");
    let classified = classify(ua);
    let judged = match provider_flag {
        Some(flag) => flag_verdict(flag),
        None => verdict(&classified, ua, ip),
    };
    (classified.info, judged)
}

/// The provider's own word: it always wins, its `false` too.
fn flag_verdict(machine: bool) -> MachineVerdict {
    if machine {
        MachineVerdict::machine(MachineReason::ProviderFlag)
    } else {
        MachineVerdict::HUMAN
    }
}

/// The heuristics, on a classified user agent.
fn verdict(classified: &Classified, ua: &str, ip: Option<&str>) -> MachineVerdict {
    let info = &classified.info;
    if info.proxy == Some(MailProxy::AppleMailPrivacy) {
        return MachineVerdict::machine(MachineReason::AppleMailPrivacy);
    }
    let from_apple = ip.and_then(parse_ip).is_some_and(is_apple_v4);
    let apple_like_ua = ua.trim().is_empty() || info.client.as_deref() == Some("Apple Mail");
    if from_apple && apple_like_ua {
        return MachineVerdict::machine(MachineReason::AppleMailPrivacy);
    }
    if classified.scanner {
        return MachineVerdict::machine(MachineReason::SecurityScanner);
    }
    if info.device == crate::Device::Bot {
        return MachineVerdict::machine(MachineReason::Bot);
    }
    MachineVerdict::HUMAN
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLE_MAIL_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) \
                                  AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const GMAIL: &str =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";

    #[test]
    fn classify_open_is_classify_user_agent_and_machine_open_in_one() {
        for ua in [
            None,
            Some(""),
            Some("Mozilla/5.0"),
            Some(APPLE_MAIL_IOS),
            Some(CHROME_WIN),
            Some(GMAIL),
        ] {
            for ip in [None, Some("17.58.1.2"), Some("198.51.100.7")] {
                for flag in [None, Some(true), Some(false)] {
                    let (info, verdict) = classify_open(ua, ip, flag);
                    assert_eq!(info, crate::classify_user_agent(ua.unwrap_or("")));
                    assert_eq!(
                        verdict,
                        machine_open(ua, ip, flag),
                        "{ua:?} {ip:?} {flag:?}"
                    );
                }
            }
        }
    }

    fn reason(ua: Option<&str>, ip: Option<&str>, flag: Option<bool>) -> Option<&'static str> {
        let verdict = machine_open(ua, ip, flag);
        assert_eq!(verdict.machine, verdict.reason.is_some());
        verdict.reason.map(MachineReason::as_str)
    }

    #[test]
    fn provider_flag_wins_both_ways() {
        assert_eq!(
            reason(Some(CHROME_WIN), None, Some(true)),
            Some("provider_flag")
        );
        assert_eq!(
            reason(Some("Mozilla/5.0"), Some("17.1.2.3"), Some(false)),
            None
        );
        assert_eq!(reason(Some("Mimecast"), None, Some(false)), None);
    }

    #[test]
    fn bare_mozilla_is_apple_privacy() {
        assert_eq!(
            reason(Some("Mozilla/5.0"), None, None),
            Some("apple_mail_privacy")
        );
        assert_eq!(
            reason(Some("Mozilla/5.0"), Some("203.0.113.9"), None),
            Some("apple_mail_privacy")
        );
    }

    #[test]
    fn apple_address_with_apple_mail_or_no_ua_is_apple_privacy() {
        assert_eq!(
            reason(Some(APPLE_MAIL_IOS), Some("17.58.63.1"), None),
            Some("apple_mail_privacy")
        );
        assert_eq!(
            reason(None, Some("17.58.63.1"), None),
            Some("apple_mail_privacy")
        );
        assert_eq!(
            reason(Some("  "), Some("::ffff:17.1.1.1"), None),
            Some("apple_mail_privacy")
        );
        // Chrome from Apple's network is an Apple employee reading, not a prefetch.
        assert_eq!(reason(Some(CHROME_WIN), Some("17.58.63.1"), None), None);
        // Apple Mail elsewhere is a reader.
        assert_eq!(
            reason(Some(APPLE_MAIL_IOS), Some("198.51.100.4"), None),
            None
        );
        assert_eq!(reason(Some(APPLE_MAIL_IOS), Some("not an ip"), None), None);
        assert_eq!(reason(None, None, None), None);
    }

    #[test]
    fn scanners_and_bots_are_machines_image_proxies_are_not() {
        let barracuda = "Mozilla/5.0 (compatible; Barracuda Sentinel link protection)";
        assert_eq!(
            reason(Some(barracuda), None, None),
            Some("security_scanner")
        );
        let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(reason(Some(googlebot), None, None), Some("bot"));
        assert_eq!(reason(Some("curl/8.5.0"), None, None), Some("bot"));
        assert_eq!(reason(Some(GMAIL), Some("66.249.84.1"), None), None);
        assert_eq!(
            reason(Some("YahooMailProxy; https://help.yahoo.com"), None, None),
            None
        );
    }

    #[test]
    fn verdict_constructors_and_names() {
        assert_eq!(MachineVerdict::default(), MachineVerdict::HUMAN);
        let v = MachineVerdict::machine(MachineReason::Bot);
        assert!(v.machine);
        assert_eq!(MachineReason::ProviderFlag.as_str(), "provider_flag");
        assert_eq!(
            MachineReason::AppleMailPrivacy.as_str(),
            "apple_mail_privacy"
        );
        assert_eq!(MachineReason::SecurityScanner.as_str(), "security_scanner");
        assert_eq!(MachineReason::Bot.as_str(), "bot");
    }
}
