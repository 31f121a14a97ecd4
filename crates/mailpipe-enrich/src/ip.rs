//! IP address text as providers send it, parsed with `std::net` only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses a provider's IP field: a bare IPv4 or IPv6 address, or one with a port
/// (`203.0.113.7:443`, `[2001:db8::1]:443`), surrounding whitespace ignored. An IPv4-mapped
/// IPv6 address (`::ffff:203.0.113.7`) becomes the IPv4 address it carries, so the same
/// reader gives the same answer whichever way its proxy logged it. Anything else
/// (hostnames, lists, zone ids) is `None`.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => text.parse::<SocketAddr>().ok()?.ip(),
    };
    Some(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    })
}

/// Whether an address can be located at all: not private, loopback, link-local,
/// carrier-grade NAT, multicast, broadcast or unspecified. Documentation ranges
/// (192.0.2.0/24, 2001:db8::/32, ...) count as public so tests and examples can use them.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || is_shared_v4(v4))
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// 100.64.0.0/10, the carrier-grade NAT range of RFC 6598.
fn is_shared_v4(v4: Ipv4Addr) -> bool {
    let [a, b, _, _] = v4.octets();
    a == 100 && (b & 0xC0) == 64
}

/// Whether an address is in 17.0.0.0/8, the block Apple owns and from which Mail Privacy
/// Protection prefetches images.
pub(crate) fn is_apple_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_bare_addresses_ports_and_whitespace() {
        assert_eq!(parse_ip("203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(parse_ip("  203.0.113.7\n"), Some(ip("203.0.113.7")));
        assert_eq!(parse_ip("203.0.113.7:443"), Some(ip("203.0.113.7")));
        assert_eq!(parse_ip("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_ip("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
    }

    #[test]
    fn unwraps_ipv4_mapped_ipv6() {
        assert_eq!(parse_ip("::ffff:17.58.1.2"), Some(ip("17.58.1.2")));
    }

    #[test]
    fn refuses_what_is_not_one_address() {
        for text in [
            "",
            " ",
            "example.com",
            "1.2.3",
            "1.2.3.4, 5.6.7.8",
            "fe80::1%eth0",
            "x",
        ] {
            assert_eq!(parse_ip(text), None, "{text:?}");
        }
    }

    #[test]
    fn private_and_special_ranges_are_not_public() {
        for text in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(text)), "{text}");
        }
        for text in [
            "8.8.8.8",
            "100.128.0.1",
            "192.0.2.1",
            "2001:db8::1",
            "2a00:1450::1",
        ] {
            assert!(is_public(ip(text)), "{text}");
        }
    }

    #[test]
    fn apple_block_is_17_slash_8() {
        assert!(is_apple_v4(ip("17.0.0.0")));
        assert!(is_apple_v4(ip("17.255.255.255")));
        assert!(!is_apple_v4(ip("18.0.0.1")));
        assert!(!is_apple_v4(ip("16.255.255.255")));
        assert!(!is_apple_v4(ip("2001:db8::17")));
    }
}
