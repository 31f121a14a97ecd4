//! Event enrichment's pure core (issue 23): what an open or click event's user agent and
//! IP address say about the reader. The normalize stage calls it per event; it knows
//! nothing of Kafka, HTTP, Redis or ClickHouse and never makes a network call.
//!
//! Fields produced:
//!
//! - [`classify_user_agent`] → [`UserAgentInfo`]: the email client or browser ("Apple
//!   Mail", "Outlook", "Gmail", "Chrome"), the OS ("Windows", "macOS", "iOS", "iPadOS",
//!   "Android", "Linux", "ChromeOS"), the [`Device`] class (desktop, mobile, tablet,
//!   proxy, bot, unknown) and the [`MailProxy`] that fetched on the reader's behalf.
//! - [`machine_open`] → [`MachineVerdict`]: whether an open was a machine's (a provider's
//!   flag, Apple Mail Privacy Protection, a security scanner, a declared bot), with the
//!   [`MachineReason`].
//! - [`GeoDatabase::lookup`] → [`GeoFields`]: country, region and city of the address,
//!   from a MaxMind-format file (GeoLite2-City or GeoIP2-City layout) loaded at startup.
//!   [`mmdb_writer`] writes such files for tests.
//!
//! Heuristics: user agents are matched first against our own table of email clients, mail
//! proxies and scanners (distinctive substrings such as `GoogleImageProxy`,
//! `YahooMailProxy`, `Microsoft Outlook`, `Thunderbird/`; Apple Mail as a WebKit user
//! agent without `Safari/`), then by woothee for browsers and crawlers. Machine opens
//! trust the provider's flag both ways, then recognise Mail Privacy Protection by its bare
//! `Mozilla/5.0` user agent or by Apple's 17.0.0.0/8 network, then scanners and bots (see
//! [`machine`] for the rules).
//!
//! Where they are weak:
//!
//! - Mail Privacy Protection detection by user agent and address is a heuristic: Apple
//!   does not label its prefetches, and a reader behind Apple's network looks the same.
//! - Proxies hide the device: an open through Gmail's or Yahoo's image proxy is a real
//!   open with an unknown device and OS ([`Device::Proxy`]).
//! - Geolocation from a proxy's address is the proxy's location, not the reader's; the
//!   same holds for VPNs and mobile carrier gateways.
//! - Clients that embed a browser engine without a distinctive token (the new Outlook for
//!   Windows, Windows Mail, Outlook for Mac on WebKit, other Mac mail apps) are reported
//!   as the browser woothee sees, or as Apple Mail on macOS.
//! - Scanners that send a real browser's user agent are not recognised.
//!
//! Invariant: pure and panic-free on any input — user agents, addresses, database bytes.

mod error;
pub mod geo;
mod ip;
pub mod machine;
pub mod mmdb_writer;
pub mod user_agent;

pub use error::EnrichError;
pub use geo::{GeoDatabase, GeoFields};
pub use machine::{classify_open, machine_open, MachineReason, MachineVerdict};
pub use user_agent::{classify_user_agent, Device, MailProxy, UserAgentInfo};
