//! The crate's one error type.

/// Why parameters or a request cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InsightError {
    /// A model parameter is out of its range.
    #[error("parameter {name} is {value}: {expected}")]
    InvalidParam {
        /// The field of [`crate::Params`].
        name: &'static str,
        /// Its value, as given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}
