//! Holdout evaluation of both models on a list of past events.
//!
//! Everything before `cutoff_ms` trains the recipient, domain, source and global profiles; every
//! human open at or after it is a test: the send-time model predicts the recipient's `top`
//! hours from the training profiles alone, and it is a hit when the open's hour of the week
//! is among them. The baseline is the naive model: the `top` hours with the most opens
//! overall in training, the same for everybody. For the engagement likelihood, every
//! recipient with a delivered message in the holdout is a test: `actual` is their opened /
//! delivered holdout messages (capped at 1) and the Brier score is the mean of
//! `(p − actual)²`; its baseline predicts the global training open rate for everyone.
//!
//! One pass over the observations with hash maps by recipient and domain: O(n), plus 168
//! operations per recipient and domain predicted for.

use std::collections::{HashMap, HashSet};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::hours::{hour_of_week, label};
use crate::levels::{Basis, Levels, Params, Profile};
use crate::likelihood::{global_rate, predict_likelihood};
use crate::send_time::{global_distribution, level_distribution, top_hours, Dist, HourScore};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A message was delivered.
    Delivered,
    /// A human (not machine) open.
    HumanOpen,
}

/// One past event, as read from `email_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The address, as stored (lower-cased upstream).
    pub recipient: String,
    /// The recipient's domain.
    pub domain: String,
    /// The source (configured account or tenant) the event came from.
    pub source: String,
    pub kind: Kind,
    /// UTC milliseconds.
    pub at_ms: i64,
    /// The message id. Opened messages are distinct (recipient, message) pairs with a human
    /// open; an open without a message id counts as an open but not as an opened message.
    pub message: Option<String>,
}

/// Hit figures of the opens whose prediction had one basis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BasisFigures {
    /// Holdout opens predicted on this basis.
    pub opens: u64,
    /// Of them, in the predicted hours.
    pub hits: u64,
    /// `hits / opens`; `None` without opens.
    pub hit_rate: Option<f64>,
    /// Of them, in the baseline's hours.
    pub baseline_hits: u64,
    /// `baseline_hits / opens`; `None` without opens.
    pub baseline_hit_rate: Option<f64>,
}

/// [`BasisFigures`] per basis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ByBasis {
    pub recipient: BasisFigures,
    pub domain: BasisFigures,
    pub source: BasisFigures,
    pub global: BasisFigures,
}

impl ByBasis {
    fn get_mut(&mut self, basis: Basis) -> &mut BasisFigures {
        match basis {
            Basis::Recipient => &mut self.recipient,
            Basis::Domain => &mut self.domain,
            Basis::Source => &mut self.source,
            Basis::Global => &mut self.global,
        }
    }
}

/// The engagement-likelihood check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LikelihoodCheck {
    /// Recipients with at least one delivered message in the holdout.
    pub recipients: u64,
    /// Mean `(p − actual)²` of the model; `None` without recipients. Lower is better.
    pub brier: Option<f64>,
    /// The same, predicting the global training open rate for everyone.
    pub baseline_brier: Option<f64>,
    /// The global training open rate the baseline predicts, `(opened + 1)/(delivered + 2)`.
    pub baseline_rate: f64,
}

/// The figures of one holdout evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Training is before, holdout at or after this instant (UTC ms).
    pub cutoff_ms: i64,
    /// Hours per prediction.
    pub top: usize,
    /// Observations (delivered and opens) before the cutoff.
    pub train_events: u64,
    /// Human opens at or after the cutoff.
    pub holdout_opens: u64,
    /// Holdout opens in their recipient's predicted hours.
    pub hits: u64,
    /// `hits / holdout_opens`; `None` without holdout opens.
    pub hit_rate: Option<f64>,
    /// The baseline's hours: the global best hours of training.
    pub baseline_hours: Vec<HourScore>,
    /// Holdout opens in the baseline's hours.
    pub baseline_hits: u64,
    /// `baseline_hits / holdout_opens`; `None` without holdout opens.
    pub baseline_hit_rate: Option<f64>,
    /// `hit_rate / baseline_hit_rate`; `None` when either is absent or the baseline's is 0.
    pub lift: Option<f64>,
    /// The hit figures split by the basis of each prediction.
    pub by_basis: ByBasis,
    /// The engagement-likelihood check.
    pub likelihood: LikelihoodCheck,
}

/// Trains on the observations before `cutoff_ms` and tests on those at or after it, hours
/// counted in `tz` (see the module docs).
pub fn evaluate(
    observations: &[Observation],
    cutoff_ms: i64,
    tz: Tz,
    params: &Params,
) -> Evaluation {
    let (train, holdout): (Vec<&Observation>, Vec<&Observation>) =
        observations.iter().partition(|o| o.at_ms < cutoff_ms);
    let training = Profiles::build(train.iter().copied(), tz);

    // Send time.
    let global_p = global_distribution(&training.global.open_hours, params);
    let baseline = top_hours(&global_p, params.top);
    let mut source_p: HashMap<&str, Dist> = HashMap::new();
    let mut domain_p: HashMap<(&str, &str), Dist> = HashMap::new();
    let mut predicted: HashMap<&str, (Vec<u8>, Basis)> = HashMap::new();
    let empty = Profile::default();
    let mut by_basis = ByBasis::default();
    let (mut holdout_opens, mut hits, mut baseline_hits) = (0u64, 0u64, 0u64);
    for o in holdout.iter().filter(|o| o.kind == Kind::HumanOpen) {
        // Each recipient is predicted once, with the domain and source of their first
        // holdout open.
        let (hours, basis) = predicted.entry(o.recipient.as_str()).or_insert_with(|| {
            let source = training.sources.get(o.source.as_str()).unwrap_or(&empty);
            let s = *source_p.entry(o.source.as_str()).or_insert_with(|| {
                level_distribution(source, &global_p, params.source_weight, params)
            });
            let domain = training.domains.get(o.domain.as_str()).unwrap_or(&empty);
            let d = domain_p
                .entry((o.source.as_str(), o.domain.as_str()))
                .or_insert_with(|| level_distribution(domain, &s, params.domain_weight, params));
            let recipient = training
                .recipients
                .get(o.recipient.as_str())
                .unwrap_or(&empty);
            let r = level_distribution(recipient, d, params.recipient_weight, params);
            let basis = Basis::from_evidence([
                (recipient.opens(), params.recipient_weight),
                (domain.opens(), params.domain_weight),
                (source.opens(), params.source_weight),
            ]);
            (top_hours(&r, params.top), basis)
        });
        let h = hour_of_week(o.at_ms, tz);
        let hit = hours.contains(&h);
        let baseline_hit = baseline.contains(&h);
        holdout_opens += 1;
        hits += u64::from(hit);
        baseline_hits += u64::from(baseline_hit);
        let figures = by_basis.get_mut(*basis);
        figures.opens += 1;
        figures.hits += u64::from(hit);
        figures.baseline_hits += u64::from(baseline_hit);
    }
    for f in [
        &mut by_basis.recipient,
        &mut by_basis.domain,
        &mut by_basis.source,
        &mut by_basis.global,
    ] {
        f.hit_rate = ratio(f.hits, f.opens);
        f.baseline_hit_rate = ratio(f.baseline_hits, f.opens);
    }
    let hit_rate = ratio(hits, holdout_opens);
    let baseline_hit_rate = ratio(baseline_hits, holdout_opens);
    let lift = match (hit_rate, baseline_hit_rate) {
        (Some(h), Some(b)) if b > 0.0 => Some(h / b),
        _ => None,
    };

    Evaluation {
        cutoff_ms,
        top: params.top,
        train_events: train.len() as u64,
        holdout_opens,
        hits,
        hit_rate,
        baseline_hours: baseline
            .iter()
            .map(|&h| HourScore {
                hour_of_week: h,
                label: label(h),
                probability: global_p[h as usize],
            })
            .collect(),
        baseline_hits,
        baseline_hit_rate,
        lift,
        by_basis,
        likelihood: likelihood_check(&holdout, &training, params),
    }
}

/// The recipient, domain, source and global profiles of a list of observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profiles {
    /// By recipient address.
    pub recipients: HashMap<String, Profile>,
    /// By domain.
    pub domains: HashMap<String, Profile>,
    /// By source.
    pub sources: HashMap<String, Profile>,
    /// Everybody.
    pub global: Profile,
}

impl Profiles {
    /// Counts the observations, hours in `tz`: delivered messages, human opens by hour of
    /// the week, and opened messages (distinct recipient and message id pairs).
    pub fn build<'a>(observations: impl IntoIterator<Item = &'a Observation>, tz: Tz) -> Self {
        let mut profiles = Profiles::default();
        let mut opened: HashSet<(&str, &str)> = HashSet::new();
        for o in observations {
            let first_open = match (o.kind, &o.message) {
                (Kind::HumanOpen, Some(m)) => opened.insert((o.recipient.as_str(), m.as_str())),
                _ => false,
            };
            let hour = (o.kind == Kind::HumanOpen).then(|| hour_of_week(o.at_ms, tz));
            let count = |p: &mut Profile| match hour {
                None => p.delivered += 1,
                Some(h) => {
                    p.open_hours.add(h);
                    p.opened_messages += u64::from(first_open);
                }
            };
            count(entry(&mut profiles.recipients, &o.recipient));
            count(entry(&mut profiles.domains, &o.domain));
            count(entry(&mut profiles.sources, &o.source));
            count(&mut profiles.global);
        }
        profiles
    }

    /// The levels of a prediction for `recipient` at `domain`, mailed from `source`; empty
    /// profiles where unknown.
    pub fn levels(&self, recipient: &str, domain: &str, source: &str) -> Levels {
        Levels {
            recipient: self.recipients.get(recipient).cloned().unwrap_or_default(),
            domain: self.domains.get(domain).cloned().unwrap_or_default(),
            source: self.sources.get(source).cloned().unwrap_or_default(),
            global: self.global.clone(),
        }
    }
}

/// The profile of `key`, created empty on first use (no allocation when it exists).
fn entry<'m>(map: &'m mut HashMap<String, Profile>, key: &str) -> &'m mut Profile {
    if !map.contains_key(key) {
        map.insert(key.to_string(), Profile::default());
    }
    map.get_mut(key).unwrap()
}

/// Per recipient with holdout deliveries: the model's and the baseline's squared errors.
fn likelihood_check(
    holdout: &[&Observation],
    training: &Profiles,
    params: &Params,
) -> LikelihoodCheck {
    struct Actual<'a> {
        domain: &'a str,
        source: &'a str,
        delivered: u64,
        opened: u64,
    }
    let mut actual: HashMap<&str, Actual> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut opened: HashSet<(&str, &str)> = HashSet::new();
    for o in holdout {
        let a = actual.entry(o.recipient.as_str()).or_insert_with(|| {
            order.push(o.recipient.as_str());
            Actual {
                domain: o.domain.as_str(),
                source: o.source.as_str(),
                delivered: 0,
                opened: 0,
            }
        });
        match (o.kind, &o.message) {
            (Kind::Delivered, _) => a.delivered += 1,
            (Kind::HumanOpen, Some(m)) => {
                a.opened += u64::from(opened.insert((o.recipient.as_str(), m.as_str())));
            }
            (Kind::HumanOpen, None) => {}
        }
    }
    let baseline_rate = global_rate(&training.global);
    let (mut n, mut model_sum, mut baseline_sum) = (0u64, 0.0, 0.0);
    // In order of first appearance, so the sums (and their rounding) are reproducible.
    for recipient in order {
        let a = &actual[recipient];
        if a.delivered == 0 {
            continue;
        }
        let levels = training.levels(recipient, a.domain, a.source);
        let p = predict_likelihood(&levels, params).probability;
        let truth = (a.opened as f64 / a.delivered as f64).min(1.0);
        n += 1;
        model_sum += (p - truth).powi(2);
        baseline_sum += (baseline_rate - truth).powi(2);
    }
    LikelihoodCheck {
        recipients: n,
        brier: (n > 0).then(|| model_sum / n as f64),
        baseline_brier: (n > 0).then(|| baseline_sum / n as f64),
        baseline_rate,
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const WEEK: i64 = 168 * HOUR;
    /// Monday 2026-11-30 00:00 UTC.
    const MONDAY: i64 = 1_795_996_800_000;

    fn obs(recipient: &str, kind: Kind, at_ms: i64, message: &str) -> Observation {
        Observation {
            recipient: recipient.to_string(),
            domain: recipient.split('@').nth(1).unwrap().to_string(),
            source: "main".to_string(),
            kind,
            at_ms,
            message: Some(message.to_string()),
        }
    }

    #[test]
    fn monday_constant_is_a_monday() {
        assert_eq!(hour_of_week(MONDAY, Tz::UTC), 0);
    }

    #[test]
    fn empty_input_has_no_rates() {
        let e = evaluate(&[], 0, Tz::UTC, &Params::default());
        assert_eq!(e.train_events, 0);
        assert_eq!(e.holdout_opens, 0);
        assert_eq!(e.hit_rate, None);
        assert_eq!(e.baseline_hit_rate, None);
        assert_eq!(e.lift, None);
        assert_eq!(e.by_basis.recipient.hit_rate, None);
        assert_eq!(e.likelihood.recipients, 0);
        assert_eq!(e.likelihood.brier, None);
        assert_eq!(e.baseline_hours.len(), 3);
        let json = serde_json::to_value(&e).unwrap();
        assert!(json["hit_rate"].is_null());
    }

    #[test]
    fn no_holdout_opens_has_no_hit_rates_but_a_likelihood_check() {
        let data = vec![
            obs("a@x.test", Kind::Delivered, MONDAY, "m1"),
            obs("a@x.test", Kind::HumanOpen, MONDAY + 9 * HOUR, "m1"),
            obs("a@x.test", Kind::Delivered, MONDAY + WEEK, "m2"),
        ];
        let e = evaluate(&data, MONDAY + WEEK, Tz::UTC, &Params::default());
        assert_eq!(e.train_events, 2);
        assert_eq!(e.holdout_opens, 0);
        assert_eq!(e.hit_rate, None);
        assert_eq!(e.likelihood.recipients, 1);
        // Nothing opened in the holdout: every error is p².
        let b = e.likelihood.baseline_brier.unwrap();
        assert!((b - (2.0f64 / 3.0).powi(2)).abs() < 1e-12);
    }

    #[test]
    fn hits_are_counted_against_the_recipients_hours() {
        let mut data = Vec::new();
        // a@x.test opens at Tue 09, eight weeks long; b@y.test at Sat 11, twice as often.
        for w in 0..8 {
            let t = MONDAY + w * WEEK;
            data.push(obs("a@x.test", Kind::Delivered, t, &format!("a{w}")));
            data.push(obs(
                "a@x.test",
                Kind::HumanOpen,
                t + 33 * HOUR,
                &format!("a{w}"),
            ));
            for i in 0..2 {
                let m = format!("b{w}-{i}");
                data.push(obs("b@y.test", Kind::Delivered, t, &m));
                data.push(obs(
                    "b@y.test",
                    Kind::HumanOpen,
                    t + 131 * HOUR + i * 60_000,
                    &m,
                ));
            }
        }
        // A newcomer at x.test opens at Tue 09 too; one at z.test at Sat 11.
        let cutoff = MONDAY + 6 * WEEK;
        data.push(obs("c@x.test", Kind::HumanOpen, cutoff + 33 * HOUR, "c1"));
        data.push(obs("d@z.test", Kind::HumanOpen, cutoff + 131 * HOUR, "d1"));
        let params = Params {
            top: 1,
            ..Params::default()
        };
        let e = evaluate(&data, cutoff, Tz::UTC, &params);
        assert_eq!(e.holdout_opens, 2 + 4 + 2);
        assert_eq!(e.baseline_hours[0].label, "Sat 11:00");
        // Nobody misses: a by their own hour, c by their domain's (through the global
        // basis: x.test has fewer than k_d opens), b by their own, d by the global hour.
        assert_eq!(e.hits, 8);
        assert_eq!(e.baseline_hits, 5);
        assert_eq!(e.hit_rate, Some(1.0));
        assert_eq!(e.lift, Some(8.0 / 5.0));
        assert_eq!(e.by_basis.recipient.opens, 6);
        assert_eq!(e.by_basis.global.opens, 2);
        assert_eq!(e.by_basis.global.hits, 2);
        assert_eq!(e.by_basis.domain.hit_rate, None);
        // a and b: 1 and 2 delivered in each holdout week, all opened.
        assert_eq!(e.likelihood.recipients, 2);
        assert!(e.likelihood.brier.unwrap() < e.likelihood.baseline_brier.unwrap());
    }

    #[test]
    fn repeated_opens_count_one_opened_message() {
        let data = vec![
            obs("a@x.test", Kind::Delivered, 0, "m1"),
            obs("a@x.test", Kind::HumanOpen, 10, "m1"),
            obs("a@x.test", Kind::HumanOpen, 20, "m1"),
        ];
        let t = Profiles::build(&data, Tz::UTC);
        let a = &t.recipients["a@x.test"];
        assert_eq!(a.opens(), 2);
        assert_eq!(a.opened_messages, 1);
        assert_eq!(t.domains["x.test"].opened_messages, 1);
        assert_eq!(t.global.delivered, 1);
    }
}
