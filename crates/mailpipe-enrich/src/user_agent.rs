//! What a user agent says about the reader's software and device.
//!
//! Two steps, first match wins:
//!
//! 1. Our own table of email clients, mail proxies and security scanners, matched on
//!    distinctive substrings (ASCII case-insensitive), then two structural rules for Apple
//!    Mail, whose user agent is a WebKit one without the `Safari/` token a browser sends.
//!    Browser parsers do not know these, or call them "Safari"/"Firefox".
//! 2. [`woothee`] for everything else (browsers, crawlers, HTTP libraries), with its OS
//!    names folded to a small readable set.
//!
//! Only the first [`MAX_USER_AGENT_BYTES`] bytes are looked at, so a hostile multi-megabyte
//! header costs no more than a long real one. No regex is compiled per call; woothee's are
//! compiled once, on first use.

use woothee::parser::Parser;

/// How much of a user agent is looked at. Real ones are 20 to 400 bytes; everything a rule
/// matches on appears well before this.
pub const MAX_USER_AGENT_BYTES: usize = 1024;

/// What a user agent says about the reader's software and device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAgentInfo {
    /// The email client or browser: "Apple Mail", "Outlook", "Gmail", "Chrome", ...;
    /// `None` when the user agent does not say.
    pub client: Option<String>,
    /// The operating system: "Windows", "macOS", "iOS", "iPadOS", "Android", "Linux",
    /// "ChromeOS", or woothee's name for rarer ones; `None` when unknown or hidden by a
    /// proxy.
    pub os: Option<String>,
    /// The kind of device; [`Device::Proxy`] when a mail proxy fetched on the reader's
    /// behalf and the device is hidden.
    pub device: Device,
    /// The mail provider's proxy that made the request, if one did.
    pub proxy: Option<MailProxy>,
}

/// The kind of device a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A desktop or laptop computer.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet (iPad, Android without the `Mobile` token).
    Tablet,
    /// A mail provider's image proxy: the reader's device is not visible.
    Proxy,
    /// A crawler, HTTP library, link scanner or prefetcher: no reader at all.
    Bot,
    /// The user agent does not say.
    #[default]
    Unknown,
}

impl Device {
    /// The stable lower-case name stored with the event: "desktop", "mobile", "tablet",
    /// "proxy", "bot" or "unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Proxy => "proxy",
            Device::Bot => "bot",
            Device::Unknown => "unknown",
        }
    }
}

/// A mail provider's proxy that fetches images on the reader's behalf.
///
/// Microsoft's services are not listed: Outlook.com and Microsoft 365 fetch through
/// ordinary-looking browser user agents we cannot tell apart reliably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProxy {
    /// Gmail's image proxy (`GoogleImageProxy`, via ggpht.com): fetches when the reader
    /// opens the message, caches afterwards.
    GoogleImageProxy,
    /// Yahoo Mail's image proxy (`YahooMailProxy`): like Gmail's, fetches on open.
    YahooMailProxy,
    /// Apple Mail Privacy Protection: prefetches every image on delivery, whether or not
    /// the message is ever read.
    AppleMailPrivacy,
}

impl MailProxy {
    /// The stable lower-case name stored with the event: "google_image_proxy",
    /// "yahoo_mail_proxy" or "apple_mail_privacy".
    pub fn as_str(self) -> &'static str {
        match self {
            MailProxy::GoogleImageProxy => "google_image_proxy",
            MailProxy::YahooMailProxy => "yahoo_mail_proxy",
            MailProxy::AppleMailPrivacy => "apple_mail_privacy",
        }
    }
}

/// Classifies a user agent. Never fails: an empty, garbage or unknown user agent gives
/// `None`s and [`Device::Unknown`].
///
/// The bare `Mozilla/5.0` (nothing else, surrounding whitespace ignored) is what Apple Mail
/// Privacy Protection's prefetch sends: no client, [`Device::Proxy`],
/// [`MailProxy::AppleMailPrivacy`].
pub fn classify_user_agent(ua: &str) -> UserAgentInfo {
    classify(ua).info
}

/// A classification and where it came from, for [`crate::machine_open`].
pub(crate) struct Classified {
    pub(crate) info: UserAgentInfo,
    /// The user agent is one of the security scanners or link prefetchers of our table.
    pub(crate) scanner: bool,
}

/// [`classify_user_agent`], also telling whether a security scanner matched.
pub(crate) fn classify(ua: &str) -> Classified {
    let ua = head(ua.trim());
    if ua.is_empty() {
        return Classified {
            info: UserAgentInfo::default(),
            scanner: false,
        };
    }
    if ua == APPLE_PRIVACY_PREFETCH_UA {
        let info = UserAgentInfo {
            client: None,
            os: None,
            device: Device::Proxy,
            proxy: Some(MailProxy::AppleMailPrivacy),
        };
        return Classified {
            info,
            scanner: false,
        };
    }
    if let Some(rule) = RULES
        .iter()
        .find(|rule| contains_ignore_case(ua, rule.token))
    {
        return Classified {
            info: rule.apply(ua),
            scanner: rule.scanner,
        };
    }
    if let Some(info) = apple_mail(ua) {
        return Classified {
            info,
            scanner: false,
        };
    }
    Classified {
        info: from_woothee(ua),
        scanner: false,
    }
}

/// The whole user agent of Apple Mail Privacy Protection's prefetch.
const APPLE_PRIVACY_PREFETCH_UA: &str = "Mozilla/5.0";

/// Where a table row takes the OS from.
enum OsRule {
    /// Not visible (a proxy, a scanner).
    Hidden,
    /// Always this one: the client exists only there.
    Fixed(&'static str),
    /// From the platform tokens of a desktop user agent ("Windows NT", "Macintosh", ...).
    Platform,
}

/// One row of our table: a substring that identifies a client, proxy, scanner or bot.
struct Rule {
    /// Matched ASCII case-insensitively anywhere in the user agent.
    token: &'static str,
    client: &'static str,
    os: OsRule,
    device: Device,
    proxy: Option<MailProxy>,
    /// A security scanner or link prefetcher: a machine, not a reader.
    scanner: bool,
}

impl Rule {
    fn apply(&self, ua: &str) -> UserAgentInfo {
        let os = match self.os {
            OsRule::Hidden => None,
            OsRule::Fixed(os) => Some(os),
            OsRule::Platform => desktop_platform(ua),
        };
        // An Android app's web view says "Mobile" on phones only.
        let android_web_view = os == Some("Android") && ua.contains("(Linux; Android");
        let device = if self.device == Device::Mobile && android_web_view {
            android_device(ua)
        } else {
            self.device
        };
        UserAgentInfo {
            client: Some(self.client.to_string()),
            os: os.map(str::to_string),
            device,
            proxy: self.proxy,
        }
    }
}

const fn proxy(token: &'static str, client: &'static str, proxy: MailProxy) -> Rule {
    Rule {
        token,
        client,
        os: OsRule::Hidden,
        device: Device::Proxy,
        proxy: Some(proxy),
        scanner: false,
    }
}

const fn scanner(token: &'static str, client: &'static str) -> Rule {
    Rule {
        token,
        client,
        os: OsRule::Hidden,
        device: Device::Bot,
        proxy: None,
        scanner: true,
    }
}

const fn bot(token: &'static str, client: &'static str) -> Rule {
    Rule {
        token,
        client,
        os: OsRule::Hidden,
        device: Device::Bot,
        proxy: None,
        scanner: false,
    }
}

const fn client(token: &'static str, client: &'static str, os: OsRule, device: Device) -> Rule {
    Rule {
        token,
        client,
        os,
        device,
        proxy: None,
        scanner: false,
    }
}

/// Email clients, mail proxies, security scanners and bots, in the order they are tried. Proxies
/// and scanners come first: they may wrap a browser-like user agent.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    proxy("GoogleImageProxy", "Gmail", MailProxy::GoogleImageProxy),
    proxy("YahooMailProxy", "Yahoo Mail", MailProxy::YahooMailProxy),
    // Security gateways that fetch every link (and sometimes image) of a message on
    // delivery, and Microsoft's link preview fetcher.
    scanner("BingPreview", "BingPreview"),
    scanner("Barracuda", "Barracuda"),
    scanner("Mimecast", "Mimecast"),
    scanner("Proofpoint", "Proofpoint"),
    // Outlook: the mobile apps, Outlook 2011 and later for Mac, then the Windows desktop
    // app, whose user agent names "Microsoft Outlook <version>".
    client("Outlook-iOS/", "Outlook", OsRule::Fixed("iOS"), Device::Mobile),
    client("Outlook-Android/", "Outlook", OsRule::Fixed("Android"), Device::Mobile),
    client("MacOutlook/", "Outlook", OsRule::Fixed("macOS"), Device::Desktop),
    client("Microsoft Outlook", "Outlook", OsRule::Platform, Device::Desktop),
    // Other Office applications (a link clicked in a Word document, say).
    client("Microsoft Office/", "Microsoft Office", OsRule::Platform, Device::Desktop),
    // Vista's Windows Mail and Windows Live Mail call themselves Outlook Express 7.
    client("Outlook-Express/", "Windows Mail", OsRule::Fixed("Windows"), Device::Desktop),
    client("Windows Live Mail", "Windows Mail", OsRule::Fixed("Windows"), Device::Desktop),
    client("Windows Mail", "Windows Mail", OsRule::Fixed("Windows"), Device::Desktop),
    client("Thunderbird/", "Thunderbird", OsRule::Platform, Device::Desktop),
    client("SamsungEmail/", "Samsung Email", OsRule::Fixed("Android"), Device::Mobile),
    // HTTP libraries woothee does not know: a program, not a reader.
    bot("python-requests/", "python-requests"),
    bot("Go-http-client/", "Go-http-client"),
];

/// Tokens of iOS in-app web views that also lack `Safari/` but are not Apple Mail.
const IOS_IN_APP_TOKENS: &[&str] = &["GSA/", "FBAN/", "FBAV/", "Instagram", "LinkedInApp"];

/// Apple Mail: a WebKit user agent without the `Safari/` token that Safari and every
/// browser built on WebKit or Blink send. On macOS also without `Version/`; on iOS and
/// iPadOS with the `Mobile/` build token.
fn apple_mail(ua: &str) -> Option<UserAgentInfo> {
    if !ua.contains("AppleWebKit/") || ua.contains("Safari/") {
        return None;
    }
    let (os, device) = if ua.contains("iPad") {
        ("iPadOS", Device::Tablet)
    } else if ua.contains("iPhone") || ua.contains("iPod") {
        ("iOS", Device::Mobile)
    } else if ua.contains("Macintosh") && !ua.contains("Version/") {
        ("macOS", Device::Desktop)
    } else {
        return None;
    };
    let ios = os != "macOS";
    if ios && (!ua.contains("Mobile/") || IOS_IN_APP_TOKENS.iter().any(|t| ua.contains(t))) {
        return None;
    }
    Some(UserAgentInfo {
        client: Some("Apple Mail".to_string()),
        os: Some(os.to_string()),
        device,
        proxy: None,
    })
}

/// The OS of a desktop client's user agent, from its platform tokens.
fn desktop_platform(ua: &str) -> Option<&'static str> {
    if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        Some("macOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("Linux")
    } else {
        None
    }
}

/// Android phones send `Mobile`, Android tablets do not.
fn android_device(ua: &str) -> Device {
    if ua.contains("Mobile") {
        Device::Mobile
    } else {
        Device::Tablet
    }
}

/// woothee's answer for browsers, crawlers and HTTP libraries.
fn from_woothee(ua: &str) -> UserAgentInfo {
    let Some(result) = Parser::new().parse(ua) else {
        return UserAgentInfo::default();
    };
    let client = known(result.name).map(str::to_string);
    let os = known(result.os).map(normalize_os);
    let device = match result.category {
        "pc" => Device::Desktop,
        "smartphone" | "mobilephone" => match os.as_deref() {
            Some("iPadOS") => Device::Tablet,
            Some("Android") => android_device(ua),
            _ => Device::Mobile,
        },
        "crawler" => Device::Bot,
        // curl, wget, Python, Java, PHP and the like: a program, not a reader.
        "misc" if result.name == "HTTP Library" => Device::Bot,
        _ => Device::Unknown,
    };
    UserAgentInfo {
        client,
        os,
        device,
        proxy: None,
    }
}

/// woothee says "UNKNOWN" (or nothing) when it does not know.
fn known(value: &str) -> Option<&str> {
    if value.is_empty() || value == woothee::woothee::VALUE_UNKNOWN {
        None
    } else {
        Some(value)
    }
}

/// Folds woothee's OS names ("Windows 10", "Mac OSX", "iPhone", ...) to the small set we
/// store; rarer ones are kept as woothee names them.
fn normalize_os(os: &str) -> String {
    let folded = match os {
        "Mac OSX" => "macOS",
        "iPhone" | "iPod" | "iOS" => "iOS",
        "iPad" => "iPadOS",
        "Windows Phone OS" => "Windows Phone",
        "Windows CE" => "Windows CE",
        _ if os.starts_with("Windows") => "Windows",
        _ => os,
    };
    folded.to_string()
}

/// The first [`MAX_USER_AGENT_BYTES`] bytes of `ua`, cut on a character boundary.
fn head(ua: &str) -> &str {
    if ua.len() <= MAX_USER_AGENT_BYTES {
        return ua;
    }
    let mut end = MAX_USER_AGENT_BYTES;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// Whether `needle` (ASCII) occurs in `haystack`, ignoring ASCII case; no allocation.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return true;
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLE_MAIL_MAC: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";

    #[test]
    fn device_and_proxy_names_are_stable() {
        let devices = [
            Device::Desktop,
            Device::Mobile,
            Device::Tablet,
            Device::Proxy,
            Device::Bot,
            Device::Unknown,
        ];
        let names: Vec<_> = devices.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            names,
            ["desktop", "mobile", "tablet", "proxy", "bot", "unknown"]
        );
        assert_eq!(MailProxy::GoogleImageProxy.as_str(), "google_image_proxy");
        assert_eq!(MailProxy::YahooMailProxy.as_str(), "yahoo_mail_proxy");
        assert_eq!(MailProxy::AppleMailPrivacy.as_str(), "apple_mail_privacy");
        assert_eq!(Device::default(), Device::Unknown);
    }

    #[test]
    fn empty_and_whitespace_say_nothing() {
        for ua in ["", "   ", "\t\n"] {
            assert_eq!(classify_user_agent(ua), UserAgentInfo::default());
        }
    }

    #[test]
    fn bare_mozilla_is_apple_privacy_prefetch_even_with_whitespace() {
        let info = classify_user_agent("  Mozilla/5.0 ");
        assert_eq!(info.device, Device::Proxy);
        assert_eq!(info.proxy, Some(MailProxy::AppleMailPrivacy));
        assert_eq!(info.client, None);
        // Anything more is not the prefetch.
        assert_eq!(classify_user_agent("Mozilla/5.0 (X11)").proxy, None);
    }

    #[test]
    fn table_tokens_ignore_case() {
        let info = classify_user_agent("Mozilla/5.0 (compatible; MIMECAST link scanner)");
        assert_eq!(info.client.as_deref(), Some("Mimecast"));
        assert_eq!(info.device, Device::Bot);
        assert!(classify("mimecast").scanner);
        assert!(!classify(APPLE_MAIL_MAC).scanner);
    }

    #[test]
    fn apple_mail_needs_webkit_without_safari() {
        assert_eq!(
            classify_user_agent(APPLE_MAIL_MAC).client.as_deref(),
            Some("Apple Mail")
        );
        let safari = format!("{APPLE_MAIL_MAC} Version/17.1 Safari/605.1.15");
        assert_eq!(
            classify_user_agent(&safari).client.as_deref(),
            Some("Safari")
        );
        // An iPhone web view of another app is not Apple Mail.
        let google_app = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
                          AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/290.0.590 Mobile/15E148";
        assert_ne!(
            classify_user_agent(google_app).client.as_deref(),
            Some("Apple Mail")
        );
    }

    #[test]
    fn platform_of_desktop_clients() {
        assert_eq!(
            desktop_platform("(Windows NT 10.0; Win64; x64)"),
            Some("Windows")
        );
        assert_eq!(
            desktop_platform("(Macintosh; Intel Mac OS X 14.1)"),
            Some("macOS")
        );
        assert_eq!(
            desktop_platform("(X11; Ubuntu; Linux x86_64)"),
            Some("Linux")
        );
        assert_eq!(
            desktop_platform("(X11; CrOS x86_64 15633.69.0)"),
            Some("ChromeOS")
        );
        assert_eq!(desktop_platform("(FreeBSD)"), None);
    }

    #[test]
    fn woothee_os_names_are_folded() {
        assert_eq!(normalize_os("Windows 10"), "Windows");
        assert_eq!(normalize_os("Windows UNKNOWN Ver"), "Windows");
        assert_eq!(normalize_os("Windows Phone OS"), "Windows Phone");
        assert_eq!(normalize_os("Mac OSX"), "macOS");
        assert_eq!(normalize_os("iPhone"), "iOS");
        assert_eq!(normalize_os("iPad"), "iPadOS");
        assert_eq!(normalize_os("Android"), "Android");
        assert_eq!(normalize_os("BSD"), "BSD");
    }

    #[test]
    fn head_cuts_on_a_character_boundary() {
        let long = "é".repeat(MAX_USER_AGENT_BYTES);
        let cut = head(&long);
        assert!(cut.len() <= MAX_USER_AGENT_BYTES);
        assert!(cut.len() >= MAX_USER_AGENT_BYTES - 1);
        assert_eq!(head("short"), "short");
    }

    #[test]
    fn a_token_past_the_head_is_not_seen() {
        let ua = format!("{}GoogleImageProxy", "x".repeat(MAX_USER_AGENT_BYTES));
        assert_eq!(classify_user_agent(&ua).proxy, None);
    }

    #[test]
    fn contains_ignore_case_basics() {
        assert!(contains_ignore_case("abcDEF", "cde"));
        assert!(!contains_ignore_case("ab", "abc"));
        assert!(contains_ignore_case("ümlaut Proofpoint", "PROOFPOINT"));
    }
}
