//! Insight (issue 23): being written.
