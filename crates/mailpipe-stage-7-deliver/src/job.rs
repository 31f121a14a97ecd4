//! A delivery: the `webhook` action it comes from (a `mail.actions` record), where and what
//! to send, and what its attempts so far gave. Kept in Redis as JSON between attempts
//! ([`crate::store`]).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A `mail.actions` record (schemas/rule_action.avsc), every field, read with the
/// registry's resolution (enums arrive as their symbol).
pub use mailpipe_avro::records::RuleActionView as ActionView;

/// Whether a record hands a webhook to delivery: an executed `webhook` action whose
/// outcome is `pending`. Records of delivery's own outcomes (`delivered`, `failed`) and
/// every other action are not.
pub fn is_pending_webhook(action: &ActionView) -> bool {
    action.action == "webhook" && action.decision == "executed" && action.outcome == "pending"
}

/// Where the record was read, and its bytes: a delivery that fails for good is
/// dead-lettered with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Base64 of the record's value.
    pub payload: String,
}

impl Origin {
    pub fn new(topic: &str, partition: i32, offset: i64, payload: &[u8]) -> Origin {
        Origin {
            topic: topic.to_string(),
            partition,
            offset,
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
        }
    }

    pub fn payload_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .unwrap_or_default()
    }
}

/// The last attempt, for the next decision, the operator's list and the final record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastAttempt {
    pub at_ms: i64,
    pub status: Option<u16>,
    /// The transport failure or the start of the response body; never a header value.
    pub error: String,
    pub latency_ms: u64,
}

/// One delivery and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub action: ActionView,
    pub origin: Origin,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_ms: i64,
    pub last: Option<LastAttempt>,
    /// The token of the claim this process holds it under (never stored with the job).
    #[serde(skip)]
    pub lease: String,
}

/// What to send, from the action's rendered parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Job {
    pub fn id(&self) -> &str {
        &self.action.action_id
    }

    /// The request the action describes (`url`, `method`, `header.<name>`, `body`).
    pub fn request(&self) -> Result<Request, String> {
        let p = &self.action.parameters;
        let url = p
            .get("url")
            .filter(|u| !u.is_empty())
            .ok_or("the action has no url")?
            .clone();
        let method = p
            .get("method")
            .map_or("POST", String::as_str)
            .to_ascii_uppercase();
        let headers = p
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("header.")?.to_string(), v.clone())))
            .collect();
        Ok(Request {
            url,
            method,
            headers,
            body: p.get("body").cloned().unwrap_or_default(),
        })
    }

    /// The target: scheme, host and port of the URL, which per-target limits, the circuit
    /// breaker and disabling apply to. `None` for a URL that does not parse.
    pub fn target(&self) -> Option<String> {
        let url = reqwest::Url::parse(self.action.parameters.get("url")?).ok()?;
        target_of(&url)
    }
}

/// `scheme://host:port` of a URL (the port made explicit).
pub fn target_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{}://{}:{}", url.scheme(), host, port))
}

/// The `webhook-id` of a delivery: its action id (rule id, event id, action index), the
/// same on every attempt. The spec reserves `.` (it separates the signed fields), so a `.`
/// in a rule or event id is written `%2E`, and `%` itself `%25`: still one id per action.
pub fn webhook_id(action_id: &str) -> String {
    action_id.replace('%', "%25").replace('.', "%2E")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(params: &[(&str, &str)]) -> Job {
        Job {
            action: ActionView {
                action_id: "notify/ev-1/0".into(),
                rule_id: "notify".into(),
                rule_version: "v".into(),
                action_index: 0,
                action: "webhook".into(),
                parameters: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                decision: "executed".into(),
                outcome: "pending".into(),
                event_id: "ev-1".into(),
                event_type: "complained".into(),
                provider: "sendgrid".into(),
                source: "s".into(),
                recipient: None,
                campaign_id: None,
                occurred_at: 0,
                decided_at: 0,
                due_at: 0,
                detail: String::new(),
            },
            origin: Origin::new("mail.actions", 0, 7, b"x"),
            attempts: 0,
            created_ms: 0,
            last: None,
            lease: String::new(),
        }
    }

    #[test]
    fn the_request_comes_from_the_rendered_parameters() {
        let j = job(&[
            ("url", "https://hooks.example.com/a?b=1"),
            ("method", "put"),
            ("header.x-team", "mail"),
            ("body", "{\"a\":1}"),
        ]);
        let r = j.request().unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.headers, [("x-team".to_string(), "mail".to_string())]);
        assert_eq!(r.body, "{\"a\":1}");
        assert_eq!(j.target().unwrap(), "https://hooks.example.com:443");
        assert!(job(&[]).request().is_err(), "no url, no request");
        assert_eq!(
            job(&[("url", "http://x")]).request().unwrap().method,
            "POST"
        );
    }

    #[test]
    fn webhook_ids_have_no_dots_and_stay_distinct() {
        assert_eq!(webhook_id("r/ev-1/0"), "r/ev-1/0");
        assert_eq!(webhook_id("r.1/ev/0"), "r%2E1/ev/0");
        assert_ne!(webhook_id("r%2E1/ev/0"), webhook_id("r.1/ev/0"));
    }

    #[test]
    fn origin_keeps_the_payload_bytes() {
        let o = Origin::new("t", 1, 2, &[0, 255, 7]);
        assert_eq!(o.payload_bytes(), [0, 255, 7]);
    }

    #[test]
    fn only_executed_pending_webhooks_are_deliveries() {
        let mut j = job(&[]);
        assert!(is_pending_webhook(&j.action));
        j.action.outcome = "delivered".into();
        assert!(!is_pending_webhook(&j.action));
    }
}
