//! One attempt of a delivery over HTTP: a client per target, whose DNS resolver is the
//! SSRF guard, so the address checked is the address connected (no second lookup a
//! rebinding name could answer differently); no redirects, no proxy from the environment,
//! a connect and a total timeout, and at most `max_response_bytes` of the answer read.
//!
//! Invariant: no connection is opened to a loopback, private, link-local, multicast or
//! metadata address unless the target is in `[delivery] allow_targets`. A URL naming an
//! address literally is checked here too (no resolver runs for it).

use std::collections::HashMap;
use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailpipe_delivery_core::{forbidden_reason, parse_retry_after, AllowList, AttemptResult};
use mailpipe_delivery_core::{SigningSecret, TransportFailure};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::job::Request;

/// The SSRF guard's refusal, carried through the HTTP client as the resolver's error.
#[derive(Debug, thiserror::Error)]
#[error("refused by the SSRF guard: {host} resolves to {ip} ({reason})")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub reason: &'static str,
}

/// Resolves a target's names, keeping only addresses the guard allows.
struct GuardedResolver {
    allow: Arc<AllowList>,
    port: u16,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let port = self.port;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            let mut kept = Vec::new();
            let mut refusal = None;
            for addr in found {
                match refusal_of(&allow, &host, port, addr.ip()) {
                    None => kept.push(addr),
                    Some(reason) => refusal = Some((addr.ip(), reason)),
                }
            }
            match (kept.is_empty(), refusal) {
                (true, Some((ip, reason))) => Err(Box::new(Refused { host, ip, reason }) as _),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// Why `ip` may not be connected for `host:port`, if it may not.
fn refusal_of(allow: &AllowList, host: &str, port: u16, ip: IpAddr) -> Option<&'static str> {
    if allow.allows(host, port, ip) {
        return None;
    }
    forbidden_reason(ip)
}

/// The result of one attempt, with what the record and the operator need.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub result: AttemptResult,
    pub status: Option<u16>,
    /// The transport error, or the start of the answer's body for a non-2xx answer.
    pub error: String,
    pub latency: Duration,
}

/// The HTTP side of the worker.
pub struct Sender {
    allow: Arc<AllowList>,
    secrets: Vec<SigningSecret>,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_bytes: usize,
    retry_after_max: Duration,
    clients: Mutex<HashMap<String, reqwest::Client>>,
}

impl Sender {
    pub fn new(settings: &mailpipe_settings::DeliverySettings) -> anyhow::Result<Sender> {
        let allow = AllowList::parse(&settings.allow_targets)
            .map_err(|e| anyhow::anyhow!("[delivery] allow_targets: {e}"))?;
        let secrets = settings
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningSecret::parse(s).map_err(|e| anyhow::anyhow!("[delivery] secrets[{i}]: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Sender {
            allow: Arc::new(allow),
            secrets,
            connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
            timeout: Duration::from_millis(settings.timeout_ms),
            max_response_bytes: settings.max_response_bytes,
            retry_after_max: Duration::from_secs(settings.retry_after_max_seconds),
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, target: &str, port: u16) -> Result<reqwest::Client, reqwest::Error> {
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(c) = clients.get(target) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("mailpipe-deliver/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver {
                allow: self.allow.clone(),
                port,
            })
            .build()?;
        clients.insert(target.to_string(), client.clone());
        Ok(client)
    }

    /// Makes one attempt: the request signed under `webhook_id` at `now_secs`.
    pub async fn attempt(&self, request: &Request, webhook_id: &str, now_secs: i64) -> Attempted {
        let started = Instant::now();
        let done = |result, status, error: String| Attempted {
            result,
            status,
            error,
            latency: started.elapsed(),
        };
        let transport =
            |failure, error: String| done(AttemptResult::Transport(failure), None, error);
        if self.secrets.is_empty() {
            return transport(
                TransportFailure::InvalidRequest,
                "no [delivery] secrets: deliveries are never sent unsigned".into(),
            );
        }
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return transport(
                    TransportFailure::InvalidRequest,
                    "the url is not an http(s) URL".into(),
                )
            }
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return transport(
                TransportFailure::InvalidRequest,
                "the url has no host".into(),
            );
        };
        // An address written in the URL is never resolved: check it here.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if let Some(reason) = refusal_of(&self.allow, literal, port, ip) {
                let refused = Refused {
                    host: host.to_string(),
                    ip,
                    reason,
                };
                return transport(TransportFailure::SsrfRefused, refused.to_string());
            }
        }
        let target = crate::job::target_of(&url).unwrap_or_default();
        let client = match self.client(&target, port) {
            Ok(c) => c,
            Err(e) => return transport(TransportFailure::Connection, e.to_string()),
        };
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return transport(
                    TransportFailure::InvalidRequest,
                    format!("{:?} is not an HTTP method", request.method),
                )
            }
        };
        let signed = match mailpipe_delivery_core::headers(
            &self.secrets,
            webhook_id,
            now_secs,
            request.body.as_bytes(),
        ) {
            Ok(h) => h,
            Err(e) => return transport(TransportFailure::InvalidRequest, e.to_string()),
        };
        let mut builder = client.request(method, url);
        let mut has_content_type = false;
        for (name, value) in &request.headers {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !has_content_type {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in signed.pairs() {
            builder = builder.header(name, value);
        }
        let response = match builder.body(request.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let (failure, error) = transport_failure(&e);
                return transport(failure, error);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                parse_retry_after(v, now_secs * 1000, Duration::ZERO, self.retry_after_max)
            });
        let body = self.read_capped(response).await;
        let error = if (200..300).contains(&status) {
            String::new()
        } else {
            format!("HTTP {status}: {}", clip(&body, 200))
        };
        done(
            AttemptResult::Response {
                status,
                retry_after,
            },
            Some(status),
            error,
        )
    }

    /// At most `max_response_bytes` of the body, as text (lossy); the rest is not read.
    async fn read_capped(&self, mut response: reqwest::Response) -> String {
        let mut body = Vec::new();
        while body.len() < self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(self.max_response_bytes);
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// The kind of a failure without an answer, and its text — without the URL, which may hold
/// credentials or tokens (the records name the target instead).
fn transport_failure(e: &reqwest::Error) -> (TransportFailure, String) {
    if e.is_builder() {
        // A header name or value the rule rendered is not valid HTTP: never sendable.
        return (TransportFailure::InvalidRequest, full_chain(e));
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return (TransportFailure::SsrfRefused, refused.to_string());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return (TransportFailure::ConnectRefused, full_chain(e));
            }
        }
        source = s.source();
    }
    let text = format!("{e}");
    let failure = if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() && text.contains("dns") {
        TransportFailure::Dns
    } else {
        TransportFailure::Connection
    };
    (failure, full_chain(e))
}

fn full_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match e.url() {
        Some(url) => text.replace(url.as_str(), "<url>"),
        None => text,
    }
}

fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_refuses_internal_addresses_unless_the_target_is_allowed() {
        let none = AllowList::parse::<&str>(&[]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let refused =
            |allow: &AllowList, host: &str, addr: &str| refusal_of(allow, host, 443, ip(addr));
        assert!(refused(&none, "crm.example.com", "93.184.216.34").is_none());
        assert!(refused(&none, "localhost", "127.0.0.1").is_some());
        assert!(refused(&none, "rebind.example", "10.1.2.3").is_some());
        assert!(refused(&none, "meta.example", "169.254.169.254").is_some());
        assert!(refused(&none, "v6.example", "::ffff:127.0.0.1").is_some());
        let allowed = AllowList::parse(&["127.0.0.1"]).unwrap();
        assert!(refused(&allowed, "localhost", "127.0.0.1").is_none());
        assert!(refused(&allowed, "meta.example", "169.254.169.254").is_some());
    }

    #[test]
    fn a_refusal_names_the_address_and_why() {
        let r = Refused {
            host: "meta.example".into(),
            ip: "169.254.169.254".parse().unwrap(),
            reason: "cloud_metadata",
        };
        let text = r.to_string();
        assert!(
            text.contains("SSRF")
                && text.contains("169.254.169.254")
                && text.contains("cloud_metadata"),
            "{text}"
        );
    }
}
