//! The vocabulary shared by every stage: which providers exist. Pure: no IO, no Kafka.
//!
//! Invariant: the set of providers is closed; adding one means adding a variant here, and
//! the compiler then points at every `match` that must handle it.

mod provider;

pub use provider::{Provider, UnknownProvider};
