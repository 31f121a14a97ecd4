//! Insight (issue 23): engagement history, and two small explainable models built on it.
//!
//! Pure code: no ClickHouse, no files, no network, no clock (times are parameters). The
//! callers read the counts from `email_events` and pass them in.
//!
//! # Send time ([`predict_send_time`])
//!
//! When does a recipient open mail? Human opens are counted per hour of the week (168
//! bins, one configured time zone). Few recipients have enough opens to tell on their
//! own, so each level borrows from the one above it: the recipient's counts are mixed with
//! their domain's distribution, the domain's with their source's (the account they are
//! mailed from), the source's with everybody's, as if each level had a few extra
//! "pseudo-opens" spread like its parent (6 for a recipient, 30 for a domain, 100 for a
//! source by default). Opens are also partly spread to the same hour on the other days: someone who
//! opens at 09:00 on Tuesdays likely opens around 09:00 on other days too. The answer is
//! the top hours of the mixed distribution, with the level it mostly rests on (`basis`) and
//! a `confidence` of 0–1 saying how much history is behind it. The formulas are in
//! [`send_time`].
//!
//! # Engagement likelihood ([`predict_likelihood`])
//!
//! The chance that the next delivered message gets a human open: the recipient's opened /
//! delivered messages, shrunk towards their domain's rate, that towards their source's,
//! that towards the global rate (beta-binomial; formulas in [`likelihood`]).
//!
//! # Weaknesses
//!
//! - Open time is not best send time: an open says when someone read mail, not when a
//!   message sent would have been read, nor whether sending then changes anything.
//! - Machine opens (mail privacy proxies, security scanners) are excluded upstream by the
//!   enrichment's classification; any it misses add noise, and human opens it misclassifies
//!   as machine opens are lost. Opens are undercounted where images are blocked.
//! - Hours are in one configured zone, not each recipient's own: a recipient who travels
//!   or lives elsewhere is seen shifted.
//! - Cold start: a new recipient gets their domain's hours, a new domain their source's, a
//!   new source everybody's.
//!   Those are honest guesses, flagged by `basis` and a low `confidence`.
//!
//! # Evaluation ([`evaluate()`])
//!
//! Train on history before a cutoff, then check every human open after it: is its hour of
//! the week among the hours predicted for its recipient? The hit rate is compared with the
//! naive model (everyone gets the overall busiest hours), and split by basis. The
//! likelihood is checked by the Brier score (mean squared error) of each recipient's
//! predicted open rate against their holdout open rate, against predicting the global
//! rate for everyone. [`synthetic`] generates histories with planted hours to test that
//! the models find them.

pub mod error;
pub mod evaluate;
pub mod history;
pub mod hours;
pub mod levels;
pub mod likelihood;
pub mod send_time;
pub mod synthetic;

pub use error::InsightError;
pub use evaluate::{
    evaluate, BasisFigures, ByBasis, Evaluation, Kind, LikelihoodCheck, Observation, Profiles,
};
pub use hours::{hour_of_week, label, HourCounts, HOURS_OF_WEEK};
pub use levels::{Basis, Levels, Params, Profile};
pub use likelihood::{predict_likelihood, Likelihood, LikelihoodEvidence};
pub use send_time::{
    distribution, predict_send_time, HourScore, SendTimeEvidence, SendTimePrediction,
};
pub use synthetic::{generate, GroupSpec, SyntheticSpec};
