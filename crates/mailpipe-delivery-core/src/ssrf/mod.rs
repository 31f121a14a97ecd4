//! The SSRF guard: a rule author writes the target URL, so without a guard a `webhook`
//! action could make the worker call the cloud metadata service, a database on the private
//! network or an admin port on loopback, and report back what it answered.
//!
//! [`forbidden_reason`] judges one IP address; the worker applies it to the address it
//! actually connects to (after DNS, inside its resolver/connector), never to the name alone,
//! so a name re-resolving to another address between check and connect (DNS rebinding)
//! gains nothing. [`AllowList`] lets an operator permit chosen targets anyway (tests on
//! loopback, an internal CRM).
//!
//! Invariant: every IPv6 form that reaches an IPv4 address (mapped `::ffff:a.b.c.d`,
//! compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is judged as that IPv4 address.

mod allow_list;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use allow_list::AllowList;

/// The instance metadata service of AWS, GCP, Azure, OpenStack and others; named on its
/// own because it is the classic SSRF prize (credentials), not just any link-local address.
const CLOUD_METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// AWS's IPv6 metadata endpoint (inside the unique-local range).
const CLOUD_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why `ip` must not be called, or `None` when it is an ordinary public address. The reason
/// is a short snake_case label, for the outcome record and metrics: `cloud_metadata`,
/// `loopback`, `private`, `link_local`, `cgnat`, `unspecified`, `this_network`, `broadcast`,
/// `multicast`, `documentation`, `benchmarking`, `reserved`, `unique_local`, `site_local`,
/// `ipv4_compatible`.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => v6_reason(ip),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    let reason = if ip == CLOUD_METADATA_V4 {
        "cloud_metadata"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if a == 0 {
        // 0.0.0.0/8, "this network": Linux connects 0.x.y.z to the local host.
        "this_network"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link_local"
    } else if a == 100 && (64..=127).contains(&b) {
        // 100.64.0.0/10, shared address space (RFC 6598): the carrier's or the cloud's
        // internal network (Alibaba's metadata service lives here).
        "cgnat"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_documentation() {
        "documentation"
    } else if a == 198 && (b == 18 || b == 19) {
        // 198.18.0.0/15 (RFC 2544): benchmarking networks, often lab-internal.
        "benchmarking"
    } else if a >= 240 {
        // 240.0.0.0/4, reserved for future use (255.255.255.255 is caught above).
        "reserved"
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let reason = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d — a dual-stack socket connects to the IPv4 address itself.
        return v4_reason(v4);
    } else if segments[..6] == [0; 6] {
        // ::a.b.c.d, "IPv4-compatible", deprecated since RFC 4291: no real target uses one,
        // so it is refused even when the IPv4 address inside is public.
        return v4_reason(embedded_v4(segments)).or(Some("ipv4_compatible"));
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // 64:ff9b::/96, NAT64's well-known prefix: the gateway connects to the IPv4 inside.
        return v4_reason(embedded_v4(segments));
    } else if ip == CLOUD_METADATA_V6 {
        "cloud_metadata"
    } else if ip.is_unicast_link_local() {
        "link_local"
    } else if segments[0] & 0xffc0 == 0xfec0 {
        // fec0::/10, site-local: deprecated, but still routed inside some networks.
        "site_local"
    } else if ip.is_unique_local() {
        "unique_local"
    } else if ip.is_multicast() {
        "multicast"
    } else if segments[..2] == [0x2001, 0x0db8] || (segments[0] == 0x3fff && segments[1] < 0x1000) {
        // 2001:db8::/32 and 3fff::/20 (RFC 9637).
        "documentation"
    } else {
        return None;
    };
    Some(reason)
}

fn embedded_v4(segments: [u16; 8]) -> Ipv4Addr {
    let [high, low] = [segments[6], segments[7]];
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_and_allowed_addresses() {
        let cases = [
            // IPv4: the forbidden ranges, at their edges.
            ("169.254.169.254", Some("cloud_metadata")),
            ("169.254.169.253", Some("link_local")),
            ("169.254.0.0", Some("link_local")),
            ("169.254.255.255", Some("link_local")),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("0.0.0.0", Some("unspecified")),
            ("0.0.0.1", Some("this_network")),
            ("0.255.255.255", Some("this_network")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("10.0.0.0", Some("private")),
            ("10.255.255.255", Some("private")),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("172.16.0.0", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.0.1", Some("private")),
            ("192.168.255.255", Some("private")),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("100.64.0.0", Some("cgnat")),
            ("100.100.100.200", Some("cgnat")),
            ("100.127.255.255", Some("cgnat")),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("223.255.255.255", None),
            ("192.0.2.10", Some("documentation")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.255", Some("documentation")),
            ("203.0.114.0", None),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.20.0.0", None),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            // IPv4: public addresses.
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("151.101.1.69", None),
            // IPv6 in its own right.
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fe80::1", Some("link_local")),
            ("febf:ffff::1", Some("link_local")),
            ("fec0::1", Some("site_local")),
            ("fc00::1", Some("unique_local")),
            ("fd12:3456:789a::1", Some("unique_local")),
            ("fd00:ec2::254", Some("cloud_metadata")),
            ("fd00:ec2::253", Some("unique_local")),
            ("ff02::1", Some("multicast")),
            ("ff0e::101", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("3fff:fff::1", Some("documentation")),
            ("3fff:1000::1", None),
            ("3ff0::1", None),
            ("2001:4860:4860::8888", None),
            ("2606:4700:4700::1111", None),
            ("2001:db9::1", None),
            ("fbff:ffff::1", None),
            // IPv6 forms of IPv4 addresses: judged as the IPv4 address.
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("cloud_metadata")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:100.64.0.1", Some("cgnat")),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("loopback")),
            ("::169.254.169.254", Some("cloud_metadata")),
            ("::192.168.1.1", Some("private")),
            ("::0.0.0.2", Some("this_network")),
            ("::8.8.8.8", Some("ipv4_compatible")),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::169.254.169.254", Some("cloud_metadata")),
            ("64:ff9b::10.0.0.1", Some("private")),
            ("64:ff9b::8.8.8.8", None),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(forbidden_reason(ip), expected, "{text}");
        }
    }
}
