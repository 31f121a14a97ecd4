//! Cheap checks made before a body is read: which content types a provider can send, who
//! the client is (`X-Forwarded-For` only from trusted proxies), and per-source allowlists.
//!
//! Content types each provider sends (lenient where providers or their API versions vary;
//! parameters such as `charset` are ignored; a request without `Content-Type` is allowed,
//! as some senders omit it):
//!
//! | provider | accepted |
//! |---|---|
//! | sendgrid, postmark, sparkpost, resend, brevo, mailjet, mailersend, postal | JSON |
//! | mailgun | JSON; form-urlencoded and multipart/form-data (legacy webhooks) |
//! | ses (via SNS) | `text/plain` (what SNS sends), JSON |
//! | mandrill | form-urlencoded (`mandrill_events=...`) |
//! | generic | anything (the sender is ours to configure) |
//!
//! JSON means `application/json` or any `application/*+json`.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, HeaderValue};
use ipnet::IpNet;
use mailpipe_model::Provider;

/// Whether `provider` can send a body of this `Content-Type` (see the table above).
pub fn content_type_allowed(provider: Provider, content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    let json = is_json(essence);
    let form = essence.eq_ignore_ascii_case("application/x-www-form-urlencoded");
    match provider {
        Provider::Generic => true,
        Provider::Mailgun => json || form || essence.eq_ignore_ascii_case("multipart/form-data"),
        Provider::Ses => json || essence.eq_ignore_ascii_case("text/plain"),
        Provider::Mandrill => form,
        Provider::Sendgrid
        | Provider::Postmark
        | Provider::Sparkpost
        | Provider::Resend
        | Provider::Brevo
        | Provider::Mailjet
        | Provider::Mailersend
        | Provider::Postal => json,
    }
}

fn is_json(essence: &str) -> bool {
    let lower = essence.to_ascii_lowercase();
    lower == "application/json" || (lower.starts_with("application/") && lower.ends_with("+json"))
}

/// The client's address. The peer itself, unless the peer is a trusted proxy: then the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (entries left of it
/// could have been written by anyone). An unparsable entry ends the walk at the last
/// trusted hop, so a forged value can never be chosen over a proxy's own record.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.ip().to_canonical();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(&ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    // Later headers were appended by later hops, so walk headers and entries from the end.
    let entries = headers
        .get_all(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','));
    for entry in entries {
        match parse_forwarded(entry) {
            Some(ip) => {
                client = ip;
                if !trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn parse_forwarded(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })?;
    Some(ip.to_canonical())
}

/// A source's allowlist: empty allows everyone; otherwise the client must be known and in it.
pub fn ip_allowed(allowed_cidrs: &[IpNet], client: Option<IpAddr>) -> bool {
    allowed_cidrs.is_empty()
        || client.is_some_and(|ip| allowed_cidrs.iter().any(|n| n.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn content_types_follow_the_table() {
        let json = ct("application/json; charset=utf-8");
        assert!(content_type_allowed(Provider::Sendgrid, Some(&json)));
        assert!(content_type_allowed(
            Provider::Resend,
            Some(&ct("Application/JSON"))
        ));
        assert!(content_type_allowed(
            Provider::Postal,
            Some(&ct("application/vnd.x+json"))
        ));
        assert!(!content_type_allowed(
            Provider::Sendgrid,
            Some(&ct("text/xml"))
        ));
        let form = ct("application/x-www-form-urlencoded");
        assert!(content_type_allowed(Provider::Mandrill, Some(&form)));
        assert!(!content_type_allowed(Provider::Mandrill, Some(&json)));
        assert!(content_type_allowed(
            Provider::Mailgun,
            Some(&ct("multipart/form-data; boundary=x"))
        ));
        assert!(content_type_allowed(
            Provider::Ses,
            Some(&ct("text/plain; charset=UTF-8"))
        ));
        assert!(!content_type_allowed(Provider::Ses, Some(&form)));
        assert!(content_type_allowed(
            Provider::Generic,
            Some(&ct("image/png"))
        ));
        assert!(
            content_type_allowed(Provider::Postmark, None),
            "missing is allowed"
        );
        let not_utf8 = HeaderValue::from_bytes(&[0xff]).unwrap();
        assert!(!content_type_allowed(Provider::Postmark, Some(&not_utf8)));
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", ct(v));
        }
        headers
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let ip = client_ip(Some(peer), &xff(&["1.2.3.4"]), &[]);
        assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_picks_the_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let headers = xff(&["6.6.6.6, 198.51.100.4", "10.0.0.7"]);
        let ip = client_ip(Some(peer), &headers, &trusted);
        assert_eq!(ip, Some("198.51.100.4".parse().unwrap()));
        // Ports and brackets are understood.
        let headers = xff(&["[2001:db8::1]:8443"]);
        let ip = client_ip(Some(peer), &headers, &trusted);
        assert_eq!(ip, Some("2001:db8::1".parse().unwrap()));
        // Garbage stops at the last trusted hop instead of trusting what lies left of it.
        let headers = xff(&["1.1.1.1, bogus, 10.0.0.9"]);
        let ip = client_ip(Some(peer), &headers, &trusted);
        assert_eq!(ip, Some("10.0.0.9".parse().unwrap()));
        // No header: the proxy itself.
        let ip = client_ip(Some(peer), &HeaderMap::new(), &trusted);
        assert_eq!(ip, Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_peers_are_seen_as_ipv4() {
        let peer: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        let allowed: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let ip = client_ip(Some(peer), &HeaderMap::new(), &[]);
        assert!(ip_allowed(&allowed, ip));
    }

    #[test]
    fn allowlists_fail_closed_without_an_address() {
        let allowed: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        assert!(ip_allowed(&[], None));
        assert!(!ip_allowed(&allowed, None));
        assert!(!ip_allowed(&allowed, Some("192.0.3.1".parse().unwrap())));
    }
}
