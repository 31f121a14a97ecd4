//! Event enrichment (issue 23): being written.
