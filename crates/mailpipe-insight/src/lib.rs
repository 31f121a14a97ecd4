//! Insight (issue 23): being written.

pub mod history;
