//! The operator's exceptions to the SSRF guard: targets that may be called although their
//! address is forbidden (a test sink on loopback, a CRM on the private network).
//!
//! Entries, as configuration lists them:
//! - `host` or `host:port`: that name, as written in the target URL (any port, or that one);
//! - `a.b.c.d`, `a.b.c.d:port`, `v6addr`, `[v6addr]:port`: that address;
//! - `a.b.c.d/n`, `v6addr/n`: that network, any port.
//!
//! A name entry trusts the name whatever it resolves to: allow only names whose DNS you
//! control. Address and network entries are matched against the address actually connected,
//! so they hold even against DNS rebinding.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::DeliveryError;

/// Invariant: names are stored lower-case, without a trailing dot; addresses in canonical
/// form (an IPv4-mapped IPv6 address as its IPv4 address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Network { net: IpNet, port: Option<u16> },
    Host { name: String, port: Option<u16> },
}

impl AllowList {
    /// The list from configuration entries; the first bad entry is quoted in the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, DeliveryError> {
        let entries = entries
            .iter()
            .map(|entry| {
                parse_entry(entry.as_ref()).map_err(|reason| DeliveryError::InvalidAllowEntry {
                    entry: entry.as_ref().to_string(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a call to `host` (as written in the URL: a name, an IPv4 address or a
    /// bracketed IPv6 address), `port`, connected to `ip`, is explicitly allowed.
    pub fn allows(&self, host: &str, port: u16, ip: IpAddr) -> bool {
        let host = normalize_host(host);
        let ip = ip.to_canonical();
        self.entries.iter().any(|entry| match entry {
            Entry::Network { net, port: only } => {
                net.contains(&ip) && only.is_none_or(|only| only == port)
            }
            Entry::Host { name, port: only } => {
                *name == host && only.is_none_or(|only| only == port)
            }
        })
    }

    /// Why the guard refuses this call: [`super::forbidden_reason`] of `ip`, unless the
    /// list allows the call. `None` means go ahead.
    pub fn refusal(&self, host: &str, port: u16, ip: IpAddr) -> Option<&'static str> {
        super::forbidden_reason(ip).filter(|_| !self.allows(host, port, ip))
    }
}

fn parse_entry(text: &str) -> Result<Entry, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| "not a network such as 10.0.0.0/8 or fd00::/8")?;
        // 10.1.2.3/8 means 10.0.0.0/8: the host bits are dropped, not an error.
        return Ok(Entry::Network {
            net: net.trunc(),
            port: None,
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Entry::Network {
            net: IpNet::from(ip.to_canonical()),
            port: None,
        });
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Ok(Entry::Network {
            net: IpNet::from(socket.ip().to_canonical()),
            port: Some(checked_port(socket.port())?),
        });
    }
    if text.starts_with('[') {
        return Err("an IPv6 address with a port is written [address]:port");
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, Some(parse_port(port)?)),
        None => (text, None),
    };
    let name = normalize_host(name);
    check_name(&name)?;
    Ok(Entry::Host { name, port })
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number from 1 to 65535");
    }
    checked_port(
        text.parse()
            .map_err(|_| "the port is not a number from 1 to 65535")?,
    )
}

fn checked_port(port: u16) -> Result<u16, &'static str> {
    if port == 0 {
        Err("the port is not a number from 1 to 65535")
    } else {
        Ok(port)
    }
}

/// A host as compared: lower-case (DNS names are case-insensitive), without a trailing dot
/// (`example.com.` is `example.com`) or IPv6 brackets.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.contains('*') {
        return Err("wildcards are not supported: list each host");
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err("not a host name, an address or a network");
    }
    // URL parsers read a host ending in a numeric label as an IPv4 address.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("it looks like an IPv4 address but is not one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn entries_that_parse() {
        let cases = [
            ("sink.test", "Host { name: \"sink.test\", port: None }"),
            (" Sink.TEST. ", "Host { name: \"sink.test\", port: None }"),
            (
                "localhost:8080",
                "Host { name: \"localhost\", port: Some(8080) }",
            ),
            (
                "crm_internal",
                "Host { name: \"crm_internal\", port: None }",
            ),
            ("127.0.0.1", "Network { net: 127.0.0.1/32, port: None }"),
            (
                "127.0.0.1:9000",
                "Network { net: 127.0.0.1/32, port: Some(9000) }",
            ),
            ("::1", "Network { net: ::1/128, port: None }"),
            ("[::1]:9000", "Network { net: ::1/128, port: Some(9000) }"),
            (
                "::ffff:10.0.0.5",
                "Network { net: 10.0.0.5/32, port: None }",
            ),
            ("10.0.0.0/8", "Network { net: 10.0.0.0/8, port: None }"),
            ("10.1.2.3/8", "Network { net: 10.0.0.0/8, port: None }"),
            ("fd00::/8", "Network { net: fd00::/8, port: None }"),
        ];
        for (text, expected) in cases {
            let list = AllowList::parse(&[text]).unwrap();
            assert_eq!(format!("{:?}", list.entries[0]), expected, "{text}");
        }
    }

    #[test]
    fn entries_that_do_not() {
        let cases = [
            ("", "it is empty"),
            ("   ", "it is empty"),
            (
                "10.0.0.0/33",
                "not a network such as 10.0.0.0/8 or fd00::/8",
            ),
            (
                "sink.test/8",
                "not a network such as 10.0.0.0/8 or fd00::/8",
            ),
            (
                "10.0.0.0/8:80",
                "not a network such as 10.0.0.0/8 or fd00::/8",
            ),
            (
                "[::1]",
                "an IPv6 address with a port is written [address]:port",
            ),
            ("[::1]:0", "the port is not a number from 1 to 65535"),
            (
                "[zz]:80",
                "an IPv6 address with a port is written [address]:port",
            ),
            ("sink.test:0", "the port is not a number from 1 to 65535"),
            (
                "sink.test:65536",
                "the port is not a number from 1 to 65535",
            ),
            ("sink.test:", "the port is not a number from 1 to 65535"),
            ("sink.test:http", "the port is not a number from 1 to 65535"),
            ("sink.test:+80", "the port is not a number from 1 to 65535"),
            ("127.0.0.1:0", "the port is not a number from 1 to 65535"),
            (
                "*.example.com",
                "wildcards are not supported: list each host",
            ),
            (
                "https://sink.test",
                "not a network such as 10.0.0.0/8 or fd00::/8",
            ),
            ("sink..test", "not a host name, an address or a network"),
            ("sink test", "not a host name, an address or a network"),
            (
                "sink.test:80:80",
                "not a host name, an address or a network",
            ),
            ("10.0.0.300", "it looks like an IPv4 address but is not one"),
            ("10.0.0", "it looks like an IPv4 address but is not one"),
        ];
        for (text, reason) in cases {
            assert_eq!(
                AllowList::parse(&["localhost", text]),
                Err(DeliveryError::InvalidAllowEntry {
                    entry: text.to_string(),
                    reason
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn allows_what_is_listed_and_nothing_else() {
        let list = AllowList::parse(&[
            "sink.test",
            "localhost:8080",
            "127.0.0.2:9000",
            "10.20.0.0/16",
            "[::1]:7000",
        ])
        .unwrap();
        let cases = [
            // Names, whatever they resolve to; any port unless one is given.
            ("sink.test", 443, "127.0.0.1", true),
            ("SINK.test.", 80, "169.254.169.254", true),
            ("other.test", 443, "127.0.0.1", false),
            ("sub.sink.test", 443, "127.0.0.1", false),
            ("localhost", 8080, "127.0.0.1", true),
            ("localhost", 8081, "127.0.0.1", false),
            // Addresses: by the address connected, whatever the URL said.
            ("127.0.0.2", 9000, "127.0.0.2", true),
            ("rebind.test", 9000, "127.0.0.2", true),
            ("127.0.0.2", 9001, "127.0.0.2", false),
            ("127.0.0.3", 9000, "127.0.0.3", false),
            ("crm.internal", 443, "10.20.5.6", true),
            ("crm.internal", 443, "::ffff:10.20.5.6", true),
            ("crm.internal", 443, "10.21.0.1", false),
            ("[::1]", 7000, "::1", true),
            ("[::1]", 7001, "::1", false),
            ("127.0.0.1", 7000, "127.0.0.1", false),
        ];
        for (host, port, address, expected) in cases {
            assert_eq!(
                list.allows(host, port, ip(address)),
                expected,
                "{host} {port} {address}"
            );
        }
        assert!(!list.is_empty());
    }

    #[test]
    fn refusal_combines_the_guard_and_the_list() {
        let list = AllowList::parse(&["sink.test:8080"]).unwrap();
        let cases = [
            ("sink.test", 8080, "127.0.0.1", None),
            ("sink.test", 8081, "127.0.0.1", Some("loopback")),
            ("evil.test", 80, "169.254.169.254", Some("cloud_metadata")),
            ("evil.test", 80, "::ffff:127.0.0.1", Some("loopback")),
            ("example.com", 443, "93.184.216.34", None),
        ];
        for (host, port, address, expected) in cases {
            assert_eq!(
                list.refusal(host, port, ip(address)),
                expected,
                "{host} {address}"
            );
        }
        // No list: only public addresses pass.
        let empty = AllowList::default();
        assert!(empty.is_empty());
        assert_eq!(
            empty.refusal("localhost", 80, ip("127.0.0.1")),
            Some("loopback")
        );
        assert_eq!(empty.refusal("example.com", 443, ip("93.184.216.34")), None);
    }
}
