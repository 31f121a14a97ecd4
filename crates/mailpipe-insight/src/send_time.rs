//! Send-time prediction: the hours of the week a recipient is most likely to open mail.
//!
//! Four levels, each shrunk towards the one above it (empirical-Bayes pseudo-counts), with
//! `c[h]` the human opens of a level at hour of week `h` and `N` their total:
//!
//! ```text
//! global     p_g[h] = (c_g[h] + a) / (N_g + 168·a)                a   = global_prior
//! source     p_s[h] = (c̃_s[h] + k_s·p_g[h]) / (N_s + k_s)          k_s = source_weight
//! domain     p_d[h] = (c̃_d[h] + k_d·p_s[h]) / (N_d + k_d)          k_d = domain_weight
//! recipient  p_r[h] = (c̃_r[h] + k_r·p_d[h]) / (N_r + k_r)          k_r = recipient_weight
//!
//! day spreading (source, domain and recipient), s = day_share:
//!            c̃[h] = (1 − s)·c[h] + s·(opens at h's hour of the day, all 7 days)/7
//! ```
//!
//! Day spreading reflects that someone who opens at 09:00 on Tuesdays tends to open near
//! 09:00 on other days too; it keeps the total `N`. A level with no opens is its parent
//! level; a recipient with `k_r` opens of their own weighs as much as their domain.
//!
//! The prediction is the `top` hours by `p_r`, ties to the lower hour. Its `basis` is the
//! first level, from the recipient down, whose opens reach its pseudo-count (`N_r ≥ k_r`,
//! else `N_d ≥ k_d`, else `N_s ≥ k_s`, else global). Its `confidence` (0–1) says how much history it rests
//! on, recipient evidence counting fully and domain evidence half:
//!
//! ```text
//! confidence = w_r + (1 − w_r)·0.5·w_d      w_r = N_r/(N_r + k_r),  w_d = N_d/(N_d + k_d)
//! ```

use serde::Serialize;

use crate::hours::{label, HourCounts, HOURS_OF_WEEK};
use crate::levels::{evidence_share, Basis, Levels, Params, Profile};

/// A probability distribution over the 168 hours of the week.
pub(crate) type Dist = [f64; HOURS_OF_WEEK];

/// One of the best hours of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourScore {
    /// 0 = Monday 00:00 … 167 = Sunday 23:00, in the configured zone.
    pub hour_of_week: u8,
    /// Such as `"Tue 09:00"`.
    pub label: String,
    /// The model's probability that an open falls in this hour.
    pub probability: f64,
}

/// The human opens each level of a send-time prediction counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SendTimeEvidence {
    pub recipient_opens: u64,
    pub domain_opens: u64,
    pub source_opens: u64,
    pub global_opens: u64,
}

/// The best hours of the week to reach one recipient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendTimePrediction {
    /// The `top` hours, most likely first.
    pub best: Vec<HourScore>,
    /// The level carrying most weight.
    pub basis: Basis,
    /// How much history the answer rests on, 0–1 (see the module docs).
    pub confidence: f64,
    /// The opens behind it.
    pub evidence: SendTimeEvidence,
}

/// Predicts the best hours of the week to send to the recipient of `levels`.
pub fn predict_send_time(levels: &Levels, params: &Params) -> SendTimePrediction {
    let p = distribution(levels, params);
    let best = top_hours(&p, params.top)
        .into_iter()
        .map(|h| HourScore {
            hour_of_week: h,
            label: label(h),
            probability: p[h as usize],
        })
        .collect();
    SendTimePrediction {
        best,
        basis: send_time_basis(levels, params),
        confidence: send_time_confidence(levels, params),
        evidence: SendTimeEvidence {
            recipient_opens: levels.recipient.opens(),
            domain_opens: levels.domain.opens(),
            source_opens: levels.source.opens(),
            global_opens: levels.global.opens(),
        },
    }
}

/// The recipient-level distribution `p_r` over the 168 hours of the week (sums to 1).
pub fn distribution(levels: &Levels, params: &Params) -> Vec<f64> {
    let global = global_distribution(&levels.global.open_hours, params);
    let source = level_distribution(&levels.source, &global, params.source_weight, params);
    let domain = level_distribution(&levels.domain, &source, params.domain_weight, params);
    level_distribution(&levels.recipient, &domain, params.recipient_weight, params).to_vec()
}

fn send_time_basis(levels: &Levels, params: &Params) -> Basis {
    Basis::from_evidence([
        (levels.recipient.opens(), params.recipient_weight),
        (levels.domain.opens(), params.domain_weight),
        (levels.source.opens(), params.source_weight),
    ])
}

fn send_time_confidence(levels: &Levels, params: &Params) -> f64 {
    let w_r = evidence_share(levels.recipient.opens() as f64, params.recipient_weight);
    let w_d = evidence_share(levels.domain.opens() as f64, params.domain_weight);
    (w_r + (1.0 - w_r) * 0.5 * w_d).clamp(0.0, 1.0)
}

/// `p_g`: global opens plus `a` in every bin; uniform when both are zero.
pub(crate) fn global_distribution(counts: &HourCounts, params: &Params) -> Dist {
    let a = params.global_prior;
    let denominator = counts.total() as f64 + HOURS_OF_WEEK as f64 * a;
    let mut p = [1.0 / HOURS_OF_WEEK as f64; HOURS_OF_WEEK];
    if denominator > 0.0 {
        for (h, slot) in p.iter_mut().enumerate() {
            *slot = (f64::from(counts.0[h]) + a) / denominator;
        }
    }
    p
}

/// A day-spread level shrunk towards `parent` with pseudo-count `k`; `parent` itself when
/// the level has no opens and `k` is 0.
pub(crate) fn level_distribution(
    profile: &Profile,
    parent: &Dist,
    k: f64,
    params: &Params,
) -> Dist {
    let n = profile.opens() as f64;
    if n + k <= 0.0 {
        return *parent;
    }
    let spread = spread_days(&profile.open_hours, params.day_share);
    let mut p = [0.0; HOURS_OF_WEEK];
    for (h, slot) in p.iter_mut().enumerate() {
        *slot = (spread[h] + k * parent[h]) / (n + k);
    }
    p
}

/// `c̃[h] = (1 − s)·c[h] + s·(hour-of-day total at h's hour)/7`; keeps the total.
fn spread_days(counts: &HourCounts, s: f64) -> Dist {
    let by_hour = counts.hour_of_day_totals();
    let mut spread = [0.0; HOURS_OF_WEEK];
    for (h, slot) in spread.iter_mut().enumerate() {
        *slot = (1.0 - s) * f64::from(counts.0[h]) + s * by_hour[h % 24] as f64 / 7.0;
    }
    spread
}

/// The `n` most likely hours, most likely first, ties to the lower hour.
pub(crate) fn top_hours(p: &[f64], n: usize) -> Vec<u8> {
    let mut hours: Vec<u8> = (0..p.len().min(HOURS_OF_WEEK) as u8).collect();
    hours.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
    hours.truncate(n);
    hours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(opens: &[(u8, u32)], delivered: u64, opened_messages: u64) -> Profile {
        let mut open_hours = HourCounts::new();
        for &(h, n) in opens {
            open_hours.add_n(h, n);
        }
        Profile {
            open_hours,
            delivered,
            opened_messages,
        }
    }

    const TUE_09: u8 = 33;
    const THU_20: u8 = 92;
    const SAT_11: u8 = 131;

    fn levels(recipient: &[(u8, u32)], domain: &[(u8, u32)], global: &[(u8, u32)]) -> Levels {
        Levels {
            recipient: profile(recipient, 0, 0),
            domain: profile(domain, 0, 0),
            source: Profile::default(),
            global: profile(global, 0, 0),
        }
    }

    fn assert_sums_to_one(p: &[f64]) {
        assert_eq!(p.len(), 168);
        let sum: f64 = p.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "sum {sum}");
        assert!(p.iter().all(|&x| x.is_finite() && x >= 0.0));
    }

    #[test]
    fn no_history_at_all_is_uniform_with_global_basis() {
        let l = Levels::default();
        let p = distribution(&l, &Params::default());
        assert_sums_to_one(&p);
        assert!(p.iter().all(|&x| (x - 1.0 / 168.0).abs() < 1e-12));
        let pred = predict_send_time(&l, &Params::default());
        assert_eq!(pred.basis, Basis::Global);
        assert_eq!(pred.confidence, 0.0);
        // Ties go to the lower hour.
        let hours: Vec<u8> = pred.best.iter().map(|s| s.hour_of_week).collect();
        assert_eq!(hours, vec![0, 1, 2]);
    }

    #[test]
    fn a_new_recipient_falls_back_to_the_domain_then_global() {
        let params = Params::default();
        let with_domain = levels(&[], &[(THU_20, 40)], &[(SAT_11, 500), (THU_20, 40)]);
        let pred = predict_send_time(&with_domain, &params);
        assert_eq!(pred.basis, Basis::Domain);
        assert_eq!(pred.best[0].hour_of_week, THU_20);
        assert_eq!(pred.best[0].label, "Thu 20:00");

        let without_domain = levels(&[], &[], &[(SAT_11, 500), (THU_20, 40)]);
        let pred = predict_send_time(&without_domain, &params);
        assert_eq!(pred.basis, Basis::Global);
        assert_eq!(pred.best[0].hour_of_week, SAT_11);
        assert_eq!(pred.evidence.global_opens, 540);
    }

    #[test]
    fn a_rich_recipient_gets_their_own_hour() {
        let l = levels(
            &[(TUE_09, 10)],
            &[(THU_20, 200)],
            &[(SAT_11, 5000), (THU_20, 200)],
        );
        let pred = predict_send_time(&l, &Params::default());
        assert_eq!(pred.basis, Basis::Recipient);
        assert_eq!(pred.best[0].hour_of_week, TUE_09);
        assert_eq!(pred.best.len(), 3);
        assert!(pred.best[0].probability > pred.best[1].probability);
        assert_sums_to_one(&distribution(&l, &Params::default()));
    }

    #[test]
    fn day_spreading_favours_the_same_hour_on_other_days() {
        let l = levels(&[(TUE_09, 4)], &[], &[]);
        let p = distribution(&l, &Params::default());
        assert_sums_to_one(&p);
        let wed_09 = 2 * 24 + 9;
        let wed_10 = 2 * 24 + 10;
        assert!(p[TUE_09 as usize] > p[wed_09]);
        assert!(p[wed_09] > p[wed_10]);
        // Without spreading, Wednesday 09:00 is no better than any other empty hour.
        let no_spread = Params {
            day_share: 0.0,
            ..Params::default()
        };
        let p = distribution(&l, &no_spread);
        assert!((p[wed_09] - p[wed_10]).abs() < 1e-12);
    }

    #[test]
    fn confidence_rises_with_evidence() {
        let params = Params::default();
        let mut last = -1.0;
        for (r, d) in [(0, 0), (0, 10), (0, 100), (2, 100), (10, 100), (100, 100)] {
            let l = levels(&[(TUE_09, r)], &[(TUE_09, d)], &[(TUE_09, 1000)]);
            let c = predict_send_time(&l, &params).confidence;
            assert!(c > last, "confidence {c} after {last} at r={r} d={d}");
            assert!((0.0..=1.0).contains(&c));
            last = c;
        }
        // Domain evidence alone never exceeds one half.
        let l = levels(&[], &[(TUE_09, 1_000_000)], &[]);
        assert!(predict_send_time(&l, &params).confidence <= 0.5);
    }

    #[test]
    fn zero_weights_and_prior_give_no_nan() {
        let params = Params {
            recipient_weight: 0.0,
            domain_weight: 0.0,
            global_prior: 0.0,
            ..Params::default()
        };
        for l in [Levels::default(), levels(&[(TUE_09, 1)], &[], &[])] {
            let p = distribution(&l, &params);
            assert_sums_to_one(&p);
            let pred = predict_send_time(&l, &params);
            assert!(pred.confidence.is_finite());
        }
        let l = levels(&[(TUE_09, 1)], &[], &[]);
        assert_eq!(predict_send_time(&l, &params).best[0].hour_of_week, TUE_09);
    }

    #[test]
    fn top_is_honoured() {
        let params = Params {
            top: 168,
            ..Params::default()
        };
        let pred = predict_send_time(&Levels::default(), &params);
        assert_eq!(pred.best.len(), 168);
        let json = serde_json::to_value(&pred).unwrap();
        assert_eq!(json["basis"], "global");
        assert_eq!(json["best"][0]["label"], "Mon 00:00");
    }
}
