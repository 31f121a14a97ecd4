//! Engagement history of one recipient or one recipient domain, as read from `email_events`
//! (the SQL is `mailpipe_clickhouse::engagement`): what the console API serves and what
//! rules test with their `history` condition.
//!
//! Counts are of unique events (ClickHouse deduplicates by `event_id`), over the last 7, 30
//! and 90 days before `as_of_ms`. A human open is an `opened` event not flagged
//! `machine_open` (proxy prefetches such as Apple Mail Privacy Protection are machine opens).

use serde::Serialize;

/// Whose history: one address, or everybody at one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Recipient,
    Domain,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Recipient => "recipient",
            Scope::Domain => "domain",
        }
    }
}

/// The look-back windows, in days, every count is given for.
pub const WINDOW_DAYS: [u32; 3] = [7, 30, 90];

/// Event counts over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub delivered: u64,
    /// Every `opened` event, human or machine.
    pub opened: u64,
    /// `opened` events not flagged as machine opens.
    pub human_opened: u64,
    /// Distinct messages with at least one human open (the numerator of the open rate).
    pub human_opened_messages: u64,
    pub clicked: u64,
    pub bounced: u64,
    pub hard_bounced: u64,
    pub soft_bounced: u64,
    pub complained: u64,
    pub unsubscribed: u64,
}

/// One recipient's (or domain's) engagement history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngagementHistory {
    pub scope: Scope,
    /// The address or the domain, lower-cased.
    pub key: String,
    /// The time the windows end at, UTC milliseconds.
    pub as_of_ms: i64,
    /// Latest times (UTC ms) of each kind within the history window (`[insight]
    /// history_days`); `None` when none.
    pub last_delivered_ms: Option<i64>,
    pub last_human_open_ms: Option<i64>,
    pub last_click_ms: Option<i64>,
    pub last_bounce_ms: Option<i64>,
    /// `hard` / `soft` / `undetermined` of the latest bounce, if any.
    pub last_bounce_class: Option<String>,
    /// Hard bounces within the history window.
    pub hard_bounces_total: u64,
    /// Counts over the last 7, 30 and 90 days (the order of [`WINDOW_DAYS`]).
    pub last_7d: Counts,
    pub last_30d: Counts,
    pub last_90d: Counts,
}

/// The names a rule's `history` condition may test, with what they mean; kept in one place
/// so `mailpipe rules check` lists them and the README's table matches.
pub const METRICS: &[(&str, &str)] = &[
    ("delivered_7d", "delivered events in the last 7 days"),
    ("delivered_30d", "delivered events in the last 30 days"),
    ("delivered_90d", "delivered events in the last 90 days"),
    ("human_opens_7d", "human opens in the last 7 days"),
    ("human_opens_30d", "human opens in the last 30 days"),
    ("human_opens_90d", "human opens in the last 90 days"),
    (
        "opens_30d",
        "all opens (human and machine) in the last 30 days",
    ),
    ("clicks_7d", "clicks in the last 7 days"),
    ("clicks_30d", "clicks in the last 30 days"),
    ("clicks_90d", "clicks in the last 90 days"),
    ("bounces_30d", "bounces in the last 30 days"),
    ("soft_bounces_30d", "soft bounces in the last 30 days"),
    (
        "hard_bounces_total",
        "hard bounces within the history window ([insight] history_days)",
    ),
    ("complaints_90d", "complaints in the last 90 days"),
    (
        "human_open_rate_90d",
        "messages with a human open / delivered, last 90 days (absent when nothing was delivered)",
    ),
    (
        "days_since_last_human_open",
        "whole days since the latest human open (absent when never opened)",
    ),
    (
        "days_since_last_click",
        "whole days since the latest click (absent when never clicked)",
    ),
    (
        "days_since_last_delivered",
        "whole days since the latest delivery (absent when never delivered)",
    ),
];

const DAY_MS: i64 = 86_400_000;

impl EngagementHistory {
    /// An empty history (nothing ever happened) of `key` as of `as_of_ms`.
    pub fn empty(scope: Scope, key: &str, as_of_ms: i64) -> Self {
        EngagementHistory {
            scope,
            key: key.to_string(),
            as_of_ms,
            last_delivered_ms: None,
            last_human_open_ms: None,
            last_click_ms: None,
            last_bounce_ms: None,
            last_bounce_class: None,
            hard_bounces_total: 0,
            last_7d: Counts::default(),
            last_30d: Counts::default(),
            last_90d: Counts::default(),
        }
    }

    /// Messages with a human open over delivered messages in the last 90 days, capped at 1
    /// (an open can arrive for a message delivered before the window); `None` when nothing
    /// was delivered.
    pub fn human_open_rate_90d(&self) -> Option<f64> {
        let c = &self.last_90d;
        if c.delivered == 0 {
            return None;
        }
        Some((c.human_opened_messages as f64 / c.delivered as f64).min(1.0))
    }

    fn days_since(&self, at: Option<i64>) -> Option<f64> {
        at.map(|t| ((self.as_of_ms - t).max(0) / DAY_MS) as f64)
    }

    /// The value of one of [`METRICS`]; `None` for an absent value (a rate with nothing
    /// delivered, a "days since" of something that never happened) or an unknown name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let v = |n: u64| Some(n as f64);
        match name {
            "delivered_7d" => v(self.last_7d.delivered),
            "delivered_30d" => v(self.last_30d.delivered),
            "delivered_90d" => v(self.last_90d.delivered),
            "human_opens_7d" => v(self.last_7d.human_opened),
            "human_opens_30d" => v(self.last_30d.human_opened),
            "human_opens_90d" => v(self.last_90d.human_opened),
            "opens_30d" => v(self.last_30d.opened),
            "clicks_7d" => v(self.last_7d.clicked),
            "clicks_30d" => v(self.last_30d.clicked),
            "clicks_90d" => v(self.last_90d.clicked),
            "bounces_30d" => v(self.last_30d.bounced),
            "soft_bounces_30d" => v(self.last_30d.soft_bounced),
            "hard_bounces_total" => v(self.hard_bounces_total),
            "complaints_90d" => v(self.last_90d.complained),
            "human_open_rate_90d" => self.human_open_rate_90d(),
            "days_since_last_human_open" => self.days_since(self.last_human_open_ms),
            "days_since_last_click" => self.days_since(self.last_click_ms),
            "days_since_last_delivered" => self.days_since(self.last_delivered_ms),
            _ => None,
        }
    }

    /// Whether `name` is one of [`METRICS`].
    pub fn is_metric(name: &str) -> bool {
        METRICS.iter().any(|(n, _)| *n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_metric_has_a_value_on_a_full_history() {
        let mut h = EngagementHistory::empty(Scope::Recipient, "a@x.test", 10 * DAY_MS);
        h.last_human_open_ms = Some(DAY_MS);
        h.last_click_ms = Some(DAY_MS);
        h.last_delivered_ms = Some(DAY_MS);
        h.last_90d.delivered = 4;
        for (name, _) in METRICS {
            assert!(h.metric(name).is_some(), "{name} has no value");
            assert!(EngagementHistory::is_metric(name));
        }
        assert_eq!(h.metric("no_such_metric"), None);
        assert!(!EngagementHistory::is_metric("no_such_metric"));
    }

    #[test]
    fn rates_and_days_since_are_absent_without_history() {
        let h = EngagementHistory::empty(Scope::Domain, "x.test", 10 * DAY_MS);
        assert_eq!(h.metric("human_open_rate_90d"), None);
        assert_eq!(h.metric("days_since_last_human_open"), None);
        assert_eq!(h.metric("delivered_90d"), Some(0.0));
    }

    #[test]
    fn open_rate_counts_messages_and_is_capped() {
        let mut h = EngagementHistory::empty(Scope::Recipient, "a@x.test", 0);
        h.last_90d.delivered = 4;
        h.last_90d.human_opened = 9;
        h.last_90d.human_opened_messages = 3;
        assert_eq!(h.human_open_rate_90d(), Some(0.75));
        h.last_90d.human_opened_messages = 6;
        assert_eq!(h.human_open_rate_90d(), Some(1.0));
    }

    #[test]
    fn days_since_are_whole_days() {
        let mut h = EngagementHistory::empty(Scope::Recipient, "a@x.test", 10 * DAY_MS + 5);
        h.last_click_ms = Some(7 * DAY_MS + 1);
        assert_eq!(h.metric("days_since_last_click"), Some(3.0));
    }
}
