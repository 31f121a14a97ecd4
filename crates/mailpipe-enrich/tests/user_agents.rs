//! Realistic user agents, each with what we expect to learn from it and the machine-open
//! verdict (no provider flag). The strings are written for this test from what the clients
//! are known to send; the security-scanner rows only need to carry the vendor's name.

use mailpipe_enrich::{classify_user_agent, machine_open, Device, MachineReason, MailProxy};

struct Case {
    ua: &'static str,
    /// The connecting address, when it matters for the machine verdict.
    ip: Option<&'static str>,
    client: Option<&'static str>,
    os: Option<&'static str>,
    device: Device,
    proxy: Option<MailProxy>,
    machine: Option<MachineReason>,
}

const fn case(
    ua: &'static str,
    client: Option<&'static str>,
    os: Option<&'static str>,
    device: Device,
) -> Case {
    Case {
        ua,
        ip: None,
        client,
        os,
        device,
        proxy: None,
        machine: None,
    }
}

impl Case {
    const fn from(mut self, ip: &'static str) -> Case {
        self.ip = Some(ip);
        self
    }
    const fn proxy(mut self, proxy: MailProxy) -> Case {
        self.proxy = Some(proxy);
        self
    }
    const fn machine(mut self, reason: MachineReason) -> Case {
        self.machine = Some(reason);
        self
    }
}

use Device::{Bot, Desktop, Mobile, Proxy, Tablet, Unknown};

const APPLE_MAIL_MAC: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
const APPLE_MAIL_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) \
                                 AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Desktop browsers.
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
         Some("Chrome"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
         Some("Firefox"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
         Some("Edge"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0",
         Some("Opera"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
         Some("Internet Explorer"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
         Some("Safari"), Some("macOS"), Desktop),
    case("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
         Some("Chrome"), Some("macOS"), Desktop),
    case("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
         Some("Firefox"), Some("Linux"), Desktop),
    case("Mozilla/5.0 (X11; CrOS x86_64 15699.85.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
         Some("Chrome"), Some("ChromeOS"), Desktop),
    // Mobile browsers.
    case("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
         Some("Safari"), Some("iOS"), Mobile),
    case("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
         Some("Chrome"), Some("iOS"), Mobile),
    case("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
         Some("Safari"), Some("iPadOS"), Tablet),
    case("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
         Some("Chrome"), Some("Android"), Mobile),
    case("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36",
         Some("Chrome"), Some("Android"), Tablet),
    case("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
         Some("SamsungBrowser"), Some("Android"), Mobile),
    case("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
         Some("Firefox"), Some("Android"), Mobile),
    // Mail proxies: a real open, device hidden.
    case("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
         Some("Gmail"), None, Proxy).proxy(MailProxy::GoogleImageProxy).from("66.249.93.12"),
    case("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
         Some("Yahoo Mail"), None, Proxy).proxy(MailProxy::YahooMailProxy),
    // Apple Mail, and Mail Privacy Protection's prefetch.
    case(APPLE_MAIL_MAC, Some("Apple Mail"), Some("macOS"), Desktop),
    case(APPLE_MAIL_MAC, Some("Apple Mail"), Some("macOS"), Desktop)
        .from("17.58.101.3").machine(MachineReason::AppleMailPrivacy),
    case(APPLE_MAIL_IPHONE, Some("Apple Mail"), Some("iOS"), Mobile).from("203.0.113.40"),
    case(APPLE_MAIL_IPHONE, Some("Apple Mail"), Some("iOS"), Mobile)
        .from("::ffff:17.120.5.9").machine(MachineReason::AppleMailPrivacy),
    case("Mozilla/5.0 (iPad; CPU OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
         Some("Apple Mail"), Some("iPadOS"), Tablet),
    case("Mozilla/5.0", None, None, Proxy)
        .proxy(MailProxy::AppleMailPrivacy).machine(MachineReason::AppleMailPrivacy),
    case(" Mozilla/5.0\t", None, None, Proxy)
        .proxy(MailProxy::AppleMailPrivacy).machine(MachineReason::AppleMailPrivacy)
        .from("17.1.2.3"),
    case("", None, None, Unknown).from("17.58.101.3").machine(MachineReason::AppleMailPrivacy),
    // Desktop and mobile mail clients.
    case("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; .NET CLR 2.0.50727; .NET CLR 3.0.30729; .NET CLR 3.5.30729; Microsoft Outlook 16.0.17531; ms-office; MSOffice 16)",
         Some("Outlook"), Some("Windows"), Desktop),
    case("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
         Some("Outlook"), Some("Windows"), Desktop),
    case("MacOutlook/16.84.24041420 (Intel Mac OS X Version 14.4.1 (Build 23E224))",
         Some("Outlook"), Some("macOS"), Desktop),
    case("Outlook-iOS/709.2250524.prod.iphone (4.2415.0)", Some("Outlook"), Some("iOS"), Mobile),
    case("Outlook-Android/2.0", Some("Outlook"), Some("Android"), Mobile),
    case("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Word 16.0.17328; Pro)",
         Some("Microsoft Office"), Some("Windows"), Desktop),
    case("Outlook-Express/7.0 (MSIE 7.0; Windows NT 6.1; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; TmstmpExt)",
         Some("Windows Mail"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
         Some("Thunderbird"), Some("Windows"), Desktop),
    case("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
         Some("Thunderbird"), Some("macOS"), Desktop),
    case("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
         Some("Thunderbird"), Some("Linux"), Desktop),
    case("Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 SamsungEmail/6.1.91.3",
         Some("Samsung Email"), Some("Android"), Mobile),
    case("Mozilla/5.0 (Linux; Android 13; SM-X810 Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Safari/537.36 SamsungEmail/6.1.91.3",
         Some("Samsung Email"), Some("Android"), Tablet),
    // An iOS in-app browser is not Apple Mail.
    case("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.38.107;FBBV/593004452;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/5]",
         Some("Webview"), Some("iOS"), Mobile),
    // Security scanners and link prefetchers.
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
         Some("BingPreview"), None, Bot).machine(MachineReason::SecurityScanner),
    case("Mozilla/5.0 (compatible; Barracuda Sentinel URL scan)", Some("Barracuda"), None, Bot)
        .machine(MachineReason::SecurityScanner),
    case("Mimecast Link Inspector/2.1", Some("Mimecast"), None, Bot)
        .machine(MachineReason::SecurityScanner),
    case("Mozilla/5.0 (Windows NT 10.0; Win64; x64) proofpoint-url-defense/3", Some("Proofpoint"), None, Bot)
        .machine(MachineReason::SecurityScanner),
    // Crawlers and HTTP libraries.
    case("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         Some("Googlebot"), None, Bot).machine(MachineReason::Bot),
    case("curl/8.5.0", Some("HTTP Library"), None, Bot).machine(MachineReason::Bot),
    case("python-requests/2.31.0", Some("python-requests"), None, Bot).machine(MachineReason::Bot),
    case("Go-http-client/1.1", Some("Go-http-client"), None, Bot).machine(MachineReason::Bot),
    // Nothing to learn.
    case("", None, None, Unknown),
    case("   ", None, None, Unknown),
    case("-", None, None, Unknown),
    case("mozilla/5.0", None, None, Unknown),
    case("\u{1}\u{7f}%%;;(((", None, None, Unknown),
    case("зеленый слон 🐘", None, None, Unknown),
];

fn check(case: &Case, ua: &str) {
    let info = classify_user_agent(ua);
    let label = format!("{:?}", &ua[..ua.len().min(120)]);
    assert_eq!(info.client.as_deref(), case.client, "client of {label}");
    assert_eq!(info.os.as_deref(), case.os, "os of {label}");
    assert_eq!(info.device, case.device, "device of {label}");
    assert_eq!(info.proxy, case.proxy, "proxy of {label}");
    let verdict = machine_open(Some(ua), case.ip, None);
    assert_eq!(
        verdict.reason, case.machine,
        "machine reason of {label} from {:?}",
        case.ip
    );
    assert_eq!(
        verdict.machine,
        case.machine.is_some(),
        "machine of {label}"
    );
}

#[test]
fn every_case() {
    for case in CASES {
        check(case, case.ua);
    }
    assert!(CASES.len() >= 50, "{}", CASES.len());
}

#[test]
fn very_long_user_agents_are_cut_not_choked_on() {
    // A real prefix followed by a megabyte of padding: the prefix is still recognised.
    let thunderbird =
        "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1 ";
    let long = format!("{thunderbird}{}", "x".repeat(1 << 20));
    check(
        &case("", Some("Thunderbird"), Some("Linux"), Desktop),
        &long,
    );
    // A megabyte of one repeated token is not the bare prefetch user agent.
    let repeated = "Mozilla/5.0 ".repeat(100_000);
    let info = classify_user_agent(&repeated);
    assert_eq!(info.proxy, None);
    // Multi-byte characters across the cut.
    let wide = "é".repeat(1 << 19);
    assert_eq!(classify_user_agent(&wide).device, Unknown);
}

#[test]
fn no_user_agent_and_no_ip_is_a_person() {
    let verdict = machine_open(None, None, None);
    assert!(!verdict.machine);
    assert_eq!(verdict.reason, None);
}

#[test]
fn provider_flag_overrides_the_user_agent() {
    for case in CASES {
        let yes = machine_open(Some(case.ua), case.ip, Some(true));
        assert_eq!(yes.reason, Some(MachineReason::ProviderFlag));
        let no = machine_open(Some(case.ua), case.ip, Some(false));
        assert!(!no.machine && no.reason.is_none());
    }
}
