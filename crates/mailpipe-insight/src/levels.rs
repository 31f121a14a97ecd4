//! The inputs of both models: engagement at four levels (the recipient, their domain, their
//! source — the configured account or tenant they are mailed from —, everybody) and the
//! model parameters.

use serde::{Deserialize, Serialize};

use crate::error::InsightError;
use crate::hours::{HourCounts, HOURS_OF_WEEK};

/// The engagement of one level (a recipient, a domain, a source, or everybody) over the
/// history read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Profile {
    /// Human opens by hour of the week (machine opens excluded).
    pub open_hours: HourCounts,
    /// Delivered messages.
    pub delivered: u64,
    /// Delivered messages with at least one human open.
    pub opened_messages: u64,
}

impl Profile {
    /// The number of human opens (the total of `open_hours`).
    pub fn opens(&self) -> u64 {
        self.open_hours.total()
    }
}

/// The levels a prediction for one recipient rests on, each the fallback of the one before.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Levels {
    /// The recipient's own history.
    pub recipient: Profile,
    /// Everybody at the recipient's domain (the recipient included).
    pub domain: Profile,
    /// Everybody mailed from the recipient's source (empty when it is unknown).
    pub source: Profile,
    /// Everybody.
    pub global: Profile,
}

/// Model parameters; [`Params::default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Pseudo-count `k_r` of the recipient level: how many opens of their own a recipient
    /// needs before their history outweighs their domain's. Default 6.
    pub recipient_weight: f64,
    /// Pseudo-count `k_d` of the domain level over the source one. Default 30.
    pub domain_weight: f64,
    /// Pseudo-count `k_s` of the source level over the global one. Default 100.
    pub source_weight: f64,
    /// Pseudo-count `a` added to every one of the 168 global bins. Default 1.
    pub global_prior: f64,
    /// Share `s` (0–1) of recipient and domain opens spread over the same hour of the other
    /// days. Default 0.5.
    pub day_share: f64,
    /// Pseudo-count `m` (in delivered messages) of the engagement likelihood. Default 8.
    pub likelihood_weight: f64,
    /// How many hours a send-time prediction returns (and counts as a hit). Default 3.
    pub top: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            recipient_weight: 6.0,
            domain_weight: 30.0,
            source_weight: 100.0,
            global_prior: 1.0,
            day_share: 0.5,
            likelihood_weight: 8.0,
            top: 3,
        }
    }
}

impl Params {
    /// Checks every parameter is in its range: weights finite and ≥ 0, `day_share` in
    /// [0, 1], `top` in 1..=168. The models never produce NaN, but with parameters out of
    /// range their figures mean nothing.
    pub fn validate(&self) -> Result<(), InsightError> {
        let weights = [
            ("recipient_weight", self.recipient_weight),
            ("domain_weight", self.domain_weight),
            ("source_weight", self.source_weight),
            ("global_prior", self.global_prior),
            ("likelihood_weight", self.likelihood_weight),
        ];
        for (name, value) in weights {
            if !(value.is_finite() && value >= 0.0) {
                return Err(InsightError::InvalidParam {
                    name,
                    value: value.to_string(),
                    expected: "a finite number >= 0",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.day_share) {
            return Err(InsightError::InvalidParam {
                name: "day_share",
                value: self.day_share.to_string(),
                expected: "a number from 0 to 1",
            });
        }
        if self.top == 0 || self.top > HOURS_OF_WEEK {
            return Err(InsightError::InvalidParam {
                name: "top",
                value: self.top.to_string(),
                expected: "a number from 1 to 168",
            });
        }
        Ok(())
    }
}

/// Which level carries most weight in a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The recipient's own history (at least their pseudo-count of evidence).
    Recipient,
    /// Their domain's history.
    Domain,
    /// Their source's history (the account or tenant they are mailed from).
    Source,
    /// Everybody's history.
    Global,
}

impl Basis {
    /// The first level, from the recipient down, whose evidence `n` reaches its
    /// pseudo-count `k` (and is not zero): `evidence` is `[(n_r, k_r), (n_d, k_d), (n_s,
    /// k_s)]`; `Global` when none does.
    pub fn from_evidence(evidence: [(u64, f64); 3]) -> Basis {
        let bases = [Basis::Recipient, Basis::Domain, Basis::Source];
        bases
            .into_iter()
            .zip(evidence)
            .find(|(_, (n, k))| *n > 0 && *n as f64 >= *k)
            .map_or(Basis::Global, |(basis, _)| basis)
    }

    /// `"recipient"`, `"domain"`, `"source"` or `"global"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Recipient => "recipient",
            Basis::Domain => "domain",
            Basis::Source => "source",
            Basis::Global => "global",
        }
    }
}

/// `n / (n + k)`: the share of a level's own evidence against its pseudo-count; 0 when both
/// are 0.
pub(crate) fn evidence_share(n: f64, k: f64) -> f64 {
    if n + k > 0.0 {
        n / (n + k)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_not() {
        assert_eq!(Params::default().validate(), Ok(()));
        let bad = [
            Params {
                recipient_weight: -1.0,
                ..Params::default()
            },
            Params {
                global_prior: f64::NAN,
                ..Params::default()
            },
            Params {
                day_share: 1.5,
                ..Params::default()
            },
            Params {
                top: 0,
                ..Params::default()
            },
            Params {
                top: 169,
                ..Params::default()
            },
        ];
        for p in bad {
            let err = p.validate().unwrap_err();
            assert!(err.to_string().starts_with("parameter "), "{err}");
        }
    }

    #[test]
    fn params_deserialize_with_defaults_for_missing_fields() {
        let p: Params = serde_json::from_str(r#"{"top": 5}"#).unwrap();
        assert_eq!(p.top, 5);
        assert_eq!(p.recipient_weight, 6.0);
        assert!(serde_json::from_str::<Params>(r#"{"topp": 5}"#).is_err());
    }

    #[test]
    fn basis_goes_from_the_recipient_down() {
        let b = |r, d, s| Basis::from_evidence([(r, 6.0), (d, 30.0), (s, 100.0)]);
        assert_eq!(b(6, 0, 0), Basis::Recipient);
        assert_eq!(b(5, 30, 0), Basis::Domain);
        assert_eq!(b(5, 29, 100), Basis::Source);
        assert_eq!(b(5, 29, 99), Basis::Global);
        // A zero pseudo-count still needs some evidence.
        assert_eq!(
            Basis::from_evidence([(0, 0.0), (0, 0.0), (0, 0.0)]),
            Basis::Global
        );
        assert_eq!(
            serde_json::to_string(&Basis::Recipient).unwrap(),
            "\"recipient\""
        );
    }
}
