//! Engagement likelihood: the probability that the next delivered message to a recipient
//! gets a human open.
//!
//! Beta-binomial shrinkage, each level towards the one above it, with `o` the delivered
//! messages that got a human open (capped at `d`), `d` the delivered messages and
//! `m = likelihood_weight`:
//!
//! ```text
//! global     rate_g = (o_g + 1) / (d_g + 2)
//! source     rate_s = (o_s + m·rate_g) / (d_s + m)
//! domain     rate_d = (o_d + m·rate_s) / (d_d + m)
//! recipient  p      = (o_r + m·rate_d) / (d_r + m)
//! confidence = d_r / (d_r + m)
//! ```
//!
//! The basis is the first level, from the recipient down, whose delivered messages reach
//! `m` (`d_r ≥ m`, else `d_d ≥ m`, else `d_s ≥ m`, else global).

use serde::Serialize;

use crate::levels::{evidence_share, Basis, Levels, Params, Profile};

/// The delivered and opened messages each level counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LikelihoodEvidence {
    pub recipient_delivered: u64,
    pub recipient_opened: u64,
    pub domain_delivered: u64,
    pub domain_opened: u64,
    pub source_delivered: u64,
    pub source_opened: u64,
    pub global_delivered: u64,
    pub global_opened: u64,
}

/// How likely the next delivered message is to be opened by a human.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Likelihood {
    /// 0–1.
    pub probability: f64,
    /// The recipient's share of the answer, `d_r / (d_r + m)`, 0–1.
    pub confidence: f64,
    /// The level carrying most weight.
    pub basis: Basis,
    /// The messages behind it.
    pub evidence: LikelihoodEvidence,
}

/// Predicts the probability that the next message delivered to the recipient of `levels`
/// gets a human open.
pub fn predict_likelihood(levels: &Levels, params: &Params) -> Likelihood {
    let m = params.likelihood_weight;
    let (o_g, d_g) = counts(&levels.global);
    let rate_g = (o_g + 1.0) / (d_g + 2.0);
    let rate_s = shrink(&levels.source, rate_g, m);
    let rate_d = shrink(&levels.domain, rate_s, m);
    let probability = shrink(&levels.recipient, rate_d, m).clamp(0.0, 1.0);
    Likelihood {
        probability,
        confidence: evidence_share(levels.recipient.delivered as f64, m),
        basis: Basis::from_evidence([
            (levels.recipient.delivered, m),
            (levels.domain.delivered, m),
            (levels.source.delivered, m),
        ]),
        evidence: LikelihoodEvidence {
            recipient_delivered: levels.recipient.delivered,
            recipient_opened: levels.recipient.opened_messages,
            domain_delivered: levels.domain.delivered,
            domain_opened: levels.domain.opened_messages,
            source_delivered: levels.source.delivered,
            source_opened: levels.source.opened_messages,
            global_delivered: levels.global.delivered,
            global_opened: levels.global.opened_messages,
        },
    }
}

/// The smoothed global rate `(o_g + 1)/(d_g + 2)`, what the evaluation's baseline predicts.
pub(crate) fn global_rate(global: &Profile) -> f64 {
    let (o, d) = counts(global);
    (o + 1.0) / (d + 2.0)
}

/// Opened (capped at delivered) and delivered messages, as floats.
fn counts(p: &Profile) -> (f64, f64) {
    (
        p.opened_messages.min(p.delivered) as f64,
        p.delivered as f64,
    )
}

/// `(o + m·prior)/(d + m)`; `prior` when both `d` and `m` are 0.
fn shrink(p: &Profile, prior: f64, m: f64) -> f64 {
    let (o, d) = counts(p);
    if d + m > 0.0 {
        (o + m * prior) / (d + m)
    } else {
        prior
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(delivered: u64, opened_messages: u64) -> Profile {
        Profile {
            delivered,
            opened_messages,
            ..Profile::default()
        }
    }

    fn levels(r: (u64, u64), d: (u64, u64), g: (u64, u64)) -> Levels {
        Levels {
            recipient: profile(r.0, r.1),
            domain: profile(d.0, d.1),
            source: Profile::default(),
            global: profile(g.0, g.1),
        }
    }

    #[test]
    fn nothing_known_is_one_half() {
        let l = predict_likelihood(&Levels::default(), &Params::default());
        assert_eq!(l.probability, 0.5);
        assert_eq!(l.confidence, 0.0);
        assert_eq!(l.basis, Basis::Global);
    }

    #[test]
    fn the_formula() {
        let l = levels((4, 3), (100, 20), (998, 298));
        let p = predict_likelihood(&l, &Params::default());
        let rate_g = 299.0 / 1000.0;
        let rate_d = (20.0 + 8.0 * rate_g) / 108.0;
        let expected = (3.0 + 8.0 * rate_d) / 12.0;
        assert!((p.probability - expected).abs() < 1e-12);
        assert!((p.confidence - 4.0 / 12.0).abs() < 1e-12);
        assert_eq!(p.basis, Basis::Domain);
        assert_eq!(p.evidence.recipient_opened, 3);
    }

    #[test]
    fn recipient_evidence_moves_the_estimate_and_the_basis() {
        let params = Params::default();
        let cold = predict_likelihood(&levels((0, 0), (100, 10), (1000, 100)), &params);
        let keen = predict_likelihood(&levels((40, 36), (100, 10), (1000, 100)), &params);
        assert_eq!(cold.basis, Basis::Domain);
        assert_eq!(keen.basis, Basis::Recipient);
        assert!(cold.probability < 0.15);
        assert!(keen.probability > 0.7);
        assert!(keen.confidence > cold.confidence);
    }

    #[test]
    fn opened_is_capped_at_delivered_and_zero_weight_has_no_nan() {
        let params = Params {
            likelihood_weight: 0.0,
            ..Params::default()
        };
        let p = predict_likelihood(&levels((2, 9), (0, 0), (0, 0)), &params);
        assert_eq!(p.probability, 1.0);
        let p = predict_likelihood(&Levels::default(), &params);
        assert_eq!(p.probability, 0.5);
        assert_eq!(p.confidence, 0.0);
    }
}
