//! The console's alerts, pure: from what was observed (the [`Observations`] of one round)
//! and the settings, which conditions hold ([`conditions`]); and the book of alert states
//! ([`AlertBook`]): firing since when, resolved when, with the changes of each round.
//!
//! The alerts (thresholds in `[console.alerts]`):
//! - `processing_latency` (pipeline): p99 of received → queryable above the bound.
//! - `volume_low` (per source): the last hour under a fraction of the median of the same
//!   hour on the previous 7 days (with enough days of history).
//! - `dead_letters_growing` (per stage), `rejections_growing` (per source): at least N in the
//!   window.
//! - `consumer_lag_growing` (per group): lag at least `lag_min` through `lag_for_seconds`,
//!   and not smaller at the end than at the start.
//! - `bounce_rate_high`, `complaint_rate_high` (per provider and per campaign, last hour).

use std::collections::{BTreeMap, VecDeque};

use mailpipe_settings::AlertSettings;
use serde::Serialize;

/// What one evaluation round saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// p99 of received → queryable in the window, when events were inserted.
    pub latency_p99_seconds: Option<f64>,
    /// Per source: events in the last hour, and per day before (1..=7) in the same hour.
    pub volume: BTreeMap<String, (u64, Vec<u64>)>,
    pub dead_letters_by_stage: BTreeMap<String, u64>,
    pub rejections_by_source: BTreeMap<String, u64>,
    /// Per subject (`provider:<p>`, `campaign:<c>`), the last hour's counts.
    pub rates: BTreeMap<String, RateCounts>,
}

/// Event counts behind the bounce and complaint rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateCounts {
    pub delivered: u64,
    pub bounced: u64,
    pub complained: u64,
}

/// A group's total lag at one moment (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    pub at: i64,
    pub lag: i64,
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub name: &'static str,
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
}

/// Every condition that holds, given this round's observations and each group's recent
/// lag samples (oldest first).
pub fn conditions(
    obs: &Observations,
    lag: &BTreeMap<String, VecDeque<LagSample>>,
    s: &AlertSettings,
    now: i64,
) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(p99) = obs.latency_p99_seconds {
        if p99 > s.latency_p99_seconds {
            out.push(Condition {
                name: "processing_latency",
                subject: "pipeline".into(),
                value: p99,
                threshold: s.latency_p99_seconds,
                summary: format!(
                    "p99 received → queryable is {p99:.1} s over the last {} s",
                    s.window_seconds
                ),
            });
        }
    }
    for (source, (now_count, days)) in &obs.volume {
        let history: Vec<u64> = days.iter().copied().filter(|d| *d > 0).collect();
        if history.len() < s.volume_min_days as usize {
            continue;
        }
        let usual = median(&history);
        let bound = usual * s.volume_fraction;
        if (*now_count as f64) < bound {
            out.push(Condition {
                name: "volume_low",
                subject: source.clone(),
                value: *now_count as f64,
                threshold: bound,
                summary: format!(
                    "{now_count} events in the last hour from {source}; usually {usual:.0} in this hour"
                ),
            });
        }
    }
    let at_least = |name: &'static str, counts: &BTreeMap<String, u64>, min: u64, what: &str| {
        counts
            .iter()
            .filter(|(_, n)| min > 0 && **n >= min)
            .map(|(subject, n)| Condition {
                name,
                subject: subject.clone(),
                value: *n as f64,
                threshold: min as f64,
                summary: format!("{n} {what} {subject} in the last {} s", s.window_seconds),
            })
            .collect::<Vec<_>>()
    };
    out.extend(at_least(
        "dead_letters_growing",
        &obs.dead_letters_by_stage,
        s.dead_letters_per_window,
        "dead letters from",
    ));
    out.extend(at_least(
        "rejections_growing",
        &obs.rejections_by_source,
        s.rejections_per_window,
        "rejected requests of",
    ));
    for (group, samples) in lag {
        if let Some(c) = lag_growing(group, samples, s, now) {
            out.push(c);
        }
    }
    for (subject, c) in &obs.rates {
        let bounce_base = c.delivered + c.bounced;
        if bounce_base >= s.rate_min_events && bounce_base > 0 {
            let rate = c.bounced as f64 / bounce_base as f64;
            if rate > s.bounce_rate_max {
                out.push(rate_condition(
                    "bounce_rate_high",
                    subject,
                    rate,
                    s.bounce_rate_max,
                ));
            }
        }
        if c.delivered >= s.rate_min_events && c.delivered > 0 {
            let rate = c.complained as f64 / c.delivered as f64;
            if rate > s.complaint_rate_max {
                out.push(rate_condition(
                    "complaint_rate_high",
                    subject,
                    rate,
                    s.complaint_rate_max,
                ));
            }
        }
    }
    out
}

fn rate_condition(name: &'static str, subject: &str, rate: f64, max: f64) -> Condition {
    let what = if name == "bounce_rate_high" {
        "bounce"
    } else {
        "complaint"
    };
    Condition {
        name,
        subject: subject.to_string(),
        value: rate,
        threshold: max,
        summary: format!(
            "{what} rate of {subject} is {:.2} % over the last hour (bound {:.2} %)",
            rate * 100.0,
            max * 100.0
        ),
    }
}

/// The lag condition of one group: samples must cover `lag_for_seconds` back from `now`,
/// each at least `lag_min`, the last not below the first of the span.
fn lag_growing(
    group: &str,
    samples: &VecDeque<LagSample>,
    s: &AlertSettings,
    now: i64,
) -> Option<Condition> {
    let span_start = now - i64::try_from(s.lag_for_seconds).unwrap_or(i64::MAX);
    // The newest sample at or before the span's start anchors it.
    let anchor = samples.iter().rposition(|x| x.at <= span_start)?;
    let span: Vec<&LagSample> = samples.iter().skip(anchor).collect();
    let min = i64::try_from(s.lag_min).unwrap_or(i64::MAX);
    let (first, last) = (span.first()?, span.last()?);
    if span.iter().all(|x| x.lag >= min) && last.lag >= first.lag {
        return Some(Condition {
            name: "consumer_lag_growing",
            subject: group.to_string(),
            value: last.lag as f64,
            threshold: min as f64,
            summary: format!(
                "consumer lag of {group} is {} (was {} {} s ago) and not shrinking",
                last.lag,
                first.lag,
                now - first.at
            ),
        });
    }
    None
}

fn median(values: &[u64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Resolved,
}

/// An alert as the API shows it; `since` is when it started firing or when it resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub name: &'static str,
    pub subject: String,
    pub state: State,
    pub since: i64,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
}

/// How long a resolved alert stays listed.
pub const RESOLVED_KEPT_SECONDS: i64 = 86_400;

/// The alerts' states across rounds.
#[derive(Debug, Default)]
pub struct AlertBook {
    firing: BTreeMap<(&'static str, String), Alert>,
    resolved: VecDeque<Alert>,
}

impl AlertBook {
    /// Takes this round's conditions at `now`; answers the alerts that changed state.
    pub fn update(&mut self, holding: Vec<Condition>, now: i64) -> Vec<Alert> {
        let mut changed = Vec::new();
        let mut still = BTreeMap::new();
        for c in holding {
            let key = (c.name, c.subject.clone());
            let alert = match self.firing.remove(&key) {
                Some(mut a) => {
                    a.value = c.value;
                    a.threshold = c.threshold;
                    a.summary = c.summary;
                    a
                }
                None => {
                    let a = Alert {
                        name: c.name,
                        subject: c.subject,
                        state: State::Firing,
                        since: now,
                        value: c.value,
                        threshold: c.threshold,
                        summary: c.summary,
                    };
                    changed.push(a.clone());
                    a
                }
            };
            still.insert(key, alert);
        }
        for (_, mut a) in std::mem::replace(&mut self.firing, still) {
            a.state = State::Resolved;
            a.since = now;
            changed.push(a.clone());
            self.resolved.push_front(a);
        }
        while self
            .resolved
            .back()
            .is_some_and(|a| now - a.since > RESOLVED_KEPT_SECONDS)
        {
            self.resolved.pop_back();
        }
        changed
    }

    /// Firing alerts (newest first), then those resolved in the last day (newest first).
    pub fn list(&self) -> Vec<Alert> {
        let mut firing: Vec<Alert> = self.firing.values().cloned().collect();
        firing.sort_by(|a, b| b.since.cmp(&a.since).then(a.name.cmp(b.name)));
        firing.extend(self.resolved.iter().cloned());
        firing
    }

    /// Every alert firing now.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.firing.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AlertSettings {
        mailpipe_settings::Settings::load_from(None)
            .unwrap()
            .console
            .alerts
    }

    #[test]
    fn latency_fires_only_above_its_bound() {
        let s = settings();
        let mut obs = Observations {
            latency_p99_seconds: Some(s.latency_p99_seconds),
            ..Default::default()
        };
        assert!(conditions(&obs, &BTreeMap::new(), &s, 0).is_empty());
        obs.latency_p99_seconds = Some(s.latency_p99_seconds + 1.0);
        let c = conditions(&obs, &BTreeMap::new(), &s, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].name, c[0].subject.as_str()),
            ("processing_latency", "pipeline")
        );
    }

    #[test]
    fn volume_compares_with_the_median_of_the_same_hour_and_needs_history() {
        let s = settings(); // fraction 0.2, 3 days
        let mut obs = Observations::default();
        obs.volume
            .insert("a".into(), (19, vec![100, 0, 100, 90, 300, 0, 0]));
        obs.volume.insert("b".into(), (20, vec![100, 100, 100]));
        obs.volume.insert("new".into(), (0, vec![100, 100, 0]));
        let c = conditions(&obs, &BTreeMap::new(), &s, 0);
        let fired: Vec<&str> = c.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(
            fired,
            ["a"],
            "a: 19 < 0.2 x median(90,100,100,300)=20; b: 20 is not below 20"
        );
        assert_eq!(c[0].threshold, 20.0);
    }

    #[test]
    fn counts_in_the_window_fire_at_their_minimum() {
        let mut s = settings();
        s.dead_letters_per_window = 3;
        s.rejections_per_window = 0; // off
        let mut obs = Observations::default();
        obs.dead_letters_by_stage.insert("normalize".into(), 3);
        obs.dead_letters_by_stage.insert("verify".into(), 2);
        obs.rejections_by_source.insert("mailgun".into(), 1_000);
        let c = conditions(&obs, &BTreeMap::new(), &s, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].name, c[0].subject.as_str()),
            ("dead_letters_growing", "normalize")
        );
    }

    fn samples(points: &[(i64, i64)]) -> BTreeMap<String, VecDeque<LagSample>> {
        let v = points
            .iter()
            .map(|&(at, lag)| LagSample { at, lag })
            .collect();
        BTreeMap::from([("g".to_string(), v)])
    }

    #[test]
    fn lag_must_stay_high_and_not_shrink_through_the_span() {
        let mut s = settings();
        s.lag_min = 10;
        s.lag_for_seconds = 60;
        let obs = Observations::default();
        let fires = |points: &[(i64, i64)]| !conditions(&obs, &samples(points), &s, 100).is_empty();
        assert!(fires(&[(30, 10), (40, 50), (70, 20), (100, 60)]));
        assert!(
            !fires(&[(50, 10), (100, 60)]),
            "the samples do not cover the span yet"
        );
        assert!(
            !fires(&[(30, 60), (100, 20)]),
            "shrinking: it is catching up"
        );
        assert!(
            !fires(&[(30, 20), (60, 5), (100, 30)]),
            "dipped under the minimum"
        );
        assert!(
            fires(&[(10, 0), (40, 15), (100, 15)]),
            "old samples before the span are ignored"
        );
    }

    #[test]
    fn rates_need_enough_events_and_a_rate_above_the_bound() {
        let mut s = settings();
        s.rate_min_events = 100;
        let mut obs = Observations::default();
        let counts = |delivered, bounced, complained| RateCounts {
            delivered,
            bounced,
            complained,
        };
        obs.rates.insert("provider:a".into(), counts(90, 10, 0));
        obs.rates.insert("provider:b".into(), counts(50, 40, 5));
        obs.rates.insert("campaign:c".into(), counts(1_000, 0, 2));
        let c = conditions(&obs, &BTreeMap::new(), &s, 0);
        let fired: Vec<(&str, &str)> = c.iter().map(|c| (c.name, c.subject.as_str())).collect();
        assert_eq!(
            fired,
            [
                ("complaint_rate_high", "campaign:c"),
                ("bounce_rate_high", "provider:a")
            ]
        );
    }

    fn condition(name: &'static str, subject: &str) -> Condition {
        Condition {
            name,
            subject: subject.into(),
            value: 1.0,
            threshold: 0.5,
            summary: String::new(),
        }
    }

    #[test]
    fn the_book_fires_keeps_since_then_resolves_and_forgets_after_a_day() {
        let mut book = AlertBook::default();
        let changed = book.update(vec![condition("x", "a"), condition("y", "b")], 100);
        assert_eq!(changed.len(), 2);
        assert!(book
            .update(vec![condition("x", "a"), condition("y", "b")], 115)
            .is_empty());
        let changed = book.update(vec![condition("x", "a")], 130);
        assert_eq!(changed.len(), 1);
        assert_eq!(
            (changed[0].name, changed[0].state, changed[0].since),
            ("y", State::Resolved, 130)
        );
        let list = book.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].name, list[0].state, list[0].since),
            ("x", State::Firing, 100)
        );
        assert_eq!((list[1].name, list[1].state), ("y", State::Resolved));
        book.update(vec![condition("x", "a")], 130 + RESOLVED_KEPT_SECONDS + 1);
        assert_eq!(book.list().len(), 1, "a resolved alert is listed for a day");
        assert_eq!(book.firing().count(), 1);
    }
}
